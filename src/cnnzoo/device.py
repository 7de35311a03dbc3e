"""The one device resolver. It sits below data/ and train/ so that both ask the same question the
same way: data that loads onto a device the runtime would refuse is a failure found too late."""

from __future__ import annotations

import torch

from cnnzoo.errors import CnnzooError


def mps_available() -> bool:
    """Whether Apple's Metal GPU (MPS) can run tensors here: a torch built with MPS on a Mac that has it."""
    return torch.backends.mps.is_built() and torch.backends.mps.is_available()


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA if there is an NVIDIA GPU, else Apple's MPS if there is one, else the CPU), ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps`` as a torch.device; anything else, or a GPU this machine lacks, is a
    CnnzooError. The training runtime supports no other device type, so no data or model is placed on
    one either."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):  # a mistyped string, or not a string at all
        raise CnnzooError(f"Unknown device {name!r}; use auto, cpu, cuda (optionally cuda:N) or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CnnzooError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CnnzooError(f"There is no {device}; this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif device.type == "mps":
        if not mps_available():
            why = ("this torch build has no MPS support" if not torch.backends.mps.is_built()
                   else "this machine has no Apple GPU that MPS can use (it needs Apple silicon and macOS 12.3+)")
            raise CnnzooError(f"--device mps was asked for but {why}; use --device cpu or auto.")
        if device.index not in (None, 0):  # a Mac has one GPU
            raise CnnzooError(f"There is no {device}; a Mac has one MPS device, use --device mps.")
        device = torch.device("mps")
    elif device.type != "cpu":
        raise CnnzooError(f"Unsupported device {name!r}; use auto, cpu, cuda or mps.")
    return device
