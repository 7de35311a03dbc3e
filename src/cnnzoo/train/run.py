"""A run end to end: config -> data + model -> fit -> run directory with metrics, checkpoints, plots."""

from __future__ import annotations

import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from cnnzoo.data import DataBundle, InputSpec, load_data
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train.checkpoint import Checkpoint, load_checkpoint, load_model_state
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.distributed import DistContext, launched_rank
from cnnzoo.train.fastpath import runtime_after
from cnnzoo.train.history import History
from cnnzoo.train.callbacks import Callback
from cnnzoo.train.evaluate import evaluate
from cnnzoo.train.loop import fit
from cnnzoo.train.rundir import RunDir, default_run_name


def versions() -> dict[str, str]:
    import torchvision

    from cnnzoo import __version__

    return {"cnnzoo": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda or "none"}


def model_for(config: TrainConfig, num_classes: int) -> nn.Module:
    torch.manual_seed(config.seed)  # the same seed gives the same initial weights
    return build_model(config.model, num_classes=num_classes, in_channels=1, input_size=config.input_size,
                       norm=config.norm, init=config.init, **config.model_options)


def data_for(config: TrainConfig, device: torch.device) -> DataBundle:
    return load_data(config.dataset, root=config.data_dir, device=device, val_split=config.val_split,
                     seed=config.seed, limit_train=config.limit_train, limit_test=config.limit_test,
                     val_holdout=config.val_holdout)


def stored_data_dir(config: TrainConfig) -> str | None:
    """The data folder a stored run names, if it still exists here; else None, so that --data-dir,
    CNNZOO_DATA or the cache decide (a run moved to another machine)."""
    return config.data_dir if config.data_dir and Path(config.data_dir).expanduser().is_dir() else None


def read_config(run_dir: RunDir) -> TrainConfig:
    """The run's config.json, checked against the schema (see `RunDir.read_config`)."""
    return run_dir.read_config()[0]


def finish_run(run_dir: RunDir, model: nn.Module, data: DataBundle, config: TrainConfig, runtime: Runtime,
               history: History | None = None) -> None:
    """The end of every run: evaluation.json, the plots and the HTML report. With the run's `history`,
    the evaluation leaves out the fast-path pieces that fell back during training."""
    write_evaluation(run_dir, model, data, config, runtime_after(runtime, history.fallbacks) if history else runtime)
    from cnnzoo.viz.plots import plot_run
    from cnnzoo.viz.report import write_report

    plot_run(run_dir.path)
    write_report(run_dir.path)


def write_evaluation(run_dir: RunDir, model: nn.Module, data: DataBundle, config: TrainConfig,
                     runtime: Runtime) -> dict[str, Any]:
    result = evaluate(model, data.test, batch_size=config.eval_batch_size, runtime=runtime, tta=config.tta,
                      **InputSpec.from_config(config, data.info).kwargs())
    report = evaluation_report(result, data.test.classes, source_index=data.test.source_indices().cpu())
    # What the run's other accuracies were measured on, for the report.
    report.update({f"{name}_images": len(split) for name, split in (("train", data.train), ("val", data.val))
                   if split is not None})
    run_dir.write_json("evaluation.json", report)
    return report


def evaluation_report(result, classes, max_misclassified: int = 32, source_index=None) -> dict[str, Any]:
    """`source_index`: each evaluated sample's position in the official file (the split's
    `source_indices()`), so that a mistake names the image whatever subset was evaluated."""
    confusion = result.confusion(len(classes))
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1)).tolist()
    wrong = (result.predictions != result.labels).nonzero().flatten()
    order = wrong[result.confidences[wrong].argsort(descending=True)][:max_misclassified]
    return {
        "split": "test", "accuracy": result.accuracy, "images": len(result.labels), "loss": result.loss,
        "classes": list(classes),
        "per_class_accuracy": per_class, "confusion": confusion.tolist(),
        "misclassified": [{"index": int(source_index[i] if source_index is not None else i),
                           "true": int(result.labels[i]), "pred": int(result.predictions[i]),
                           "confidence": float(result.confidences[i])} for i in order],
    }


