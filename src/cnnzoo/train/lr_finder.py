"""The learning-rate range test (Leslie Smith; fastai's and Lightning's `lr_find`).

Train a copy of the model for a few hundred steps while the learning rate grows exponentially
from `start_lr` to `end_lr`, one step per rate, and watch the loss: it stays flat while the rate is
too small to matter, falls once the rate is useful, and blows up once it is too large. The sweep
stops early when the loss (averaged over a short trailing window) passes `diverge_factor` times its
lowest value, as fastai and Lightning stop at 4x.

The suggestion is the rate where the smoothed loss falls fastest per decade of learning rate, on
the way down to its minimum (Lightning's default, fastai's `steep`). The older rule, a tenth of the
rate at the minimum, is marked too, but the minimum sits right next to the divergence and moves
with the smoothing and the sweep's length; the steepest descent is a rate the loss is still falling
fast at, which is what a constant or peak learning rate should be. Only when the loss hardly fell
(a flat, noisy curve, whose steepest point would be chance) does the suggestion fall back to it.

The model passed in is never written to (the sweep trains a deep copy), the data is only read, and
the global RNG state is restored afterwards, so a `fit` after `lr_find` gives the same numbers as
one without it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cnnzoo import display
from cnnzoo.data import DataBundle
from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.loop import grad_scaler, train_batches, train_step
from cnnzoo.train.optim import build_optimizer
from cnnzoo.values import is_whole

RULE_STEEPEST = "steepest descent of the smoothed loss"
RULE_MIN_TENTH = "a tenth of the rate at the lowest loss"
# Below this fall of the smoothed loss (as a fraction of where it started) the curve is noise, and
# its steepest point would be a random one.
MEANINGFUL_DROP = 0.05
# Losses are copied to the host this many steps at a time: the divergence test needs their values,
# but reading each step's loss would stall a GPU once per step.
READ_EVERY = 10


@dataclass
class LRFinderResult:
    """One range test: the rate and loss of every step taken, and what they suggest."""

    lrs: list[float]
    losses: list[float]  # the raw loss of each step
    smoothed: list[float]  # centred moving average of `losses` (no lag: it feeds the suggestion)
    suggestion: float
    rule: str  # RULE_STEEPEST, or RULE_MIN_TENTH when the loss hardly fell
    loss_drop: float  # how far the smoothed loss fell from its start to its lowest, as a fraction of the start
    min_loss_lr: float  # where the smoothed loss was lowest
    start_lr: float
    end_lr: float
    num_steps: int  # steps asked for; len(lrs) when the sweep ran to the end
    diverged: bool  # stopped early because the loss blew up
    window: int  # steps in the smoothing window

    @classmethod
    def from_losses(cls, lrs, losses, *, num_steps: int | None = None, end_lr: float | None = None,
                    diverged: bool = False) -> LRFinderResult:
        """Smooth a recorded sweep (one loss per learning rate, rates rising) and suggest a rate.
        `num_steps` (the sweep's planned length, by default `len(lrs)`) sets the smoothing window."""
        lrs, losses = [float(v) for v in lrs], [float(v) for v in losses]
        if len(lrs) != len(losses):
            raise CnnzooError(f"A sweep needs one loss per learning rate, got {len(lrs)} rates and {len(losses)} losses.")
        num_steps = num_steps or len(lrs)
        window = _window(num_steps)
        if len(losses) < 2 * window:
            raise CnnzooError(
                f"The loss blew up after only {len(losses)} steps of the learning-rate sweep"
                f"{f' (at lr {lrs[-1]:.1e})' if lrs else ''}; start the sweep lower (--start-lr)."
            )
        smoothed = _centred_mean(np.asarray(losses), window)
        suggestion, rule, min_loss_lr, drop = _suggest(np.asarray(lrs), smoothed, window)
        return cls(lrs=lrs, losses=losses, smoothed=smoothed.tolist(), suggestion=suggestion, rule=rule,
                   loss_drop=drop, min_loss_lr=min_loss_lr, start_lr=lrs[0], end_lr=end_lr or lrs[-1],
                   num_steps=num_steps, diverged=diverged, window=window)

    def to_dict(self) -> dict:
        return asdict(self)

    def plot(self):
        """Loss against learning rate (log scale) with the suggestion marked, as a matplotlib Figure."""
        return display.provider("lr_find_figure")(self.lrs, self.losses, self.smoothed, self.suggestion, self.rule, self.min_loss_lr)


def lr_find(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 200,
    diverge_factor: float = 4.0,
    runtime: Runtime | None = None,
) -> LRFinderResult:
    """Sweep the learning rate exponentially from `start_lr` to `end_lr` over `num_steps` training steps
    of `config`'s optimizer, batch size, augmentation and loss, and suggest a learning rate.

    `config.lr`, its schedule and its epochs play no part: the sweep sets every step's rate itself.
    """
    check_sweep(start_lr, end_lr, num_steps, diverge_factor)
    config.validate()
    runtime = runtime or Runtime.from_config(config)
    runtime.apply_backend_settings()
    data = data.to(runtime.device)  # a new bundle where the data was elsewhere; the caller's is not moved
    cuda_devices = [runtime.device.index or 0] if runtime.device.type == "cuda" else []
    # Dropout draws from the global RNG: fork it so the caller's stream is where it was.
    with torch.random.fork_rng(devices=cuda_devices):
        lrs, losses, diverged = _sweep(model, data, config, runtime, start_lr, end_lr, num_steps, diverge_factor)
    return LRFinderResult.from_losses(lrs, losses, num_steps=num_steps, end_lr=end_lr, diverged=diverged)


def check_sweep(start_lr: float, end_lr: float, num_steps: int, diverge_factor: float = 4.0) -> None:
    """Raise CnnzooError for sweep settings no range test could use (before any data is loaded)."""
    if not (math.isfinite(start_lr) and math.isfinite(end_lr) and 0 < start_lr < end_lr):
        raise CnnzooError(f"The sweep needs 0 < --start-lr < --end-lr, got {start_lr!r} and {end_lr!r}.")
    if not (is_whole(num_steps) and num_steps >= 20):
        raise CnnzooError(f"--steps must be a whole number of at least 20 (to smooth the loss), got {num_steps!r}.")
    if not diverge_factor > 1:
        raise CnnzooError(f"diverge_factor must be above 1, got {diverge_factor!r}.")


def _window(num_steps: int) -> int:
    # About a twentieth of the sweep (odd, so it centres on a step): wide enough to average out
    # batch-to-batch noise, narrow enough (under half a decade over the default 8 decades and 200
    # steps) not to flatten the descent it is meant to locate.
    return max(5, (num_steps // 20) | 1)


def _sweep(model, data, config, runtime, start_lr, end_lr, num_steps, diverge_factor):
    probe = copy.deepcopy(model).to(runtime.device, memory_format=runtime.memory_format)
    probe.train()
    # fit's step on fit's batches, except that the last, smaller batch of an epoch (a noisier loss) is
    # dropped unless it is the only one.
    step = train_step(probe, build_optimizer(probe, config, fused=runtime.fused_optimizer), config, runtime,
                      train_batches(config, data, runtime, drop_last=len(data.train) >= config.batch_size),
                      grad_scaler(runtime))
    ratio = end_lr / start_lr
    schedule = [start_lr * ratio ** (i / (num_steps - 1)) for i in range(num_steps)]
    window = _window(num_steps)
    losses: list[float] = []
    best_average = math.inf
    done, epoch, per_epoch = 0, 0, len(step.sizes)
    while done < num_steps:
        rates = schedule[done:done + per_epoch]
        on_device, _ = step.begin_epoch(epoch, rates + rates[-1:] * (per_epoch - len(rates)))
        for b, lr in enumerate(rates):
            step(b, lr)
            if (b + 1) % READ_EVERY and done + b + 1 < num_steps and b + 1 < len(rates):
                continue
            for loss in on_device[len(losses) - done:b + 1].tolist():
                if not math.isfinite(loss):
                    return schedule[:len(losses)], losses, True
                losses.append(loss)
                average = sum(losses[-window:]) / len(losses[-window:])
                if len(losses) >= window and average > diverge_factor * best_average:
                    return schedule[:len(losses)], losses, True
                if len(losses) >= window:
                    best_average = min(best_average, average)
        done += len(rates)
        epoch += 1
    return schedule, losses, False


def _centred_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over `window` steps centred on each step; near the ends, over the steps that exist."""
    half = window // 2
    csum = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(len(values))
    lo = np.maximum(index - half, 0)
    hi = np.minimum(index + half + 1, len(values))
    return (csum[hi] - csum[lo]) / (hi - lo)


def _suggest(lrs: np.ndarray, smoothed: np.ndarray, window: int) -> tuple[float, str, float, float]:
    # Near the ends the centred mean averages fewer steps (and the last ones may be the blow-up):
    # only points with a full window are candidates.
    half = window // 2
    inner = slice(half, len(smoothed) - half)
    candidates = smoothed[inner]
    lowest = half + int(np.argmin(candidates))
    min_loss_lr = float(lrs[lowest])
    drop = float((smoothed[half] - smoothed[lowest]) / abs(smoothed[half])) if smoothed[half] else 0.0
    descent = slice(half, lowest + 1)  # the way down to the minimum; a dip after a blow-up is not a descent
    if lowest - half >= 2 and drop >= MEANINGFUL_DROP:
        slope = np.gradient(smoothed[descent], np.log10(lrs[descent]))
        steepest = half + int(np.argmin(slope))
        return float(lrs[steepest]), RULE_STEEPEST, min_loss_lr, drop
    # The loss hardly fell: a tenth of where it was lowest, kept inside the sweep.
    return max(min_loss_lr / 10, float(lrs[0])), RULE_MIN_TENTH, min_loss_lr, drop
