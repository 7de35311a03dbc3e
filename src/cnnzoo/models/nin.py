"""Network in Network (Lin et al., 2013) as d2l builds it for Fashion-MNIST.

No dense layers at all: each NiN block is a spatial convolution followed by two 1x1 convolutions
(a small per-pixel MLP across channels), and the last block has one channel per class, whose
global average is the logit. 1,992,166 parameters at 1 channel, 10 classes, the book's count.
"""

from torch import Tensor, nn

from cnnzoo.models.registry import register_model
from cnnzoo.models.shapes import output_shape

# (out_channels, kernel, stride, padding) of the book's first three blocks, each followed by a 3x3/2 max pool;
# the fourth block (3x3, padding 1) maps to the classes.
NIN_BLOCKS = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1))


class NiNBlock(nn.Sequential):
    """conv k×k -> ReLU -> conv 1×1 -> ReLU -> conv 1×1 -> ReLU, every conv with its bias (d2l's nin_block)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(),
        )


class NiN(nn.Module):
    """Three NiN blocks with max pools, dropout 0.5, a NiN block to ``num_classes`` channels, global average.

    The logits come out of the last block's ReLU, so they are never negative, exactly as in the book.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5) -> None:
        super().__init__()
        layers, channels = [], in_channels
        for out_channels, kernel, stride, padding in NIN_BLOCKS:
            layers += [NiNBlock(channels, out_channels, kernel, stride, padding), nn.MaxPool2d(3, stride=2)]
            channels = out_channels
        layers += [nn.Dropout(dropout), NiNBlock(channels, num_classes, 3, 1, 1)]
        self.features = nn.Sequential(*layers)
        output_shape(self.features, in_channels, input_size, "NiN")  # names the minimum input size
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.avgpool(self.features(x)))


@register_model(
    "nin",
    input_shape=(1, 224, 224),
    num_classes=10,
    description="Network in Network, d2l's Fashion-MNIST form (1x224x224): 1x1-conv blocks, global average "
    "pooling instead of dense layers",
)
def nin(*, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> NiN:
    return NiN(in_channels, num_classes, input_size)
