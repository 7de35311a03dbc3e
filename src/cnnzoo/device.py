"""The one device resolver. It sits below data/ and train/ so that both ask the same question the
same way: data that loads onto a device the runtime would refuse is a failure found too late."""

from __future__ import annotations

import torch

from cnnzoo.errors import CnnzooError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA if there is a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N`` as a torch.device;
    anything else, or a GPU this machine lacks, is a CnnzooError. The training runtime supports no
    other device type, so no data or model is placed on one either."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):  # a mistyped string, or not a string at all
        raise CnnzooError(f"Unknown device {name!r}; use auto, cpu or cuda (optionally cuda:N).") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CnnzooError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CnnzooError(f"There is no {device}; this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif device.type != "cpu":
        raise CnnzooError(f"Unsupported device {name!r}; use auto, cpu or cuda.")
    return device
