"""Optimizers and learning-rate schedules.

The schedule is a pure function of the global step, so resuming needs only the step number, and
the learning rate can be written into the optimizer without a stateful scheduler object.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import DEFAULT_EPS, DEFAULT_MOMENTUM, DEFAULT_RHO, TrainConfig


def _or(value, default):
    return default if value is None else value


def build_optimizer(model: nn.Module, config: TrainConfig, fused: bool = False, params=None) -> torch.optim.Optimizer:
    """`params` may be parameter groups with an `lr_scale` each; by default every trainable parameter."""
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    extra = {"fused": True} if fused else {}
    name = config.optimizer
    momentum = _or(config.momentum, DEFAULT_MOMENTUM.get(name))
    rho = _or(config.rho, DEFAULT_RHO.get(name))
    eps = _or(config.eps, DEFAULT_EPS.get(name))
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=momentum, nesterov=config.nesterov and momentum > 0,
            weight_decay=config.weight_decay, **extra,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, eps=eps, weight_decay=config.weight_decay, **extra)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, eps=eps, weight_decay=config.weight_decay, **extra)
    if name == "rmsprop_keras":
        return KerasRMSprop(params, lr=config.lr, rho=rho, eps=eps, momentum=momentum,
                            weight_decay=config.weight_decay)
    # RMSprop has no fused kernel; foreach is its fast path.
    return torch.optim.RMSprop(params, lr=config.lr, alpha=rho, eps=eps, momentum=momentum,
                               weight_decay=config.weight_decay)


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop with Keras' update rule, which torch's cannot express.

    Per parameter, with gradient g (Keras 3's ``RMSprop.update_step``, uncentered)::

        v <- rho * v + (1 - rho) * g^2            (v starts at 0)
        step = lr * g / sqrt(v + eps)             torch: lr * g / (sqrt(v) + eps)
        m <- momentum * m + step;  p <- p - m     (momentum 0: p <- p - step)

    Keras' epsilon sits inside the square root, so while v is small its 1e-7 caps the step near
    lr * g / 3.2e-4 where torch's 1e-8 would allow lr * g / 1e-8. ``weight_decay`` is Keras'
    decoupled form, p <- p - lr * weight_decay * p before the step.
    """

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "momentum": momentum,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, eps, momentum = group["lr"], group["rho"], group["eps"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if momentum > 0:
                        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                velocity = state["velocity"]
                velocity.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                if momentum > 0:
                    buffer = state["momentum"]
                    buffer.mul_(momentum).addcdiv_(p.grad, (velocity + eps).sqrt_(), value=lr)
                    p.sub_(buffer)
                else:
                    p.addcdiv_(p.grad, (velocity + eps).sqrt_(), value=-lr)
        return loss


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
