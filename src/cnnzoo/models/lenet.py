"""LeNet-5 in its three course forms: padded 28x28 (d2l/Keras), unpadded 32x32 (1998), with BN."""

from collections.abc import Callable
from math import prod

from torch import Tensor, nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class LeNet(nn.Module):
    """Two conv(5x5)/pool(2x2) stages with 6 and 16 maps, then dense 120, 84 and classes.

    ``padding`` applies to the first conv only: 2 keeps 28x28 inputs at 28x28, which is how the
    course fits the 32x32 design to Fashion-MNIST. Normalization, when given, sits between each
    layer and its activation, as in the course's LeNet-BN.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: tuple[int, int],
        *,
        padding: int = 2,
        activation: str = "sigmoid",
        pool: type[nn.Module] = nn.AvgPool2d,
        norm_layer: Callable[[int], nn.Module] | None = None,
        norm_layer_1d: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise CnnzooError(
                f"Unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}."
            )
        act = ACTIVATIONS[activation]

        def stage(cin: int, cout: int, pad: int) -> list[nn.Module]:
            norm = [norm_layer(cout)] if norm_layer else []
            return [nn.Conv2d(cin, cout, 5, padding=pad), *norm, act(), pool(2, 2)]

        def dense(fin: int, fout: int) -> list[nn.Module]:
            norm = [norm_layer_1d(fout)] if norm_layer_1d else []
            return [nn.Linear(fin, fout), *norm, act()]

        self.features = nn.Sequential(*stage(in_channels, 6, padding), *stage(6, 16, 0))
        flat = prod(output_shape(self.features, in_channels, input_size, "LeNet"))
        self.classifier = nn.Sequential(
            nn.Flatten(), *dense(flat, 120), *dense(120, 84), nn.Linear(84, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model(
    "lenet5",
    input_shape=(1, 28, 28),
    num_classes=10,
    description="LeNet-5 on 1x28x28: sigmoid, average pooling, first conv padded (course: d2l/Keras)",
)
def lenet5(*, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> LeNet:
    return LeNet(in_channels, num_classes, input_size)


@register_model(
    "lenet5_classic",
    input_shape=(1, 32, 32),
    num_classes=10,
    description="LeNet-5 on 1x32x32, no padding (1998 layout): tanh; activation=relu is the material's",
)
def lenet5_classic(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], activation: str = "tanh"
) -> LeNet:
    # tanh is the nearest standard layer to the 1998 scaled-tanh squashing function; the course
    # material's 32x32 code uses ReLU (activation="relu").
    return LeNet(in_channels, num_classes, input_size, padding=0, activation=activation)


@register_model(
    "lenet_bn",
    input_shape=(1, 28, 28),
    num_classes=10,
    description="course LeNet-BN on 1x28x28: BN after every conv and hidden dense layer, max pooling",
)
def lenet_bn(
    *,
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    norm_layer: Callable[[int], nn.Module],
    norm_layer_1d: Callable[[int], nn.Module],
) -> LeNet:
    return LeNet(
        in_channels,
        num_classes,
        input_size,
        padding=0,
        pool=nn.MaxPool2d,
        norm_layer=norm_layer,
        norm_layer_1d=norm_layer_1d,
    )
