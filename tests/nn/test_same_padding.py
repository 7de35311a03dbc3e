"""SamePadding2d against TensorFlow's 'same' rule, worked out independently of the layer's own arithmetic."""

import math

import pytest
import torch
import torch.nn.functional as F

from cnnzoo.nn.same_padding import SamePadding2d

# (kernel, stride, height, width, (top, bottom, left, right)). The amounts come from TensorFlow's
# documented form: pad = max(kernel - stride, 0) when size % stride == 0, else max(kernel - size % stride, 0),
# split as pad // 2 above/left and the rest below/right.
CASES = [
    (11, 4, 32, 32, (3, 4, 3, 4)),
    (3, 2, 9, 9, (1, 1, 1, 1)),
    (3, 2, 10, 10, (0, 1, 0, 1)),
    (5, 1, 28, 28, (2, 2, 2, 2)),
    (2, 2, 7, 7, (0, 1, 0, 1)),
    (3, 2, 9, 10, (1, 1, 0, 1)),  # each axis follows its own size
]


def _hand_conv(x, weight, stride, top, left):
    """A 'same' conv in float64 by its definition: out-of-image taps read zero."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    out = torch.zeros(n, weight.shape[0], math.ceil(h / stride), math.ceil(w / stride), dtype=torch.float64)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            for a in range(k):
                for b in range(k):
                    row, col = i * stride - top + a, j * stride - left + b
                    if 0 <= row < h and 0 <= col < w:
                        out[:, :, i, j] += x[:, :, row, col] @ weight[:, :, a, b].T
    return out


@pytest.mark.parametrize("kernel, stride, h, w, amounts", CASES)
def test_padding_is_tensorflows_with_the_odd_pixel_bottom_right(kernel, stride, h, w, amounts):
    padded = SamePadding2d(kernel, stride)(torch.ones(1, 1, h, w))
    rows = padded[0, 0].sum(dim=1).nonzero().flatten()
    cols = padded[0, 0].sum(dim=0).nonzero().flatten()
    top, bottom = rows[0].item(), padded.shape[2] - 1 - rows[-1].item()
    left, right = cols[0].item(), padded.shape[3] - 1 - cols[-1].item()
    assert (top, bottom, left, right) == amounts


@pytest.mark.parametrize("kernel, stride, h, w, amounts", CASES)
def test_a_conv_after_it_gives_ceil_size_over_stride_and_tensorflows_values(kernel, stride, h, w, amounts):
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    weight = torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
    out = F.conv2d(SamePadding2d(kernel, stride)(x), weight, stride=stride)
    assert out.shape == (2, 4, math.ceil(h / stride), math.ceil(w / stride))
    top, _, left, _ = amounts
    torch.testing.assert_close(out, _hand_conv(x, weight, stride, top, left), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, stride, h, w, amounts", CASES)
def test_minus_infinity_before_a_max_pool_ignores_the_border(kernel, stride, h, w, amounts):
    # Negative inputs: a zero border would win every window that touches it, -inf never does.
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w) - 10
    out = F.max_pool2d(SamePadding2d(kernel, stride, value=-math.inf)(x), kernel, stride)
    assert out.shape == (2, 3, math.ceil(h / stride), math.ceil(w / stride))
    # torch's own pool pads with -inf symmetrically; ceil_mode adds the last, partial window that the
    # odd pixel at the bottom/right stands for.
    top, _, left, _ = amounts
    expected = F.max_pool2d(x, kernel, stride, padding=(top, left), ceil_mode=True)
    assert torch.equal(out, expected)
    assert torch.isfinite(out).all()
    if any(amounts):
        zero_border = F.max_pool2d(SamePadding2d(kernel, stride)(x), kernel, stride)
        assert (zero_border == 0).any() and not torch.equal(zero_border, expected)
