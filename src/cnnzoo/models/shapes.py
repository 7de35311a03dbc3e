"""Feature-map shapes worked out on the meta device, so dense heads follow the input size."""

from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.values import is_whole

# Far beyond any image cnnzoo handles; only bounds the search for a minimum size.
_LARGEST_SIDE = 4096
# The largest input side a model is built for: 4.5x AlexNet's 224. Beyond it the dense heads alone
# need tens of GB (VGG-11 at 100000 px: 10^13 weights), so the request is refused up front.
MAX_INPUT_SIDE = 1024


def as_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``input_size`` as (H, W); an int means a square image. The one rule for an input size:
    models are built for it, and the data is resized to it by the same rule."""
    if is_whole(input_size):
        size = (input_size, input_size)
    else:
        size = tuple(input_size) if isinstance(input_size, Sequence) and not isinstance(input_size, str) else ()
    if len(size) != 2 or not all(is_whole(s) and s > 0 for s in size):
        raise CnnzooError(
            f"input_size must be a positive int or a pair (H, W) of them, got {input_size!r}."
        )
    if max(size) > MAX_INPUT_SIDE:
        raise CnnzooError(f"An input of {size[0]}×{size[1]} pixels is larger than cnnzoo builds models for (at most "
                          f"{MAX_INPUT_SIDE} per side; the data sets are 28×28); choose a smaller size.")
    return (int(size[0]), int(size[1]))


def _try_shape(module: nn.Module, in_channels: int, size: tuple[int, int]) -> torch.Size | None:
    # Meta tensors carry shapes without storage, so even VGG-16 at 224 costs no arithmetic, and
    # the module's own parameters and buffers (BN running stats) are never touched.
    stand_ins = {
        name: torch.empty_like(t, device="meta")
        for name, t in chain(module.named_parameters(), module.named_buffers())
    }
    # Batch 2: batch norm in training mode rejects a single value per channel.
    x = torch.empty(2, in_channels, *size, device="meta")
    try:
        with torch.no_grad():
            y = torch.func.functional_call(module, stand_ins, (x,))
    except RuntimeError:  # torch's "kernel size can't be greater than input" and kin
        return None
    return y.shape[1:] if y.numel() > 0 else None


def minimum_input_size(module: nn.Module, in_channels: int) -> int:
    """The smallest side of a square image that ``module`` accepts."""
    for side in range(1, _LARGEST_SIDE + 1):
        if _try_shape(module, in_channels, (side, side)) is not None:
            return side
    raise ValueError(f"{type(module).__name__} accepts no input up to {_LARGEST_SIDE} pixels")


def output_shape(
    module: nn.Module, in_channels: int, input_size: tuple[int, int], model: str
) -> torch.Size:
    """Per-example output shape of ``module`` on (in_channels, *input_size) images.

    Raises CnnzooError naming the minimum input size when the input is too small for ``model``.
    """
    shape = _try_shape(module, in_channels, input_size)
    if shape is None:
        smallest = minimum_input_size(module, in_channels)
        h, w = input_size
        raise CnnzooError(
            f"{model} needs inputs of at least {smallest}x{smallest} pixels, got {h}x{w}; "
            "pass a larger input_size."
        )
    return shape
