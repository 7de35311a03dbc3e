"""The callback API of `fit`, and the built-in callbacks (checkpointing, epoch log line, progress bar).

A callback is an object with any of five hooks; `fit` calls each with the one `FitState` of the run:

    on_fit_start   before the first epoch (also after a resume)
    on_epoch_start before the epoch's first step
    on_step_end    after every optimizer step (every `step_every` steps and at the epoch's last)
    on_epoch_end   after the epoch's evaluation; `state.row` holds its metrics
    on_fit_end     last, also when training ends by an interrupt or an error

Callbacks read the state; they may set only `state.stop_training` (with `state.stop_reason`) to end
training after the current epoch, as Keras' `model.stop_training` does. The built-ins run before the
user's callbacks, so at `on_epoch_end` the epoch's checkpoint is already written.

A callback's `step_every` (1 unless it says otherwise) is how often it wants `on_step_end`: the
built-ins read the epoch's device tensors (`state.losses`, `state.correct`) every few steps, so when
no callback of the user listens per step, the steps between run with no host work but the step.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn

from cnnzoo import display
from cnnzoo.errors import CnnzooError
from cnnzoo.kernel import in_notebook
from cnnzoo.train.checkpoint import Checkpoint, load_model_state, restore_rng_state, save_checkpoint
from cnnzoo.train.history import History
from cnnzoo.train.optim import load_optimizer_state
from cnnzoo.train.progress import resolve_progress

if TYPE_CHECKING:
    from cnnzoo.train.config import TrainConfig
    from cnnzoo.train.runtime import Runtime
    from cnnzoo.train.rundir import RunDir

HOOKS = ("on_fit_start", "on_epoch_start", "on_step_end", "on_epoch_end", "on_fit_end")


@dataclass
class FitState:
    """Everything a callback may read about the run in progress."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    runtime: Runtime
    run_dir: RunDir | None
    history: History
    steps_per_epoch: int
    start_epoch: int
    is_main: bool = True
    epoch: int = 0  # 0-based index of the current epoch
    step: int = 0  # 0-based step within the epoch
    lr: float = 0.0
    losses: torch.Tensor | None = None  # this epoch's per-step losses so far, on the device
    correct: torch.Tensor | None = None  # this epoch's correctly classified training images, on the device
    lrs: list[float] = field(default_factory=list)  # this epoch's learning rate per step
    seen: int = 0  # images trained on this epoch (this process's share under data parallelism)
    epoch_start: float = 0.0  # time.perf_counter() when the epoch's timing started
    row: dict[str, Any] | None = None  # the epoch's metrics, set before on_epoch_end
    best: float = -1.0  # the best validation accuracy so far (-1: none yet)
    improved: bool = False  # this epoch's validation accuracy beat every earlier epoch's
    stop_training: bool = False  # set by a callback: stop after the current epoch
    stop_reason: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # saved with every checkpoint (config, classes, ...)

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    @property
    def loss(self) -> torch.Tensor | None:
        """This step's loss, on the device: reading it per step would stall a GPU."""
        return None if self.losses is None else self.losses[self.step]


class Callback:
    """Base class: override the hooks you need; the others do nothing."""

    step_every = 1  # on_step_end after every this many steps of an epoch, and after its last

    def on_fit_start(self, state: FitState) -> None:
        pass

    def on_epoch_start(self, state: FitState) -> None:
        pass

    def on_step_end(self, state: FitState) -> None:
        pass

    def on_epoch_end(self, state: FitState) -> None:
        pass

    def on_fit_end(self, state: FitState) -> None:
        pass


