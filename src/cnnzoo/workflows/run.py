"""A run end to end: config -> data + model -> fit -> run directory with metrics, checkpoints, plots."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import torch
from torch import nn

from cnnzoo.data import DataBundle, InputSpec, load_data
from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import TrainConfig, model_from_config
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.distributed import DistContext
from cnnzoo.train.fallback import runtime_after
from cnnzoo.train.history import History
from cnnzoo.train.callbacks import Callback
from cnnzoo.train.evaluation import evaluate, per_class_accuracy
from cnnzoo.train.loop import fit
from cnnzoo.train.rundir import RunDir, default_run_name


def versions() -> dict[str, str]:
    import torchvision

    from cnnzoo import __version__

    return {"cnnzoo": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda or "none"}


def model_for(config: TrainConfig, num_classes: int) -> nn.Module:
    torch.manual_seed(config.seed)  # the same seed gives the same initial weights
    return model_from_config(config, num_classes)


def data_for(config: TrainConfig, device: torch.device) -> DataBundle:
    data = load_data(config.dataset, root=config.data_dir, device=device, val_split=config.val_split,
                     seed=config.seed, limit_train=config.limit_train, limit_test=config.limit_test,
                     val_holdout=config.val_holdout)
    check_batches(config, len(data.train))
    return data


class PreparedRun(NamedTuple):
    runtime: Runtime
    data: DataBundle
    model: nn.Module


def prepare_run(config: TrainConfig, device: torch.device | None = None, *, announce: bool = True,
                build_model: Callable[[TrainConfig, int], nn.Module] = model_for) -> PreparedRun:
    """What every way of training starts from: the runtime on `device` (default: the config's) with
    its threads set and announced (unless `announce` is false: under torchrun only the main process
    speaks), then the data and `build_model(config, num_classes)`'s model (by default a fresh one from
    the config's seed)."""
    runtime = Runtime.from_config(config, device)
    runtime.configure_threads()
    if announce:
        runtime.announce()
    data = data_for(config, runtime.device)
    return PreparedRun(runtime, data, build_model(config, len(data.train.classes)))


def check_batches(config: TrainConfig, train_images: int) -> None:
    """Refuse, before training, a batch of one image for a model with batch normalization: it cannot
    compute batch statistics from one image (torch raises mid-epoch, or the statistics become NaN)."""
    from cnnzoo.models import get_model_spec

    if not get_model_spec(config.model).uses_norm:
        return
    if config.batch_size == 1:
        raise CnnzooError(f"--batch-size 1 gives {config.model}'s batch normalization one image per batch, "
                          "from which it cannot compute batch statistics; use --batch-size 2 or more.")
    if train_images % config.batch_size == 1:
        raise CnnzooError(f"The {train_images:,} training images leave a last batch of one image at --batch-size "
                          f"{config.batch_size}, which {config.model}'s batch normalization cannot train on; choose "
                          f"another --batch-size (say {config.batch_size + 1}) or --limit-train.")


def stored_data_dir(config: TrainConfig) -> str | None:
    """The data folder a stored run names, if it still exists here; else None, so that --data-dir,
    CNNZOO_DATA or the cache decide (a run moved to another machine)."""
    return config.data_dir if config.data_dir and Path(config.data_dir).expanduser().is_dir() else None


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
    run_dir.write_json(RunDir.EVALUATION, report)
    return report


def evaluation_report(result, classes, max_misclassified: int = 32, source_index=None) -> dict[str, Any]:
    """`source_index`: each evaluated sample's position in the official file (the split's
    `source_indices()`), so that a mistake names the image whatever subset was evaluated."""
    confusion = result.confusion(len(classes))
    wrong = (result.predictions != result.labels).nonzero().flatten()
    order = wrong[result.confidences[wrong].argsort(descending=True)][:max_misclassified]
    return {
        "split": "test", "accuracy": result.accuracy, "images": len(result.labels), "loss": result.loss,
        "classes": list(classes),
        "per_class_accuracy": per_class_accuracy(confusion), "confusion": confusion.tolist(),
        "misclassified": [{"index": int(source_index[i] if source_index is not None else i),
                           "true": int(result.labels[i]), "pred": int(result.predictions[i]),
                           "confidence": float(result.confidences[i])} for i in order],
    }


def write_run_config(run_dir: RunDir, config: TrainConfig, data: DataBundle, model: nn.Module, runtime: Runtime,
                     **extra: Any) -> None:
    """config.json: the TrainConfig plus what else a reader needs to reproduce and describe the run."""
    run_dir.write_json(RunDir.CONFIG, {
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
    runtime, data, model = prepare_run(config, dist.device, announce=dist.is_main)  # one line per run
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
