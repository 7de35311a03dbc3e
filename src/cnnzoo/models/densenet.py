"""DenseNet (Huang et al., 2017): d2l's Fashion-MNIST form and torchvision's DenseNet-121.

Each layer of a dense block sees the concatenation of the block's input and every earlier layer's
output, and adds ``growth_rate`` channels of its own; transition blocks (BN, ReLU, 1x1 conv, 2x2
average pool) halve the channels and the resolution between blocks.

* d2l (``densenet``, 1x96x96, 758,226 parameters at 10 classes): four blocks of four layers
  (BN -> ReLU -> 3x3 conv with bias), growth 32, a stem conv with bias.
* torchvision (``densenet121_tv``, 3x224x224, 7,978,856 parameters): blocks of 6, 12, 24, 16 bottleneck
  layers (BN -> ReLU -> 1x1 conv to 4·growth -> BN -> ReLU -> 3x3 conv), bias-free convs. Module names follow
  torchvision's ``densenet121`` (features.denseblock1.denselayer1.norm1, features.transition1.conv, ...), so
  its ``state_dict`` loads as is.

The concatenation is written as torchvision's and d2l's code compute it: layer i reads
cat(input, out_1, ..., out_{i-1}); chaining cat(previous, new) gives the same tensor with one
concatenation per layer.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape


class DenseLayer(nn.Module):
    """BN -> ReLU -> (1x1 conv to ``bottleneck`` channels -> BN -> ReLU ->) 3x3 conv to ``growth_rate``."""

    def __init__(self, in_channels: int, growth_rate: int, norm_layer: Callable[[int], nn.Module],
                 bottleneck: int | None, conv_bias: bool) -> None:
        super().__init__()
        self.norm1 = norm_layer(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        if bottleneck is None:
            self.conv1 = nn.Conv2d(in_channels, growth_rate, 3, padding=1, bias=conv_bias)
        else:
            self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, bias=conv_bias)
            self.norm2 = norm_layer(bottleneck)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bottleneck, growth_rate, 3, padding=1, bias=conv_bias)
        self.bottleneck = bottleneck

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.bottleneck is not None:
            out = self.conv2(self.relu2(self.norm2(out)))
        return out


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; the output is the input with every layer's ``growth_rate`` channels appended."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, norm_layer: Callable[[int], nn.Module],
                 bottleneck: int | None = None, conv_bias: bool = False) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, norm_layer,
                                                             bottleneck, conv_bias))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], 1)
        return x


class TransitionBlock(nn.Sequential):
    """BN -> ReLU -> 1x1 conv -> 2x2/2 average pool: fewer channels, half the resolution."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer: Callable[[int], nn.Module],
                 conv_bias: bool = False) -> None:
        super().__init__()
        self.norm = norm_layer(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=conv_bias)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), dense blocks with transitions between them, BN, ReLU,
    global average pool, fc. Any input the stem, pools and transitions reduce to at least 1x1 works."""

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int], *,
                 block_layers: tuple[int, ...], growth_rate: int, norm_layer: Callable[[int], nn.Module],
                 bottleneck: int | None, conv_bias: bool, stem_channels: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=conv_bias))
        self.features.add_module("norm0", norm_layer(stem_channels))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        channels = stem_channels
        for i, num_layers in enumerate(block_layers, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, norm_layer, bottleneck, conv_bias)
            self.features.add_module(f"denseblock{i}", block)
            channels = block.out_channels
            if i < len(block_layers):
                transition = TransitionBlock(channels, channels // 2, norm_layer, conv_bias)
                self.features.add_module(f"transition{i}", transition)
                channels //= 2
        self.features.add_module(f"norm{len(block_layers) + 1}", norm_layer(channels))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        output_shape(self, in_channels, input_size, "DenseNet")  # names the minimum input size

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.relu(self.features(x)))
        return self.classifier(torch.flatten(x, 1))


@register_model(
    "densenet",
    input_shape=(1, 96, 96),
    num_classes=10,
    description="DenseNet, d2l's Fashion-MNIST form (1x96x96): four dense blocks of four 3x3 layers, growth 32, "
    "transition blocks between them",
)
def densenet(*, in_channels: int, num_classes: int, input_size: tuple[int, int],
             norm_layer: Callable[[int], nn.Module]) -> DenseNet:
    return DenseNet(in_channels, num_classes, input_size, block_layers=(4, 4, 4, 4), growth_rate=32,
                    norm_layer=norm_layer, bottleneck=None, conv_bias=True)


@register_model(
    "densenet121_tv",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="DenseNet-121 as torchvision builds it (bottleneck layers, growth 32); loads its weights",
)
def densenet121_tv(*, in_channels: int, num_classes: int, input_size: tuple[int, int],
                   norm_layer: Callable[[int], nn.Module]) -> DenseNet:
    return DenseNet(in_channels, num_classes, input_size, block_layers=(6, 12, 24, 16), growth_rate=32,
                    norm_layer=norm_layer, bottleneck=4 * 32, conv_bias=False)
