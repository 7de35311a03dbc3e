"""fit: set up, then per epoch `_train_epoch` (the steps: cnnzoo.train.fastpath.TrainStep) and
`_end_epoch` (evaluation and the epoch's row), with callbacks around them."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable

import torch
from torch import nn

from cnnzoo.data import BatchIterator, DataBundle, InputSpec
from cnnzoo.data.batches import Augment
from cnnzoo.errors import CnnzooError
from cnnzoo.train.callbacks import Callback, CallbackList, Checkpointer, EpochLog, FitState, progress_callbacks
from cnnzoo.train.checkpoint import Checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.distributed import DistContext
from cnnzoo.train.guard import DivergenceGuard, TrainingDiverged  # noqa: F401 (TrainingDiverged: public here too)
from cnnzoo.train.fastpath import TrainStep
from cnnzoo.train.early_stopping import EarlyStopping
from cnnzoo.train.evaluation import evaluate
from cnnzoo.train.history import History
from cnnzoo.train.optim import LRSchedule, build_optimizer
from cnnzoo.train.rundir import RunDir

SINGLE_PROCESS = DistContext()


class TrainingInterrupted(CnnzooError):
    exit_code = 130


@contextmanager
def _interruptible(enabled: bool):
    """A first SIGINT/SIGTERM asks the loop to stop after the current step (the list it yields then
    holds the signal's name); a second exits at once. Handlers belong to the main thread."""
    requested: list[str] = []

    def handle(signum, frame) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)
        print(f"\n{requested[0]} received: stopping after this step (press Ctrl-C again to quit at once).",
              file=sys.stderr, flush=True)

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def fit(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    run_dir: RunDir | None = None,
    resume: Checkpoint | None = None,
    callbacks: Iterable[Callback] = (),
    progress: str = "auto",
    quiet: bool = False,
    runtime: Runtime | None = None,
    params: list[dict[str, Any]] | None = None,
    dist: DistContext = SINGLE_PROCESS,
) -> History:
    """Train `model` on `data.train`, evaluating on `data.val`/`data.test` after every epoch.

    `callbacks`: `cnnzoo.Callback`s, called per step and per epoch (see cnnzoo.train.callbacks).
    `progress`: "auto" (in a Jupyter kernel the live plot with its bar, on a terminal the bar, piped nothing),
    "bar", "plot" (live curves; a terminal shows the bar) or "none"; `quiet` also drops the epoch lines.
    `params`: optimizer parameter groups (each may carry an `lr_scale`); by default every trainable parameter.
    `dist`: with torchrun's context this is one rank of data-parallel training: `config.batch_size` is the
    global batch, each rank trains on its part, and the metrics are the global batches'. Every rank
    evaluates the whole test set itself and runs the callbacks; only rank 0 prints, and only it should
    be given a `run_dir`.
    """
    config.validate()
    runtime = runtime or Runtime.from_config(config, dist.device)
    runtime.apply_backend_settings()
    data = data.to(runtime.device)  # a no-op for data loaded onto the device, as `cnnzoo train` does
    quiet = quiet or not dist.is_main
    if config.sync_bn:
        model = dist.sync_batchnorm(model)
    model.to(runtime.device, memory_format=runtime.memory_format)
    optimizer = build_optimizer(model, config, fused=runtime.fused_optimizer, params=params)
    scaler = grad_scaler(runtime)
    batches = train_batches(config, data, runtime, dist)
    state = FitState(config=config, model=model, optimizer=optimizer, runtime=runtime, run_dir=run_dir,
                     history=History(), steps_per_epoch=len(batches), start_epoch=0, is_main=dist.is_main,
                     meta={"config": config.to_dict(), "classes": list(data.train.classes)})
    if resume is not None:  # before the step is built: it gives the compiled step tensor learning rates
        Checkpointer.restore(state, resume, scaler)
    step = train_step(model, optimizer, config, runtime, batches, scaler, distributed=dist.world_size > 1,
                      wrap=dist.wrap, run_dir=run_dir if dist.is_main else None, fallbacks=state.history.fallbacks)
    state.history.compile_mode, state.runtime = step.compile_mode, step.runtime
    schedule = LRSchedule.from_config(config, state.steps_per_epoch)
    eval_args = {"batch_size": config.eval_batch_size, "tta": config.tta, **InputSpec.from_config(config, data.info).kwargs()}
    hooks = _hooks(config, [Checkpointer(scaler, step.float_lr)] if run_dir is not None else [], progress, quiet,
                   callbacks, dist)
    # A graceful stop would need all ranks to agree on the step to stop after; with several, a signal
    # ends them at once (torchrun passes it on) and the last completed epoch's checkpoint remains.
    with _interruptible(dist.world_size == 1) as interrupt:
        try:
            hooks.on_fit_start(state)
            for state.epoch in range(state.start_epoch, config.epochs):
                _train_epoch(state, step, schedule, hooks, interrupt, dist)
                _end_epoch(state, step, data, eval_args, dist)
                hooks.on_epoch_end(state)
                if state.stop_training:
                    break
        finally:
            hooks.on_fit_end(state)
    return state.history


