"""AlexNet: the 2012 ImageNet network and the course's single-channel 224x224 adaptation."""

from collections.abc import Callable
from math import prod

from torch import Tensor, nn

from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape


class AlexNet(nn.Module):
    """Five convs (96, 256, 384, 384, 256 maps) with three max pools, then dense 4096, 4096.

    ``first_padding`` is 1 in the course's adaptation and 0 in the 227x227 original.
    ``norm_layer``/``norm_layer_1d``, when given, follow every conv/hidden dense layer.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: tuple[int, int],
        *,
        first_padding: int = 1,
        dropout: float = 0.5,
        norm_layer: Callable[[int], nn.Module] | None = None,
        norm_layer_1d: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int, kernel: int, stride=1, padding=0) -> list[nn.Module]:
            norm = [norm_layer(cout)] if norm_layer else []
            return [nn.Conv2d(cin, cout, kernel, stride, padding), *norm, nn.ReLU(inplace=True)]

        def dense(fin: int, fout: int) -> list[nn.Module]:
            norm = [norm_layer_1d(fout)] if norm_layer_1d else []
            return [nn.Linear(fin, fout), *norm, nn.ReLU(inplace=True), nn.Dropout(dropout)]

        self.features = nn.Sequential(
            *conv(in_channels, 96, 11, stride=4, padding=first_padding),
            nn.MaxPool2d(3, 2),
            *conv(96, 256, 5, padding=2),
            nn.MaxPool2d(3, 2),
            *conv(256, 384, 3, padding=1),
            *conv(384, 384, 3, padding=1),
            *conv(384, 256, 3, padding=1),
            nn.MaxPool2d(3, 2),
        )
        flat = prod(output_shape(self.features, in_channels, input_size, "AlexNet"))
        self.classifier = nn.Sequential(
            nn.Flatten(), *dense(flat, 4096), *dense(4096, 4096), nn.Linear(4096, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model(
    "alexnet",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="AlexNet adapted to 1x224x224 Fashion-MNIST (course form)",
)
def alexnet(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> AlexNet:
    return AlexNet(in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "alexnet_imagenet",
    input_shape=(3, 227, 227),
    num_classes=1000,
    description="AlexNet as in 2012: 3x227x227 ImageNet input, 1000 classes, single tower",
)
def alexnet_imagenet(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> AlexNet:
    return AlexNet(in_channels, num_classes, input_size, first_padding=0, dropout=dropout)


@register_model(
    "alexnet_bn",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="AlexNet (course form) with batch norm after every conv and hidden dense layer",
)
def alexnet_bn(
    *,
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    norm_layer: Callable[[int], nn.Module],
    norm_layer_1d: Callable[[int], nn.Module],
    dropout: float = 0.5,
) -> AlexNet:
    return AlexNet(
        in_channels,
        num_classes,
        input_size,
        dropout=dropout,
        norm_layer=norm_layer,
        norm_layer_1d=norm_layer_1d,
    )
