"""Layers written by hand, and the switch that lets models use them instead of torch's."""

from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.nn.batchnorm import BatchNorm1d, BatchNorm2d

__all__ = ["NORMS", "BatchNorm1d", "BatchNorm2d", "norm_layers"]

NORMS = ("torch", "scratch")


def norm_layers(norm: str = "torch") -> tuple[type[nn.Module], type[nn.Module]]:
    """Return the (1-d, 2-d) batch-norm classes for ``norm``: "torch" or "scratch"."""
    if norm == "torch":
        return nn.BatchNorm1d, nn.BatchNorm2d
    if norm == "scratch":
        return BatchNorm1d, BatchNorm2d
    raise CnnzooError(f"Unknown norm {norm!r}; choose one of: {', '.join(NORMS)}.")
