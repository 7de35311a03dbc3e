"""TensorFlow's 'same' padding, which Keras models use and PyTorch's layers cannot express."""

import math

import torch.nn.functional as F
from torch import Tensor, nn


class SamePadding2d(nn.Module):
    """Pad (N, C, H, W) so that a ``kernel``/``stride`` layer after it yields ceil(size / stride).

    TensorFlow pads ``max((out - 1) * stride + kernel - size, 0)`` pixels per axis, the odd one
    at the bottom/right; PyTorch's ``padding=`` is symmetric, so a stride-4 11x11 conv on 32x32
    (3 pixels above, 4 below) needs this layer. The amounts follow the input size, as in TF.
    ``value`` fills the border: 0 before a conv, -inf before a max pool (TF ignores the padding).
    """

    def __init__(self, kernel: int, stride: int, value: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.stride, self.value = kernel, stride, value

    def _amounts(self, size: int) -> tuple[int, int]:
        total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = self._amounts(x.shape[-2])
        left, right = self._amounts(x.shape[-1])
        return F.pad(x, (left, right, top, bottom), value=self.value)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, value={self.value}"
