"""ResNet-18: the course's residual network and a torchvision-compatible twin.

Module names follow torchvision's ``resnet18`` (conv1, bn1, layer1.0.conv1, ...,
layer2.0.downsample.0/1, fc), so with ``shortcut_norm=True`` its ``state_dict`` loads as is.
With ``conv_bias=True`` every conv carries a bias, as d2l's code writes it (11,178,378
parameters at 1 channel, 10 classes, instead of 11,174,474): useless before batch norm, whose
shift cancels it, but part of the course's exact model.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cnnzoo.models.registry import register_model

# (channels, stride of the first block) per stage; each stage holds two blocks
RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


class ResidualBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus the input, then ReLU.

    When the block changes channels or resolution, the input passes a strided 1x1 conv first;
    ``shortcut_norm`` adds BN after it (torchvision) instead of the course's bare conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        shortcut_norm: bool = False,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        # By default convs followed by BN carry no bias: BN's shift would cancel it.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=conv_bias)
        self.bn1 = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=conv_bias)
        self.bn2 = norm_layer(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=not shortcut_norm)
            norm = [norm_layer(out_channels)] if shortcut_norm else []
            self.downsample = nn.Sequential(shortcut, *norm)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), residual stages, global average pool, fc.

    Every conv is padded and the final pool is adaptive, so any input size of at least 1x1
    works and the fc width is the last stage's channel count.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        shortcut_norm: bool = False,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=conv_bias)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for i, (out_channels, stride) in enumerate(RESNET18_STAGES, start=1):
            first = ResidualBlock(channels, out_channels, stride, norm_layer, shortcut_norm, conv_bias)
            second = ResidualBlock(out_channels, out_channels, 1, norm_layer, shortcut_norm, conv_bias)
            self.add_module(f"layer{i}", nn.Sequential(first, second))
            channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(
    "resnet18",
    input_shape=(1, 96, 96),
    num_classes=10,
    description="ResNet-18, d2l's layout (1x96x96, bare 1x1 shortcuts) without its conv biases; "
    "conv_bias=True is d2l's exact model",
)
def resnet18(
    *,
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    norm_layer: Callable[[int], nn.Module],
    shortcut_norm: bool = False,
    conv_bias: bool = False,
) -> ResNet18:
    del input_size  # any size works (see ResNet18)
    return ResNet18(in_channels, num_classes, norm_layer=norm_layer, shortcut_norm=shortcut_norm,
                    conv_bias=conv_bias)


@register_model(
    "resnet18_tv",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="ResNet-18 as torchvision builds it (BN on the shortcuts); loads its weights",
)
def resnet18_tv(
    *,
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    norm_layer: Callable[[int], nn.Module],
) -> ResNet18:
    del input_size  # any size works (see ResNet18)
    return ResNet18(in_channels, num_classes, norm_layer=norm_layer, shortcut_norm=True)
