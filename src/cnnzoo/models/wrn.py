"""Wide residual networks (Zagoruyko & Komodakis, "Wide Residual Networks", 2016).

WRN-d-k: a 3x3 conv stem with 16 channels at the input's own resolution (no pooling stem), three
stages of n = (d - 4) / 6 pre-activation basic blocks with 16k, 32k and 64k channels at strides
1, 2, 2, then BN, ReLU, global average pooling and one linear layer. Every conv is bias-free (BN
follows or precedes it), so at 3 input channels and 10 classes WRN-16-8 has 10,961,370 parameters,
WRN-28-10 36,479,194 and WRN-40-4 8,949,210: the paper's 11.0M, 36.5M and 8.9M (and WRN-16-4,
registered for short runs, 2,748,890).
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models.registry import register_model

STEM_CHANNELS = 16
# (channels per unit of widen factor, stride of the stage's first block)
WRN_STAGES = ((16, 1), (32, 2), (64, 2))


class WideBasicBlock(nn.Module):
    """BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> [dropout] -> conv3x3, plus the shortcut.

    Pre-activation (He et al. 2016, as WRN uses it): the sum is not followed by a ReLU; the next
    block's BN-ReLU normalizes it. Where the block changes channels or resolution, the shortcut is
    a strided 1x1 conv of the pre-activated input (the paper's code), else the input itself.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(in_channels)
        self.relu1 = nn.ReLU(inplace=False)  # its output also feeds the shortcut conv
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = norm_layer(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        # Absent rather than Dropout(0): a model without dropout shows no dropout layer.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        identity = x if self.shortcut is None else self.shortcut(activated)
        return out + identity


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: stem conv, three stages of wide blocks, BN-ReLU, global average pool, fc.

    Every conv is padded and the final pool is adaptive, so any input of at least 1x1 runs; at
    28x28 the stages see 28, 14 and 7 pixels.
    """

    def __init__(
        self,
        depth: int,
        widen: int,
        in_channels: int,
        num_classes: int,
        *,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise CnnzooError(f"A wide ResNet's depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                              f"got {depth}.")
        if not 0.0 <= dropout < 1.0:
            raise CnnzooError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
        blocks_per_stage = (depth - 4) // 6
        self.depth, self.widen = depth, widen
        self.conv1 = nn.Conv2d(in_channels, STEM_CHANNELS, 3, padding=1, bias=False)
        channels = STEM_CHANNELS
        for i, (width, stride) in enumerate(WRN_STAGES, start=1):
            out_channels = width * widen
            blocks = [WideBasicBlock(channels, out_channels, stride, norm_layer, dropout)]
            blocks += [WideBasicBlock(out_channels, out_channels, 1, norm_layer, dropout)
                       for _ in range(blocks_per_stage - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            channels = out_channels
        self.bn = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _register_wrn(depth: int, widen: int, parameters: str) -> None:
    @register_model(
        f"wrn{depth}_{widen}",
        input_shape=(1, 28, 28),
        num_classes=10,
        description=f"Wide ResNet WRN-{depth}-{widen} (pre-activation, 3x3 stem at native 28 px; "
        f"{parameters} parameters at 3 channels); dropout=p between the convs",
    )
    def build(
        *,
        in_channels: int,
        num_classes: int,
        input_size: tuple[int, int],
        norm_layer: Callable[[int], nn.Module],
        dropout: float = 0.0,
    ) -> WideResNet:
        del input_size  # any size works (see WideResNet)
        return WideResNet(depth, widen, in_channels, num_classes, norm_layer=norm_layer, dropout=dropout)


# The three the Fashion-MNIST benchmark table lists (zalandoresearch/fashion-mnist), and WRN-16-4,
# a quarter of WRN-16-8's work, for the 60-second recipe.
for _depth, _widen, _parameters in ((16, 4, "2.7M"), (16, 8, "11.0M"), (28, 10, "36.5M"), (40, 4, "8.9M")):
    _register_wrn(_depth, _widen, _parameters)
