"""PIL's bilinear resize of 8-bit images, bit for bit, as batched tensor arithmetic on any device.

The course resizes each PIL image (torchvision's ``Resize`` on a mode-"L" image) before
``ToTensor``, so its pixels stay on the 1/255 grid; interpolating floats, as cnnzoo's default
path does, lands up to 1/255 away. Pillow resizes in two passes (horizontal, then vertical),
each a weighted sum with fixed-point weights (22 fractional bits) rounded back to uint8; this
module computes exactly those weights (Pillow's ``precompute_coeffs`` and
``normalize_coeffs_8bpc`` in ``Resample.c``) and applies each pass as a matrix product in
float64, where every partial sum is an integer below 2**31 and therefore exact.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["pil_resize"]

_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


@functools.lru_cache(maxsize=32)
def _weights(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) float64 matrix of Pillow's integer weights for one axis."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)  # shrinking widens the filter: Pillow's built-in antialiasing
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    rows = torch.zeros(out_size, in_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero, as int() does
        xmax = min(int(center + support + 0.5), in_size)
        taps = [_bilinear((x - center + 0.5) / filterscale) for x in range(xmin, xmax)]
        total = sum(taps)
        for x, w in zip(range(xmin, xmax), taps):
            w = w / total if total != 0.0 else w
            rows[xx, x] = math.trunc((0.5 if w >= 0 else -0.5) + w * (1 << _PRECISION_BITS))
    return rows


def _round_to_uint8(sums: torch.Tensor) -> torch.Tensor:
    # Pillow starts each sum at 2**21 (one half) and clips (sum >> 22) to [0, 255].
    return torch.floor((sums + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS)).clamp_(0, 255)


def pil_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) ``images`` to ``size`` (H, W) as ``PIL.Image.resize(...,
    BILINEAR)`` does each channel; returns uint8 on the same device."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"pil_resize takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    out_h, out_w = size
    in_h, in_w = (int(side) for side in images.shape[-2:])  # plain ints even where torch.jit.trace gives tensors
    x = images.to(torch.float64)
    # While torch.export traces (an ONNX export), tensors made here are fake: caching them would
    # hand fake weights to every later eager call.
    weights = _weights.__wrapped__ if torch.compiler.is_compiling() else _weights
    if out_w != in_w:  # Pillow skips a pass whose axis keeps its size
        x = _round_to_uint8(x @ weights(in_w, out_w).to(x.device).T)
    if out_h != in_h:
        x = _round_to_uint8(weights(in_h, out_h).to(x.device) @ x)
    return x.to(torch.uint8)
