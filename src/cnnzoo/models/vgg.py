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


def vgg_blocks(
    conv_arch: Sequence[tuple[int, int]],
    in_channels: int,
    norm_layer: Callable[[int], nn.Module] | None = None,
) -> list[nn.Sequential]:
    """One ``vgg_block`` per (num_convs, channels) in ``conv_arch``, each fed by the one before."""
    blocks, channels = [], in_channels
    for num_convs, out_channels in conv_arch:
        blocks.append(vgg_block(num_convs, channels, out_channels, norm_layer))
        channels = out_channels
    return blocks


def vgg_head(in_features: int, num_classes: int, dropout: float) -> list[nn.Module]:
    """The dense layers closing every VGG: 4096, 4096 (ReLU, dropout), then the classes."""
    return [
        nn.Linear(in_features, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, num_classes),
    ]


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
        self.features = nn.Sequential(*vgg_blocks(conv_arch, in_channels, norm_layer))
        flat = prod(output_shape(self.features, in_channels, input_size, "VGG"))
        self.classifier = nn.Sequential(nn.Flatten(), *vgg_head(flat, num_classes, dropout))

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
        self.features = nn.Sequential(*(layer for block in vgg_blocks(conv_arch, in_channels) for layer in block))
        output_shape(self.features, in_channels, input_size, "VGG")  # names the minimum input size
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(*vgg_head(conv_arch[-1][1] * 7 * 7, num_classes, dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _builder(model_class: type[VGG] | type[VGGTV], conv_arch: Sequence[tuple[int, int]]) -> Callable[..., nn.Module]:
    def build(*, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5) -> nn.Module:
        return model_class(conv_arch, in_channels, num_classes, input_size, dropout=dropout)

    return build


# The variants without batch norm: one row each, (name, class, conv_arch, input shape, classes, description).
for _name, _class, _arch, _shape, _classes, _description in (
    ("vgg11", VGG, VGG11, (1, 224, 224), 10, "VGG-11 (8 convs, 3 dense) on 1x224x224, 10 classes (d2l form)"),
    ("vgg11_small", VGG, VGG11_SMALL, (1, 224, 224), 10,
     "VGG-11 with a quarter of the channels, 1x224x224 (d2l's fit for small GPUs)"),
    ("vgg16", VGG, VGG16, (3, 224, 224), 1000,
     "VGG-16 (13 convs, 3 dense), 3x224x224, 1000 classes; torchvision's count, d2l's layout"),
    ("vgg11_tv", VGGTV, VGG11, (3, 224, 224), 1000,
     "VGG-11 as torchvision builds it (7x7 adaptive pool); loads its weights"),
    ("vgg16_tv", VGGTV, VGG16, (3, 224, 224), 1000,
     "VGG-16 as torchvision builds it (7x7 adaptive pool); loads its weights"),
):
    register_model(_name, input_shape=_shape, num_classes=_classes, description=_description)(_builder(_class, _arch))


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
