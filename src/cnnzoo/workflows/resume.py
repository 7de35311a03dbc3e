"""Continuing a run from its last checkpoint, plain or fine-tuning (the one place that knows both)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Iterable

from cnnzoo.errors import CnnzooError
from cnnzoo.train.callbacks import Callback
from cnnzoo.train.checkpoint import Checkpoint, load_checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.distributed import DistContext, launched_rank
from cnnzoo.train.history import History
from cnnzoo.train.loop import fit
from cnnzoo.train.rundir import RunDir
from cnnzoo.workflows.finetune import resume_finetune
from cnnzoo.workflows.run import data_for, finish_run, model_for, stored_data_dir


def resume_plan(path: str | Path | RunDir, epochs: int | None = None, device: str | None = None,
                data_dir: str | None = None) -> tuple[RunDir, Checkpoint, TrainConfig]:
    """What `resume_run` would continue: the run, its last checkpoint and the config it continues
    with; reads the checkpoint and nothing else, writes nothing."""
    run_dir = path if isinstance(path, RunDir) else RunDir.open(path)
    checkpoint = load_checkpoint(run_dir.last_checkpoint)
    config = checkpoint.train_config()
    changes = {k: v for k, v in {"epochs": epochs, "device": device}.items() if v is not None}
    config = config.replace(data_dir=data_dir or stored_data_dir(config), **changes).validate()
    if checkpoint.meta["epoch"] >= config.epochs:
        raise CnnzooError(f"Run {run_dir.path} already finished its {config.epochs} epochs; pass --epochs N with a "
                          "larger N to train it further.")
    return run_dir, checkpoint, config


def resume_run(path: str | Path, quiet: bool = False, callbacks: Iterable[Callback] = (),
               epochs: int | None = None, device: str | None = None,
               data_dir: str | None = None, progress: str = "auto") -> tuple[RunDir, History]:
    """Continue a run from its last completed epoch. `epochs` may extend the run; `device` and
    `data_dir` may differ from the first session's (another machine); nothing else changes."""
    run_dir = RunDir.open(path)
    # Rank 0 is the writer: a second process resuming (or still training) this run is refused here.
    with run_dir.writing() if launched_rank() == 0 else nullcontext():
        return _resume_locked(run_dir, quiet, callbacks, epochs, device, data_dir, progress)


def _resume_locked(run_dir: RunDir, quiet: bool, callbacks: Iterable[Callback], epochs: int | None,
                   device: str | None, data_dir: str | None, progress: str) -> tuple[RunDir, History]:
    run_dir, checkpoint, config = resume_plan(run_dir, epochs=epochs, device=device, data_dir=data_dir)
    # config.json says what the run is now: a report must not show 10 epochs next to 20 trained.
    run_dir.write_json(RunDir.CONFIG, {**run_dir.read_config()[1], **config.to_dict()})
    if config.finetune_from:  # its two phases (head only, then all layers) need their own optimizers
        return resume_finetune(run_dir, checkpoint, config, quiet=quiet, callbacks=callbacks)
    dist = DistContext.from_env(config.device)
    runtime = Runtime.from_config(config, dist.device)
    runtime.configure_threads()
    if dist.is_main:  # one line per run, not one per process
        runtime.announce()
    data = data_for(config, runtime.device)
    model = model_for(config, len(data.train.classes))
    history = fit(model, data, config, run_dir=run_dir if dist.is_main else None, resume=checkpoint,
                  callbacks=callbacks, progress=progress, quiet=quiet, runtime=runtime, dist=dist)
    if dist.is_main:
        finish_run(run_dir, model, data, config, runtime, history)
    return run_dir, history
