"""The divergence guard: stop a run whose loss goes non-finite or explodes, before it saves the damage.

`DivergenceGuard` (a Callback fit always installs) watches the per-step losses for NaN, infinity or more than
`EXPLOSION_FACTOR` times the run's first loss, and the weights at each epoch's end; it raises
`TrainingDiverged`, leaving the last completed epoch's checkpoint as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.checkpoint import first_non_finite

# A cross-entropy loss starts near ln(classes) and only falls while training works; at 100x its start
# (230 for ten classes) the weights have blown up (measured: SGD at lr 1e6 reaches 6.7e13 in three
# epochs, finite all along).
EXPLOSION_FACTOR = 100.0
# On a GPU a check is one small reduction over the losses (which stay on the device) and one host read;
# nothing is added to the steps themselves, so the captured step replays undisturbed.
GPU_CHECK_EVERY = 50


class TrainingDiverged(CnnzooError):
    """The loss or the weights went non-finite, or the loss exploded. The checkpoint of the last completed
    epoch, which was finite, stays as it is (and `save_checkpoint` refuses non-finite weights in any case)."""

    exit_code = 3


class DivergenceGuard(Callback):
    """`reduce`: under data parallelism the mean over ranks (`DistContext.mean`), so that every rank
    judges the same global losses at the same steps and all stop together.

    With fp16 a gradient scaler skips every step whose gradients overflowed and lowers its scale; that
    is the scaler at work, not divergence: the guard reads only losses and weights, never gradients,
    and a skipped step leaves both finite."""

    def __init__(self, factor: float = EXPLOSION_FACTOR, check_every: int | None = None,
                 reduce: Callable[[torch.Tensor], torch.Tensor] = lambda losses: losses):
        if not factor > 1:
            raise ValueError(f"DivergenceGuard's factor must exceed 1, got {factor!r}")
        self.factor = factor
        self.check_every = check_every
        self.reduce = reduce
        self.reference: float | None = None
        self.checked = 0  # steps of the current epoch already checked

    def on_fit_start(self, state: FitState) -> None:
        # A resumed run keeps the reference of its first session: its first loss is in the history.
        self.reference = state.history.batch_loss[0] if state.history.batch_loss else None
        # The epoch's per-step losses are read once every check_every steps: on a GPU every
        # GPU_CHECK_EVERY, on the CPU every step, where a read stalls nothing.
        if self.check_every is None:
            self.check_every = 1 if state.runtime.device.type == "cpu" else GPU_CHECK_EVERY

    @property
    def step_every(self) -> int:
        # fit calls on_step_end no more often than this: every check_every steps and at the epoch's last.
        return self.check_every or 1

    def on_epoch_start(self, state: FitState) -> None:
        self.checked = 0

    def on_step_end(self, state: FitState) -> None:
        done = state.step + 1
        last = done == state.steps_per_epoch
        if done - self.checked >= self.check_every or last:
            self._check_losses(state, done)
        if last:
            # The losses are computed before each update, so the epoch's last update could write NaN into
            # the weights unseen: they are checked themselves before the epoch is evaluated or saved.
            self._check_weights(state)

    @property
    def limit(self) -> float:
        # The first loss counts as at least 1.0, so a fine-tuning run starting near zero is not stopped by noise.
        return self.factor * max(self.reference, 1.0)

    def _check_losses(self, state: FitState, done: int) -> None:
        window = self.reduce(state.losses[self.checked:done])
        self.checked = done
        if self.reference is None:
            self.reference = float(window[0])
            if not math.isfinite(self.reference):
                self._stop(state, done - len(window), self.reference)
        bad = ~torch.isfinite(window) | (window > self.limit)
        if bool(bad.any()):
            index = int(bad.nonzero()[0])
            self._stop(state, done - len(window) + index, float(window[index]))

    def _check_weights(self, state: FitState) -> None:
        bad = first_non_finite(state.model.state_dict())
        if bad is not None:
            raise TrainingDiverged(
                f"Training diverged in epoch {state.epoch + 1}: its last update made {bad} NaN or infinite; the "
                f"learning rate ({state.config.lr:g}) is probably too high for this model, lower it"
                f"{self._kept(state)}.")

    def _stop(self, state: FitState, step: int, loss: float) -> None:
        what = (f"became {loss}" if not math.isfinite(loss) else
                f"exploded to {loss:.3g}, more than {self.factor:g} times the run's first loss ({self.reference:.3g})")
        raise TrainingDiverged(
            f"The loss {what} at epoch {state.epoch + 1}, step {step + 1}; the learning rate ({state.config.lr:g}) "
            f"is probably too high for this model, lower it{self._kept(state)}.")

    @staticmethod
    def _kept(state: FitState) -> str:
        if state.run_dir is None:
            return ""
        return f" (the last finite checkpoint, epoch {state.epoch}, is kept in {state.run_dir.last_checkpoint})"
