"""Optimizers and learning-rate schedules.

The schedule is a pure function of the global step, so resuming needs only the step number, and
the learning rate can be written into the optimizer without a stateful scheduler object.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig, fused: bool = False, params=None) -> torch.optim.Optimizer:
    """`params` may be parameter groups with an `lr_scale` each; by default every trainable parameter."""
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    extra = {"fused": True} if fused else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay, **extra,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **extra)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **extra)
    # RMSprop has no fused kernel; foreach is its fast path.
    return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state into `optimizer` as this run executes it.

    The kernel choice (fused / foreach) stays this run's, not the saving run's: a CUDA checkpoint
    may resume on the CPU. Each state tensor takes its parameter's memory layout, since fused
    kernels walk state and parameter with the parameter's strides: a contiguous momentum buffer
    for a channels_last weight would be read in the wrong order (the CPU kernel silently, CUDA's
    with an error).
    """
    kernels = [{k: group.get(k) for k in ("fused", "foreach")} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise CnnzooError(f"The checkpoint's optimizer state does not fit this run's {type(optimizer).__name__} "
                          f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); the checkpoint "
                          "was saved for another model or optimizer.") from None
    for group, chosen in zip(optimizer.param_groups, kernels):
        group.update(chosen)
    for param, values in optimizer.state.items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                values[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


class LRSchedule:
    """lr(step) for constant, cosine and one-cycle schedules, each with optional linear warm-up."""

    def __init__(self, kind: str, base_lr: float, total_steps: int, warmup_steps: int = 0):
        self.kind = kind
        self.base_lr = base_lr
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(warmup_steps, self.total_steps)

    def factor(self, step: int) -> float:
        if self.kind == "onecycle":
            return self._onecycle(step)
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _onecycle(self, step: int) -> float:
        # Leslie Smith's schedule with torch's OneCycleLR phase boundaries: cosine up from lr/25
        # over the warm-up (30% of the run unless set), then cosine down to lr/25/1e4.
        peak = (self.warmup_steps or 0.3 * self.total_steps) - 1
        last = self.total_steps - 1
        start, end = 1 / 25, 1 / 25 / 1e4
        if step <= peak:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / max(peak, 1)))
        t = min(1.0, (step - peak) / max(last - peak, 1))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t))

    def __call__(self, step: int) -> float:
        return self.base_lr * self.factor(step)

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> LRSchedule:
        return cls(
            config.schedule, config.lr, config.epochs * steps_per_epoch,
            round(config.warmup_epochs * steps_per_epoch),
        )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write lr into every parameter group, scaled by the group's `lr_scale` (discriminative fine-tuning)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
