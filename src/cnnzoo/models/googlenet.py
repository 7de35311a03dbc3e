"""GoogLeNet (Szegedy et al., 2014): d2l's Fashion-MNIST form and torchvision's.

Both are the same nine Inception blocks between the same stem and head; they differ in what one
convolution unit is and in their pools:

* d2l (``googlenet``, 1x96x96, 5,977,530 parameters at 10 classes): conv with bias -> ReLU, the third
  path's 5x5 conv as the paper draws it, padded 3x3/2 max pools, no dropout.
* torchvision (``googlenet_tv``, 3x224x224, 6,624,904 parameters): conv without bias -> batch norm
  (eps 0.001) -> ReLU, the third path's conv 3x3 (torchvision's known deviation from the paper, kept so
  its weights load), ceil-mode max pools, dropout 0.2 before the classifier. Module names follow
  torchvision's ``GoogLeNet(aux_logits=False)`` (conv1, inception3a.branch2.1.bn, ...), so its
  ``state_dict`` loads as is. ``transform_input`` (torchvision's re-normalization for its ImageNet
  weights) is left out: it is off unless those weights are requested.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape

# Per Inception block: (1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool projection) channels, the paper's table 1.
INCEPTION_3 = ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64))
INCEPTION_4 = ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
               (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128))
INCEPTION_5 = ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128))


class ConvUnit(nn.Module):
    """conv -> (batch norm) -> ReLU: d2l's conv with its bias when ``norm_layer`` is None, else
    torchvision's ``BasicConv2d`` (bias-free conv, its BN cancels a bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=norm_layer is None)
        self.bn = norm_layer(out_channels) if norm_layer is not None else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.relu(x if self.bn is None else self.bn(x))


class InceptionBlock(nn.Module):
    """Four parallel paths on the same input, concatenated along the channels:
    1x1 | 1x1 -> 3x3 | 1x1 -> k×k | 3x3/1 max pool -> 1x1. Every path keeps the spatial size."""

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, *,
                 unit: Callable[..., nn.Module], path3_kernel: int = 5, ceil_mode: bool = False) -> None:
        super().__init__()
        self.branch1 = unit(in_channels, c1, 1)
        self.branch2 = nn.Sequential(unit(in_channels, c2[0], 1), unit(c2[0], c2[1], 3, padding=1))
        self.branch3 = nn.Sequential(unit(in_channels, c3[0], 1),
                                     unit(c3[0], c3[1], path3_kernel, padding=path3_kernel // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=ceil_mode),
                                     unit(in_channels, c4, 1))
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """Stem (7x7/2 conv, pool, 1x1 conv, 3x3 conv, pool), Inception 3a-3b, pool, 4a-4e, pool, 5a-5b,
    global average pool, (dropout), fc. The final pool is adaptive: any input the stem and pools reduce
    to at least 1x1 works."""

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int], *,
                 unit: Callable[..., nn.Module], pool: Callable[[], nn.Module], last_pool: Callable[[], nn.Module],
                 path3_kernel: int, inception_ceil_mode: bool, dropout: float) -> None:
        super().__init__()
        inception = partial(InceptionBlock, unit=unit, path3_kernel=path3_kernel, ceil_mode=inception_ceil_mode)
        self.conv1 = unit(in_channels, 64, 7, stride=2, padding=3)
        self.maxpool1 = pool()
        self.conv2 = unit(64, 64, 1)
        self.conv3 = unit(64, 192, 3, padding=1)
        self.maxpool2 = pool()
        channels = 192
        for stage, widths, pool_after in (("3", INCEPTION_3, pool), ("4", INCEPTION_4, last_pool),
                                          ("5", INCEPTION_5, None)):
            for letter, (c1, c2, c3, c4) in zip("abcde", widths):
                block = inception(channels, c1, c2, c3, c4)
                self.add_module(f"inception{stage}{letter}", block)
                channels = block.out_channels
            if pool_after is not None:
                self.add_module(f"maxpool{stage}", pool_after())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.fc = nn.Linear(channels, num_classes)
        output_shape(self, in_channels, input_size, "GoogLeNet")  # names the minimum input size

    def _features(self, x: Tensor) -> Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4d(self.inception4c(self.inception4b(self.inception4a(x))))
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x))

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(self._features(x)), 1)
        return self.fc(x if self.dropout is None else self.dropout(x))


@register_model(
    "googlenet",
    input_shape=(1, 96, 96),
    num_classes=10,
    description="GoogLeNet, d2l's Fashion-MNIST form (1x96x96): nine Inception blocks of four parallel paths, "
    "no batch norm",
)
def googlenet(*, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> GoogLeNet:
    pool = partial(nn.MaxPool2d, 3, stride=2, padding=1)
    return GoogLeNet(in_channels, num_classes, input_size, unit=ConvUnit, pool=pool, last_pool=pool,
                     path3_kernel=5, inception_ceil_mode=False, dropout=0.0)


@register_model(
    "googlenet_tv",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="GoogLeNet as torchvision builds it without auxiliary heads (batch norm); loads its weights",
)
def googlenet_tv(*, in_channels: int, num_classes: int, input_size: tuple[int, int],
                 norm_layer: Callable[[int], nn.Module]) -> GoogLeNet:
    unit = partial(ConvUnit, norm_layer=partial(norm_layer, eps=0.001))
    return GoogLeNet(in_channels, num_classes, input_size, unit=unit,
                     pool=partial(nn.MaxPool2d, 3, stride=2, ceil_mode=True),
                     last_pool=partial(nn.MaxPool2d, 2, stride=2, ceil_mode=True),
                     path3_kernel=3, inception_ceil_mode=True, dropout=0.2)
