"""Reading a device tensor for display without stalling the GPU."""

from __future__ import annotations

import torch


class AsyncReadout:
    """The latest value of a device tensor, for progress displays: on CUDA the tensor is copied to
    pinned host memory asynchronously and its value shown once the copy has landed, a few steps
    late, so that no step waits for the GPU. On the CPU the value is simply read."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host: torch.Tensor | None = None
        self.landed = torch.cuda.Event() if self.cuda else None
        self.pending = False
        self.value: torch.Tensor | None = None
        self.tag = None  # what the caller said about the tensor when the shown copy was started
        self._pending_tag = None

    def __call__(self, tensor: torch.Tensor, tag=None) -> torch.Tensor | None:
        """The newest landed copy (a CPU tensor, possibly of an earlier call's tensor; `self.tag`
        is that call's `tag`), or None while nothing has landed yet. Pass tensors of one shape:
        the pinned buffer is reused."""
        if not self.cuda:
            self.value, self.tag = tensor.detach().clone(), tag
            return self.value
        if self.pending and self.landed.query():
            self.value, self.tag, self.pending = self.host.clone(), self._pending_tag, False
        if not self.pending:
            if self.host is None or self.host.shape != tensor.shape or self.host.dtype != tensor.dtype:
                self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor.detach(), non_blocking=True)
            self.landed.record()
            self.pending, self._pending_tag = True, tag
        return self.value
