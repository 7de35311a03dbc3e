"""AlexNet: the 2012 ImageNet network, the course's single-channel 224x224 adaptation,
torchvision's form and the material's Keras AlexNet with batch normalization."""

from collections.abc import Callable
from math import prod

import torch
from torch import Tensor, nn

from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape
from cnnzoo.nn.same_padding import SamePadding2d

# Keras' BatchNormalization defaults: epsilon 1e-3 and moving = 0.99 * moving + 0.01 * batch,
# i.e. PyTorch's momentum 0.01.
KERAS_BN = {"eps": 1e-3, "momentum": 0.01}


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


class AlexNetTV(nn.Module):
    """torchvision's ``alexnet``: 64/192/384/256/256 maps, a 6x6 adaptive pool, dropout first.

    Module names and order are torchvision's (features.0 ... classifier.6), so its
    ``state_dict`` loads as is; this is the "one weird trick" single-GPU variant, not the 2012
    two-tower net (see ``alexnet_imagenet``).
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int], *, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        output_shape(self.features, in_channels, input_size, "AlexNet")  # names the minimum input size
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class KerasAlexNetBN(nn.Module):
    """The material's Keras AlexNet: batch norm after every conv and dense layer, 'same' padding.

    conv 96@11x11/4, 256@5x5, 384@3x3, 384@3x3, 256@3x3, each -> BN -> ReLU, max pools 2x2/2
    after the first, second and fifth; dense 4096, 4096, 1000, each -> BN -> ReLU -> dropout;
    dense classes -> BN (the softmax is in the loss). TensorFlow's 'same' padding pads the
    strided layers asymmetrically (:class:`~cnnzoo.nn.same_padding.SamePadding2d`) and batch
    norm uses Keras' epsilon and momentum. Keras counts the BN moving statistics as
    non-trainable weights; PyTorch keeps them as buffers, and also updates the moving variance
    with the unbiased batch variance where Keras uses the biased one.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: tuple[int, int],
        *,
        norm_layer: Callable[..., nn.Module],
        norm_layer_1d: Callable[..., nn.Module],
        dropout: float = 0.4,
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            pad = [SamePadding2d(kernel, stride)] if stride > 1 else []
            padding = 0 if stride > 1 else "same"  # stride 1, odd kernel: TF's padding is symmetric
            return [*pad, nn.Conv2d(cin, cout, kernel, stride, padding), norm_layer(cout, **KERAS_BN),
                    nn.ReLU(inplace=True)]

        def pool() -> list[nn.Module]:
            return [SamePadding2d(2, 2, value=float("-inf")), nn.MaxPool2d(2, 2)]

        def dense(fin: int, fout: int) -> list[nn.Module]:
            return [nn.Linear(fin, fout), norm_layer_1d(fout, **KERAS_BN), nn.ReLU(inplace=True), nn.Dropout(dropout)]

        self.features = nn.Sequential(
            *conv(in_channels, 96, 11, stride=4),
            *pool(),
            *conv(96, 256, 5),
            *pool(),
            *conv(256, 384, 3),
            *conv(384, 384, 3),
            *conv(384, 256, 3),
            *pool(),
        )
        flat = prod(output_shape(self.features, in_channels, input_size, "Keras AlexNet"))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            *dense(flat, 4096),
            *dense(4096, 4096),
            *dense(4096, 1000),
            nn.Linear(1000, num_classes),
            norm_layer_1d(num_classes, **KERAS_BN),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model(
    "alexnet",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="AlexNet adapted to 1x224x224 Fashion-MNIST, 10 classes (course form)",
)
def alexnet(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> AlexNet:
    return AlexNet(in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "alexnet_imagenet",
    input_shape=(3, 227, 227),
    num_classes=1000,
    description="AlexNet as in the 2012 paper: 3x227x227, 1000 classes, one tower (not torchvision's)",
)
def alexnet_imagenet(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> AlexNet:
    return AlexNet(in_channels, num_classes, input_size, first_padding=0, dropout=dropout)


@register_model(
    "alexnet_bn",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="course AlexNet (1x224x224) with batch norm after every conv and hidden dense layer",
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


@register_model(
    "alexnet_tv",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="AlexNet as torchvision builds it (64-192-384-256-256 maps); loads its weights",
)
def alexnet_tv(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> AlexNetTV:
    return AlexNetTV(in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "alexnet_bn_keras",
    input_shape=(3, 32, 32),
    num_classes=10,
    description="the material's Keras AlexNet: 3x32x32, BN after every layer, TF 'same' padding",
)
def alexnet_bn_keras(
    *,
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    norm_layer: Callable[[int], nn.Module],
    norm_layer_1d: Callable[[int], nn.Module],
    dropout: float = 0.4,
) -> KerasAlexNetBN:
    return KerasAlexNetBN(
        in_channels, num_classes, input_size, norm_layer=norm_layer, norm_layer_1d=norm_layer_1d, dropout=dropout
    )
