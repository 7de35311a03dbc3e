"""How one layer's weights are laid out in PyTorch and in Keras, both ways, without a rounding.

Every conversion is a transpose or a row permutation of the same float32 numbers, so torch ->
Keras -> torch gives back the very bits it started with. The copies are made by torch (which uses
every core), not by numpy fancy indexing: VGG's first dense layer alone is 103M numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    # contiguous() copies a permuted view once; Keras's set_weights copies again into its variables.
    return tensor.detach().cpu().contiguous().numpy()


def conv_kernel_to_keras(weight: torch.Tensor) -> np.ndarray:
    """PyTorch's (out, in, kh, kw) kernel as Keras's (kh, kw, in, out)."""
    return _numpy(weight.permute(2, 3, 1, 0))


def conv_kernel_to_torch(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(kernel)).permute(3, 2, 0, 1).contiguous()


def flatten_order(flatten_from: tuple[int, int, int]) -> torch.Tensor:
    """``order[j]``: the PyTorch (C, H, W) feature index that Keras's flattened (H, W, C) feature j is."""
    channels, height, width = flatten_from
    return torch.arange(channels * height * width).reshape(channels, height, width).permute(1, 2, 0).reshape(-1)


def dense_kernel_to_keras(weight: torch.Tensor, flatten_from=None) -> np.ndarray:
    """PyTorch's (out, in) matrix as Keras's (in, out), its rows in Keras's flatten order."""
    kernel = weight.detach().t()
    if flatten_from is not None:
        kernel = kernel.index_select(0, flatten_order(flatten_from))
    return _numpy(kernel)


def dense_kernel_to_torch(kernel: np.ndarray, flatten_from=None) -> torch.Tensor:
    rows = torch.from_numpy(np.asarray(kernel))
    if flatten_from is not None:
        rows = torch.empty_like(rows).index_copy_(0, flatten_order(flatten_from), rows)
    return rows.t().contiguous()


def batch_norm_tensors(norm: nn.Module) -> list[torch.Tensor]:
    """gamma, beta (when affine), moving mean, moving variance: Keras's order of the four."""
    return ([norm.weight, norm.bias] if norm.affine else []) + [norm.running_mean, norm.running_var]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A bias or batch-norm vector: the same layout in both."""
    return _numpy(tensor)