class CallbackList:
    """Calls one hook on every callback that overrides it, so a per-step no-op costs nothing."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise CnnzooError(f"fit's callbacks must be cnnzoo Callback instances, got {type(callback).__name__}; "
                                  "subclass cnnzoo.Callback and override the hooks you need.")
        self._by_hook = {hook: [getattr(c, hook) for c in self.callbacks
                                if getattr(type(c), hook) is not getattr(Callback, hook)] for hook in HOOKS}

    def __getattr__(self, hook: str) -> Callable[[FitState], None]:
        if hook not in HOOKS:
            raise AttributeError(hook)
        methods = self._by_hook[hook]
        return lambda state: [method(state) for method in methods] and None

    def on_step_end(self, state: FitState) -> None:
        done = state.step + 1
        last = done == state.steps_per_epoch
        for method in self._by_hook["on_step_end"]:
            if last or done % method.__self__.step_every == 0:
                method(state)


class Checkpointer(Callback):
    """Writes metrics and `last` after every epoch, and `best` when validation accuracy improved;
    `restore` reads back what `save` wrote. `float_lr`: the step's context giving the optimizer plain
    float rates (the metadata is JSON)."""

    def __init__(self, scaler: torch.amp.GradScaler, float_lr: Callable = nullcontext):
        self.scaler, self.float_lr = scaler, float_lr

    def on_fit_start(self, state: FitState) -> None:
        if state.start_epoch == 0:
            self.save(state, state.run_dir.last_checkpoint, 0)  # so even an interrupt in epoch 1 leaves something to resume

    def on_epoch_end(self, state: FitState) -> None:
        state.run_dir.write_history(state.history)
        self.save(state, state.run_dir.last_checkpoint, state.epoch + 1)
        if state.improved:
            self.save(state, state.run_dir.best_checkpoint, state.epoch + 1)

    @staticmethod
    def restore(state: FitState, resume: Checkpoint, scaler: torch.amp.GradScaler) -> None:
        """Continue where `resume` ended: weights, optimizer, loss scale, random streams, history, epoch and best."""
        load_model_state(state.model, resume.model_state)
        if resume.optimizer_state is not None:
            load_optimizer_state(state.optimizer, resume.optimizer_state)
        if scaler.is_enabled() and "grad_scaler" in resume.meta:
            scaler.load_state_dict(resume.meta["grad_scaler"])
        restore_rng_state(resume.rng)
        state.history = History.from_dict(resume.meta["history"])
        state.start_epoch, state.best = resume.meta["epoch"], resume.meta.get("best", -1.0)

    def save(self, state: FitState, path, epoch: int) -> None:
        scaler = {"grad_scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}
        with self.float_lr():
            save_checkpoint(path, state.model, {**state.meta, "epoch": epoch, "step": epoch * state.steps_per_epoch,
                                                "best": state.best, "history": state.history.to_dict(), **scaler},
                            state.optimizer)


class EpochLog(Callback):
    """One line per epoch on stdout, as d2l and Keras print, every accuracy with the number of images
    it was measured on (the row's ``*_images``)."""

    def on_epoch_end(self, state: FitState) -> None:
        print(epoch_line(state.row, state.config.epochs, state.config.train_acc), flush=True)


def epoch_line(row: dict[str, Any], epochs: int, train_acc: str = "running") -> str:
    """`train_acc`: the definition the row's training accuracy follows (TrainConfig.train_acc); the
    course's eval-mode re-evaluation is labelled as such."""
    def accuracy(split: str, value: float) -> str:
        count = row.get(f"{split}_images")
        measured = f" of {count:,}" if count is not None else ""
        name = "train(eval)" if split == "train" and train_acc == "eval" else split
        return f"{name} {100 * value:.1f}%{measured}"

    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.3f}", accuracy("train", row["train_acc"])]
    if row["val_acc"] is not None:
        parts.append(accuracy("val", row["val_acc"]))
    if row["test_acc"] is not None:
        parts.append(accuracy("test", row["test_acc"]))
    parts.append(f"{row['time_s']:.1f} s")
    return "  ".join(parts)


class AsyncLossReadout:
    """The latest value of a device tensor for a progress display without stalling the GPU: the
    tensor is copied to pinned host memory asynchronously and shown once the copy has landed, a few
    steps late. A 0-d loss reads as a float; a vector (an epoch's per-step losses) as a CPU tensor.
    `tag` travels with the copy, so a display knows which step the value it shows came from."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host: torch.Tensor | None = None
        self.landed = torch.cuda.Event() if self.cuda else None
        self.pending = False
        self.value: float | torch.Tensor | None = None
        self.tag: Any = None  # the `tag` of the call whose tensor `value` is
        self._pending_tag: Any = None

    def __call__(self, tensor: torch.Tensor, tag: Any = None) -> float | torch.Tensor | None:
        if not self.cuda:
            self.value, self.tag = self._read(tensor.detach()), tag
            return self.value
        if self.pending and self.landed.query():
            self.value, self.tag, self.pending = self._read(self.host), self._pending_tag, False
        if not self.pending:
            if self.host is None or self.host.shape != tensor.shape or self.host.dtype != tensor.dtype:
                self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor.detach(), non_blocking=True)
            self.landed.record()
            self.pending, self._pending_tag = True, tag
        return self.value

    @staticmethod
    def _read(tensor: torch.Tensor) -> float | torch.Tensor:
        return tensor.item() if tensor.ndim == 0 else tensor.clone()


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr: batches, running loss, images/s, ETA."""

    step_every = 20  # steps between updates: each reads the loss (a non-blocking device-to-host copy)

    def __init__(self, file=None):
        self.file = file
        self.bar = None
        self.readout: AsyncLossReadout | None = None
        self.shown = 0  # steps of this epoch the bar counts

    def on_fit_start(self, state: FitState) -> None:
        self.readout = AsyncLossReadout(state.runtime.device)

    def on_epoch_start(self, state: FitState) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=state.steps_per_epoch, desc=f"epoch {state.epoch + 1}/{state.config.epochs}",
                        leave=False, unit="batch", file=self.file or sys.stderr)
        self.shown = 0

    def on_step_end(self, state: FitState) -> None:
        self.bar.update(state.step + 1 - self.shown)
        self.shown = state.step + 1
        if (shown := self.readout(state.loss)) is not None:
            elapsed = max(time.perf_counter() - state.epoch_start, 1e-9)
            self.bar.set_postfix(loss=f"{shown:.3f}", img_s=f"{state.seen / elapsed:.0f}")

    def on_epoch_end(self, state: FitState) -> None:
        self._close()

    def on_fit_end(self, state: FitState) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_callbacks(progress: str, quiet: bool) -> list[Callback]:
    """The display for `progress` (see `cnnzoo.train.progress.resolve_progress`): in a Jupyter kernel
    the live notebook display, elsewhere the terminal bar."""
    shown = resolve_progress(progress, quiet=quiet)
    if shown == "none":
        return []
    if in_notebook():
        # Asked of cnnzoo.display by name, not imported: the notebook display is viz's, and draws with
        # matplotlib, which training never needs.
        return [display.provider("live_progress")(curves=shown == "plot")]
    return [ProgressBar()]