def train_batches(config: TrainConfig, data: DataBundle, runtime: Runtime, dist: DistContext = SINGLE_PROCESS,
                  drop_last: bool = False) -> BatchIterator:
    """The training batches `config` asks for: shuffled and augmented per (seed, epoch)."""
    return BatchIterator(data.train, dist.per_rank_batch(config.batch_size), shuffle=True, seed=config.seed,
                         augment=Augment(crop_padding=config.crop_padding, hflip=config.hflip,
                                         random_erasing=config.random_erasing), drop_last=drop_last,
                         channels_last=runtime.channels_last, rank=dist.rank, world_size=dist.world_size,
                         **InputSpec.from_config(config, data.info).kwargs())


def grad_scaler(runtime: Runtime) -> torch.amp.GradScaler:
    # fp16 autocast needs its loss scaled (PyTorch's AMP recipe); bf16 and fp32 do not.
    return torch.amp.GradScaler(runtime.device.type, enabled=runtime.grad_scaler)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, runtime: Runtime,
               batches: BatchIterator, scaler: torch.amp.GradScaler, **options: Any) -> TrainStep:
    """The step `config` trains with (its loss and gradient clipping) over `batches`: fit's, and
    lr_find's, whose sweep must measure the step a run takes. `options`: TrainStep's own."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return TrainStep(model, optimizer, runtime, batches, loss_fn=loss_fn, grad_clip=config.grad_clip, scaler=scaler,
                     **options)


def _hooks(config: TrainConfig, checkpointer: list[Callback], progress: str, quiet: bool,
           callbacks: Iterable[Callback], dist: DistContext) -> CallbackList:
    """fit's callbacks around the user's, in the order they must run."""
    # The guard first: a diverged step must stop the run before anything reads or saves it. Then the
    # checkpoint, on disk before anything else runs at an epoch's end; the progress display, closed
    # before the epoch's line (a notebook's display shows the epochs itself); early stopping after
    # the line it comments on and before the user's callbacks, which see its decision.
    display = progress_callbacks(progress, quiet)
    shows_epochs = quiet or any(getattr(c, "shows_epochs", False) for c in display)
    early_stop = [EarlyStopping(config.early_stop, config.early_stop_min_delta, verbose=not quiet)] if config.early_stop else []
    return CallbackList([DivergenceGuard(reduce=dist.mean), *checkpointer, *display,
                         *([] if shows_epochs else [EpochLog()]), *early_stop, *callbacks])


def _train_epoch(state: FitState, step: TrainStep, schedule: LRSchedule, hooks: CallbackList,
                 interrupt: list[str], dist: DistContext) -> None:
    """One pass over the training data: per step one call of the step (on CUDA one graph replay) and
    the callbacks at the steps they listen to. Nothing here reads the device."""
    config, epoch, steps = state.config, state.epoch, state.steps_per_epoch
    state.model.train()
    dist.seed_epoch(config.seed, epoch)
    lrs = [schedule(epoch * steps + b) for b in range(steps)]
    state.losses, state.correct = step.begin_epoch(epoch, lrs)
    state.lrs, state.seen, state.row = [], 0, None
    hooks.on_epoch_start(state)
    state.epoch_start = time.perf_counter()
    try:
        for state.step, state.lr in enumerate(lrs):
            state.lrs.append(state.lr)
            step(state.step, state.lr)
            if epoch == state.start_epoch and state.step == 0 and step.runtime.compile:
                synchronize(step.runtime.device)  # the first call compiles: report that apart from the epoch time
                state.history.compile_s = time.perf_counter() - state.epoch_start
                state.epoch_start += state.history.compile_s
            state.seen += step.sizes[state.step]
            hooks.on_step_end(state)
            if interrupt:
                break
    except torch.OutOfMemoryError:
        raise CnnzooError(f"The GPU ran out of memory at batch size {config.batch_size}; try a smaller one, "
                          f"e.g. --batch-size {max(1, config.batch_size // 2)}.") from None
    if interrupt:
        where = state.run_dir.path if state.run_dir else None
        raise TrainingInterrupted(
            f"Training stopped by {interrupt[0]} in epoch {epoch + 1}; the last completed epoch "
            f"({epoch}) is saved" + (f", resume with: cnnzoo train --resume {where}" if where else ".")
        )


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device`, so that a clock read next times it too."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _end_epoch(state: FitState, step: TrainStep, data: DataBundle, eval_args: dict[str, Any],
               dist: DistContext) -> None:
    """Read the epoch's numbers once, evaluate, and append the epoch's row to the history."""
    config, history = state.config, state.history
    # Equal-sized rank batches: the mean of their losses is the global batch's loss.
    batch_losses = dist.mean(state.losses).tolist()
    correct, seen = dist.sum(state.correct).item(), state.seen * dist.world_size
    synchronize(step.runtime.device)
    elapsed = time.perf_counter() - state.epoch_start
    row = {"epoch": state.epoch + 1, "train_loss": sum(batch_losses) / len(batch_losses), "train_acc": correct / seen,
           "lr": state.lrs[-1], "time_s": elapsed, "images_per_s": seen / elapsed,
           # What each accuracy was measured on, so a --limit-* run's numbers are not read as the full set's.
           "train_images": len(data.train) if config.train_acc == "eval" else seen,
           "val_images": None if data.val is None else len(data.val), "test_images": len(data.test)}
    splits = (("train_acc", data.train),) if config.train_acc == "eval" else ()  # the course's: all of it, eval mode
    for name, split in (*splits, ("val_acc", data.val), ("test_acc", data.test)):
        row[name] = None if split is None else step.evaluate(
            lambda model, runtime: evaluate(model, split, runtime=runtime, **eval_args), epoch=state.epoch).accuracy
    if config.train_acc == "eval":  # and, as the course prints it, the epoch's time includes the evaluations
        row["time_s"] = time.perf_counter() - state.epoch_start
    # What ran, after any fallback of this epoch: callbacks and the checkpoint see it.
    history.compile_mode, state.runtime = step.compile_mode, step.runtime
    history.batch_loss += batch_losses
    history.batch_lr += state.lrs
    history.batch_epoch += [state.epoch + 1] * len(batch_losses)
    history.epochs.append(row)
    # "Best" is chosen on validation data only: picking the epoch by test accuracy would make
    # every later test score of that checkpoint optimistic. Without --val-split there is no best.
    state.improved = row["val_acc"] is not None and row["val_acc"] > state.best
    if state.improved:
        state.best = row["val_acc"]
    state.row = row