def write_run_config(run_dir: RunDir, config: TrainConfig, data: DataBundle, model: nn.Module, runtime: Runtime,
                     **extra: Any) -> None:
    """config.json: the TrainConfig plus what else a reader needs to reproduce and describe the run."""
    run_dir.write_json("config.json", {
        **config.to_dict(), "input_shape": [1, *InputSpec.from_config(config, data.info).input_size], "classes": list(data.train.classes),
        "num_params": sum(p.numel() for p in model.parameters()), "versions": versions(),
        "runtime": runtime.describe(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
    })


def train_run(
    config: TrainConfig,
    out: str | Path = "runs",
    name: str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    callbacks: Iterable[Callback] = (),
    progress: str = "auto",
) -> tuple[RunDir | None, History]:
    """Train as `cnnzoo train` does and return the run directory and history.

    Under torchrun this is one rank; only rank 0 writes a run directory, the others return None for it.
    """
    config.validate()
    dist = DistContext.from_env(config.device)
    runtime = Runtime.from_config(config, dist.device)
    runtime.configure_threads()
    data = data_for(config, runtime.device)
    model = model_for(config, len(data.train.classes))
    if not dist.is_main:  # only rank 0 writes (and only its clock names the run)
        return None, fit(model, data, config, callbacks=callbacks, progress=progress, quiet=quiet, runtime=runtime,
                         dist=dist)
    run_dir = RunDir.create(out, default_run_name(config.model, config.dataset) if name is None else name,
                            overwrite=overwrite)
    with run_dir.writing():  # created locked: this process is the run's only writer until it is done
        write_run_config(run_dir, config, data, model, runtime, world_size=dist.world_size)
        history = fit(model, data, config, run_dir=run_dir, callbacks=callbacks, progress=progress, quiet=quiet,
                      runtime=runtime, dist=dist)
        finish_run(run_dir, model, data, config, runtime, history)
    return run_dir, history


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
    run_dir.write_json("config.json", {**run_dir.read_config()[1], **config.to_dict()})
    if config.finetune_from:  # its two phases (head only, then all layers) need their own optimizers
        from cnnzoo.train.finetune import resume_finetune

        return resume_finetune(run_dir, checkpoint, config, quiet=quiet, callbacks=callbacks)
    dist = DistContext.from_env(config.device)
    runtime = Runtime.from_config(config, dist.device)
    runtime.configure_threads()
    data = data_for(config, runtime.device)
    model = model_for(config, len(data.train.classes))
    history = fit(model, data, config, run_dir=run_dir if dist.is_main else None, resume=checkpoint,
                  callbacks=callbacks, progress=progress, quiet=quiet, runtime=runtime, dist=dist)
    if dist.is_main:
        finish_run(run_dir, model, data, config, runtime, history)
    return run_dir, history


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with what is needed to feed it."""

    model: nn.Module
    config: TrainConfig
    classes: list[str]
    input_spec: InputSpec  # what the run fed its model: size, normalization, resize mode
    meta: dict[str, Any]


def load_trained(path: str | Path, device: str = "cpu", which: str = "best") -> TrainedModel:
    """Load a run directory's `which` checkpoint (falling back to last) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        run_dir = RunDir.open(path)
        path = run_dir.best_checkpoint if which == "best" and run_dir.best_checkpoint.is_file() else run_dir.last_checkpoint
    checkpoint = load_checkpoint(path)
    config = checkpoint.train_config()
    classes = checkpoint.meta["classes"]
    model = model_for(config, len(classes))
    load_model_state(model, checkpoint.model_state, source=f"checkpoint {path}")
    runtime_device = Runtime.from_config(config.replace(device=device)).device
    model.to(runtime_device).eval()
    return TrainedModel(model=model, config=config, classes=classes, input_spec=InputSpec.from_config(config),
                        meta=checkpoint.meta)
