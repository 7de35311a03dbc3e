"""Continuing a run from its last checkpoint, plain or fine-tuning (the one place that knows both)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Iterable

from cnnzoo.errors import CnnzooError
from cnnzoo.train.callbacks import Callback
from cnnzoo.train.checkpoint import Checkpoint, check_matches_run, load_checkpoint, load_model_state
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.distributed import DistContext, launched_rank
from cnnzoo.train.early_stopping import EarlyStopStatus
from cnnzoo.train.history import History
from cnnzoo.train.loop import fit
from cnnzoo.train.rundir import RunDir
from cnnzoo.workflows.finetune import resume_finetune
from cnnzoo.workflows.run import finish_run, prepare_run, stored_data_dir


def resume_plan(path: str | Path | RunDir, epochs: int | None = None, device: str | None = None,
                data_dir: str | None = None) -> tuple[RunDir, Checkpoint, TrainConfig]:
    """What `resume_run` would continue: the run, its last checkpoint and the config it continues
    with; reads the run's config.json and last checkpoint and nothing else, writes nothing. A
    checkpoint that contradicts config.json on a setting resume may not change (a field missing
    from it would silently become its default: a schedule a constant rate) is refused."""
    run_dir = path if isinstance(path, RunDir) else RunDir.open(path)
    if not run_dir.last_checkpoint.exists():
        raise CnnzooError(f"Run {run_dir.path} stopped before it wrote its first checkpoint, so nothing of it can be "
                          f"continued; train it again (`cnnzoo train ... --out {run_dir.path.parent} --name "
                          f"{run_dir.path.name} --overwrite`).")
    checkpoint = load_checkpoint(run_dir.last_checkpoint)
    check_matches_run(checkpoint, run_dir)
    config = checkpoint.train_config()
    changes = {k: v for k, v in {"epochs": epochs, "device": device}.items() if v is not None}
    config = config.replace(data_dir=data_dir or stored_data_dir(config), **changes).validate()
    trained = checkpoint.meta["epoch"]
    stopped = stopped_early_after(checkpoint, config)
    if stopped is not None and not needs_finishing(run_dir):
        raise CnnzooError(f"Run {run_dir.path} already stopped early after epoch {stopped} (no validation progress "
                          f"for {config.early_stop} epochs) and is finished, so there is nothing to resume; train a "
                          "new run to go further.")
    if config.epochs < trained:
        raise CnnzooError(f"Run {run_dir.path} has already trained {trained} epochs, more than the --epochs "
                          f"{config.epochs} asked for; pass --epochs N with N larger than {trained} to train it further.")
    if trained == config.epochs and not needs_finishing(run_dir):
        raise CnnzooError(f"Run {run_dir.path} has already trained {trained} epochs and is finished; pass "
                          f"--epochs N with N larger than {trained} to train it further.")
    return run_dir, checkpoint, config


def stopped_early_after(checkpoint: Checkpoint, config: TrainConfig) -> int | None:
    """The epoch after which early stopping ended the checkpoint's run, or None where it may go on."""
    if not config.early_stop or checkpoint.meta["epoch"] == 0:
        return None
    rows = History.from_dict(checkpoint.meta["history"]).epochs
    return EarlyStopStatus.replay(rows, config.early_stop, config.early_stop_min_delta).stopped_epoch


def needs_finishing(run_dir: RunDir) -> bool:
    """Whether a run whose training is over (every epoch, or stopped early) still lacks what `finish_run`
    writes (evaluation.json, report.html): a stop after the last checkpoint, or a full disk while writing them."""
    return not (run_dir.evaluation_path.is_file() and run_dir.report_path.is_file())


def _finish_stopped(run_dir: RunDir, checkpoint: Checkpoint, config: TrainConfig) -> tuple[RunDir, History]:
    """Write what a run stopped after its last epoch lacks, from the weights training ended with: the
    last checkpoint, or the best one where early stopping kept the best epoch's weights."""
    runtime, data, model = prepare_run(config)
    history = History.from_dict(checkpoint.meta["history"])
    weights = checkpoint
    if config.early_stop and run_dir.best_checkpoint.is_file():
        # Early stopping's state is a pure function of the checked history, as when fit resumes it.
        best_epoch = EarlyStopStatus.replay(history.epochs, config.early_stop, config.early_stop_min_delta).best_epoch
        if best_epoch is not None and best_epoch != checkpoint.meta["epoch"]:
            weights = load_checkpoint(run_dir.best_checkpoint)
    load_model_state(model, weights.model_state, source=f"checkpoint {weights.path}")
    model.to(runtime.device)
    finish_run(run_dir, model, data, config, runtime)
    return run_dir, history


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
    writer = launched_rank() == 0  # under torchrun, rank 0 alone writes the run directory
    if writer:  # config.json says what the run is now: a report must not show 10 epochs next to 20 trained
        run_dir.write_json(RunDir.CONFIG, {**run_dir.read_config()[1], **config.to_dict()})
    # Trained to the end, or stopped early: only finish_run's files are missing.
    if checkpoint.meta["epoch"] == config.epochs or stopped_early_after(checkpoint, config) is not None:
        return _finish_stopped(run_dir, checkpoint, config) if writer else (
            run_dir, History.from_dict(checkpoint.meta["history"]))
    if config.finetune_from:  # its two phases (head only, then all layers) need their own optimizers
        return resume_finetune(run_dir, checkpoint, config, quiet=quiet, callbacks=callbacks)
    dist = DistContext.from_env(config.device)
    runtime, data, model = prepare_run(config, dist.device, announce=dist.is_main)  # one line per run
    history = fit(model, data, config, run_dir=run_dir if dist.is_main else None, resume=checkpoint,
                  callbacks=callbacks, progress=progress, quiet=quiet, runtime=runtime, dist=dist)
    if dist.is_main:
        finish_run(run_dir, model, data, config, runtime, history)
    return run_dir, history
