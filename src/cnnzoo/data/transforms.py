"""What a model is fed, worked out in one place.

An :class:`InputSpec` is the whole of it: the input size, the normalization (mean, std) and how
images are resized. :meth:`InputSpec.from_config` derives it from a training config (its input
size, else the model's registered default; the data set's statistics unless the config overrides
them); training, evaluation, ``predict`` and export all take it from there, so they cannot
disagree. :func:`preprocess` is the one uint8 -> model-input conversion that applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.data.pil_resize import pil_resize
from cnnzoo.errors import CnnzooError
from cnnzoo.models.shapes import as_size

__all__ = ["RESIZE_MODES", "InputSpec", "preprocess", "resolve_input_size"]

# "tensor": bilinear interpolation of float pixels on the device; "pil": Pillow's uint8 resize,
# bit for bit (torchvision's Resize on PIL images, as the course loads its data).
RESIZE_MODES = ("tensor", "pil")


def resolve_input_size(input_size) -> tuple[int, int] | None:
    """``None`` (keep the images' size), or :func:`cnnzoo.models.shapes.as_size`'s ``(H, W)``: the
    models' own rule, so data never accepts a size a model would refuse."""
    return None if input_size is None else as_size(input_size)


def _resolve_normalize(normalize):
    if normalize is None:
        return None
    try:
        mean, std = normalize
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    except (TypeError, ValueError):
        raise CnnzooError(f"normalize must be (mean, std), got {normalize!r}.") from None
    if not torch.isfinite(mean_t).all() or not torch.isfinite(std_t).all() or (std_t <= 0).any():
        raise CnnzooError(f"normalize needs finite means and positive standard deviations, got {normalize!r}.")
    return mean_t, std_t


def shaped_normalize(normalize, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``normalize=(mean, std)`` checked and made (1, C, 1, 1) tensors on ``device`` for
    ``channels``-channel images, as :func:`convert` takes them; ``None`` stays ``None``."""
    norm = _resolve_normalize(normalize)
    if norm is None:
        return None
    if norm[0].numel() not in (1, channels) or norm[1].numel() not in (1, channels):
        raise CnnzooError(f"normalize has {norm[0].numel()} means / {norm[1].numel()} stds for {channels}-channel images.")
    return tuple(t.to(device).view(1, -1, 1, 1) for t in norm)


def preprocess(
    images_uint8: torch.Tensor,
    input_size=None,
    normalize=None,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    resize_mode: str = "tensor",
) -> torch.Tensor:
    """The one conversion from uint8 pixels to model input, used by training, evaluation and
    ``predict``; it runs on whatever device the images are on.

    ``images_uint8`` is (N, C, H, W) or (C, H, W) uint8. Pixels become floats in [0, 1]
    (like ``ToTensor``); with ``input_size`` (int or (H, W)) they are resized bilinearly like
    torchvision's ``Resize`` on tensors (``antialias`` only matters when shrinking, where it is
    on, as in torchvision), or with ``resize_mode="pil"`` as ``Resize`` on PIL images, in uint8
    before the conversion to floats (bit for bit, see :mod:`cnnzoo.data.pil_resize`); with ``normalize=(mean, std)`` (floats or per-channel sequences)
    they become ``(x - mean) / std``. The result has ``dtype`` (float32 by default).
    """
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8:
        raise TypeError(f"preprocess takes a uint8 tensor, got {getattr(images_uint8, 'dtype', type(images_uint8))}")
    if images_uint8.ndim not in (3, 4):
        raise ValueError(f"preprocess takes (N, C, H, W) or (C, H, W) images, got shape {tuple(images_uint8.shape)}")
    single = images_uint8.ndim == 3
    x = images_uint8.unsqueeze(0) if single else images_uint8
    norm = shaped_normalize(normalize, x.shape[1], x.device)
    x = convert(x, resolve_input_size(input_size), norm, dtype, channels_last, check_resize_mode(resize_mode))
    return x.squeeze(0) if single else x


def check_resize_mode(resize_mode: str) -> str:
    if resize_mode not in RESIZE_MODES:
        raise CnnzooError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}.")
    return resize_mode


def convert(x, size, norm, dtype, channels_last, resize_mode="tensor"):
    """uint8 (N, C, H, W) -> float: the body of :func:`preprocess`, with validated arguments
    (``norm`` is (mean, std) already shaped (1, C, 1, 1) on ``x``'s device)."""
    if resize_mode == "pil" and size is not None and tuple(x.shape[-2:]) != size:
        x = pil_resize(x, size)
    x = x.to(torch.float32).div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != size:
        shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    if norm is not None:
        x = (x - norm[0]) / norm[1]
    if dtype != torch.float32:
        x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@dataclass(frozen=True)
class InputSpec:
    """What a model is fed: uint8 images resized to ``input_size`` (``None``: as they are) the way
    ``resize_mode`` says, scaled to [0, 1] and, with ``mean``/``std`` (floats or per-channel
    tuples), normalized to ``(x - mean) / std``. Checked when made."""

    input_size: tuple[int, int] | None = None
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None
    resize_mode: str = "tensor"

    def __post_init__(self):
        object.__setattr__(self, "input_size", resolve_input_size(self.input_size))
        if (self.mean is None) != (self.std is None):
            raise CnnzooError("An input normalization needs both mean and std, or neither.")
        _resolve_normalize(self.normalize)
        check_resize_mode(self.resize_mode)

    @classmethod
    def from_config(cls, config, info=None) -> InputSpec:
        """The input of a run of ``config`` (a TrainConfig, or config.json's dict): its ``input_size``,
        else the model's registered default; with ``normalize`` on, the data set's statistics
        (``info``, by default ``config.dataset``'s) unless ``normalize_mean``/``normalize_std``
        override them (a pretrained body expects its own); its ``resize_mode``."""
        from cnnzoo.data.catalog import get_dataset_info
        from cnnzoo.models import get_model_spec

        get = config.get if isinstance(config, Mapping) else lambda name, default=None: getattr(config, name, default)
        size = get("input_size")
        if size is None:
            size = tuple(get_model_spec(get("model")).input_shape[1:])
        spec = cls(input_size=size, resize_mode=get("resize_mode") or "tensor")
        if not get("normalize", True):
            return spec
        info = info if info is not None else get_dataset_info(get("dataset"))
        mean, std = get("normalize_mean"), get("normalize_std")
        return cls(size, info.mean if mean is None else mean, info.std if std is None else std, spec.resize_mode)

    @property
    def normalize(self) -> tuple[Any, Any] | None:
        """``(mean, std)``, or ``None`` without normalization: :func:`preprocess`'s argument."""
        return None if self.mean is None else (self.mean, self.std)

    def kwargs(self) -> dict[str, Any]:
        """``input_size``, ``normalize`` and ``resize_mode``, as :func:`preprocess`,
        :class:`~cnnzoo.data.BatchIterator` and ``evaluate`` take them."""
        return {"input_size": self.input_size, "normalize": self.normalize, "resize_mode": self.resize_mode}

    def __call__(self, images_uint8: torch.Tensor, **options) -> torch.Tensor:
        """:func:`preprocess` of ``images_uint8`` to this input (``options``: its ``dtype``, ``channels_last``)."""
        return preprocess(images_uint8, **self.kwargs(), **options)

    def module(self, channels: int = 1) -> nn.Module:
        """This preprocessing as an ``nn.Module`` of ``channels``-channel uint8 images, its constants in
        buffers, so that it can be traced or exported in front of a model."""
        return _Preprocess(self, channels)


class _Preprocess(nn.Module):
    def __init__(self, spec: InputSpec, channels: int):
        super().__init__()
        self.input_size, self.resize_mode = spec.input_size, spec.resize_mode
        norm = shaped_normalize(spec.normalize, channels, torch.device("cpu"))
        self.register_buffer("mean", norm[0] if norm else None)
        self.register_buffer("std", norm[1] if norm else None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        norm = (self.mean, self.std) if self.mean is not None else None
        return convert(images, self.input_size, norm, torch.float32, False, self.resize_mode)
