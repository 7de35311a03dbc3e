"""VGG: stacks of 3x3 convs closed by 2x2 max pools, described by a ``conv_arch`` table."""

from collections.abc import Callable, Sequence
from math import prod

import torch
from torch import Tensor, nn

from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape

# (number of convs, output channels) per block
VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
VGG11_SMALL = tuple((n, c // 4) for n, c in VGG11)
VGG16 = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def vgg_block(
    num_convs: int,
    in_channels: int,
    out_channels: int,
    norm_layer: Callable[[int], nn.Module] | None = None,
) -> nn.Sequential:
    """``num_convs`` 3x3 convs (padding keeps the size) with ReLU, then a 2x2 max pool."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        if norm_layer:
            layers.append(norm_layer(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """One ``vgg_block`` per (num_convs, channels) in ``conv_arch``, then dense 4096, 4096."""

    def __init__(
        self,
        conv_arch: Sequence[tuple[int, int]],
        in_channels: int,
        num_classes: int,
        input_size: tuple[int, int],
        *,
        dropout: float = 0.5,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        blocks, channels = [], in_channels
        for num_convs, out_channels in conv_arch:
            blocks.append(vgg_block(num_convs, channels, out_channels, norm_layer))
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        flat = prod(output_shape(self.features, in_channels, input_size, "VGG"))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class VGGTV(nn.Module):
    """torchvision's VGG: one flat ``features`` Sequential, a 7x7 adaptive pool, then the head.

    Module names and order are torchvision's (features.0, ..., classifier.6), so its
    ``state_dict`` loads as is; the adaptive pool lets any input of at least 32x32 through.
    """

    def __init__(
        self,
        conv_arch: Sequence[tuple[int, int]],
        in_channels: int,
        num_classes: int,
        input_size: tuple[int, int],
        *,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for num_convs, out_channels in conv_arch:
            layers.extend(vgg_block(num_convs, channels, out_channels))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        output_shape(self.features, in_channels, input_size, "VGG")  # names the minimum input size
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(
    "vgg11",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="VGG-11 (8 convs, 3 dense) on 1x224x224, 10 classes (d2l form)",
)
def vgg11(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> VGG:
    return VGG(VGG11, in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "vgg11_small",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="VGG-11 with a quarter of the channels, 1x224x224 (d2l's fit for small GPUs)",
)
def vgg11_small(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> VGG:
    return VGG(VGG11_SMALL, in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "vgg11_bn",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="VGG-11 (d2l form, 1x224x224) with batch norm after every conv",
)
def vgg11_bn(
    *,
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    norm_layer: Callable[[int], nn.Module],
    dropout: float = 0.5,
) -> VGG:
    return VGG(VGG11, in_channels, num_classes, input_size, dropout=dropout, norm_layer=norm_layer)


@register_model(
    "vgg16",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="VGG-16 (13 convs, 3 dense), 3x224x224, 1000 classes; torchvision's count, d2l's layout",
)
def vgg16(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> VGG:
    return VGG(VGG16, in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "vgg11_tv",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="VGG-11 as torchvision builds it (7x7 adaptive pool); loads its weights",
)
def vgg11_tv(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> VGGTV:
    return VGGTV(VGG11, in_channels, num_classes, input_size, dropout=dropout)


@register_model(
    "vgg16_tv",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="VGG-16 as torchvision builds it (7x7 adaptive pool); loads its weights",
)
def vgg16_tv(
    *, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5
) -> VGGTV:
    return VGGTV(VGG16, in_channels, num_classes, input_size, dropout=dropout)
