"""Experiment loggers as callbacks: TensorBoard event files and MLflow runs.

Both record the same things: every step's loss and learning rate, every epoch's metrics row, the
config as hyper-parameters, and the model (TensorBoard: its traced graph; MLflow: its layer table
as an artifact). Per-step values are written once per epoch from the history, never read from the
device per step, so logging costs a GPU run no host syncs. Only the main process logs.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import time
import warnings
from typing import Any

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.history import EPOCH_COLUMNS as HISTORY_COLUMNS
from cnnzoo.train.history import IMAGE_COUNT_COLUMNS
from cnnzoo.data import InputSpec
from cnnzoo.train.loop import TrainingInterrupted

STEP_TAGS = {"loss": "step/loss", "lr": "step/lr"}
# metrics.csv's columns (History owns them) but the epoch number, each value's x axis here, and the
# image counts, which are settings of the run rather than curves.
EPOCH_COLUMNS = tuple(column for column in HISTORY_COLUMNS if column != "epoch" and column not in IMAGE_COUNT_COLUMNS)
# The columns the hyper-parameter tables of both tools show next to the settings.
HPARAM_METRICS = ("epoch/train_loss", "epoch/train_acc", "epoch/val_acc", "epoch/test_acc")


def _require(module: str, flag: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise CnnzooError(f"{flag} needs the {module} package, which is not installed; install it with "
                          f"python3 -m pip install 'cnnzoo[{extra}]'.")


def epoch_steps(state: FitState) -> tuple[int, list[float], list[float]]:
    """The global step of this epoch's first batch and its per-step losses and rates, from the
    history (where `fit` put them when it read the epoch's losses off the device in one copy)."""
    history = state.history
    count = len(state.lrs)
    first = len(history.batch_loss) - count
    return first, history.batch_loss[first:], history.batch_lr[first:]


def hparams(config) -> dict[str, str | int | float]:
    """The config as flat hyper-parameters: numbers stay numbers, the rest becomes text; unset values are left out."""
    values: dict[str, str | int | float] = {}
    for key, value in config.to_dict().items():
        if value is None or value == {}:
            continue
        if isinstance(value, bool):
            values[key] = str(value).lower()
        elif isinstance(value, (int, float, str)):
            values[key] = value
        else:
            values[key] = json.dumps(value, sort_keys=True)
    return values


def inert_copy(model: nn.Module) -> nn.Module:
    """A CPU copy in eval mode, to trace or summarize without touching the model being trained
    (a forward pass in train mode would move batch-norm statistics and draw dropout masks)."""
    return copy.deepcopy(model).cpu().eval()


def input_shape(state: FitState) -> tuple[int, int, int]:
    return (1, *InputSpec.from_config(state.config).input_size)


class TensorBoardLogger(Callback):
    """TensorBoard event files in `log_dir` (default: the run directory's `tensorboard/`).

    Scalars `step/loss` and `step/lr` per step, `epoch/<column>` per epoch (x axis: the epoch
    number), the config as hparams, and the model's graph. View with `tensorboard --logdir DIR`.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, graph: bool = True):
        _require("tensorboard", "--tensorboard", "tensorboard")
        self.log_dir = log_dir
        self.graph = graph
        self.writer = None

    def on_fit_start(self, state: FitState) -> None:
        if not state.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        log_dir = self.log_dir or (state.run_dir.tensorboard_dir if state.run_dir is not None else None)
        if log_dir is None:
            raise CnnzooError("TensorBoardLogger needs a log_dir when fit is given no run directory.")
        self.writer = SummaryWriter(log_dir=str(log_dir))
        # The hparams plugin's experiment and session records go into this run's own event file,
        # beside its scalars; SummaryWriter.add_hparams would start a separate run for them.
        experiment, session_start, self._session_end = hparams_summary(
            hparams(state.config), {tag: 0.0 for tag in HPARAM_METRICS})
        for summary in (experiment, session_start):
            self.writer.file_writer.add_summary(summary)
        if self.graph:
            # add_graph traces with torch.jit, which warns that it is deprecated; that is
            # SummaryWriter's business and nothing a cnnzoo user can act on.
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.writer.add_graph(inert_copy(state.model), torch.zeros(1, *input_shape(state)))
        self.writer.flush()

    def on_epoch_end(self, state: FitState) -> None:
        if self.writer is None:
            return
        first, losses, lrs = epoch_steps(state)
        for offset, (loss, lr) in enumerate(zip(losses, lrs)):
            self.writer.add_scalar(STEP_TAGS["loss"], loss, first + offset)
            self.writer.add_scalar(STEP_TAGS["lr"], lr, first + offset)
        for column in EPOCH_COLUMNS:
            if state.row.get(column) is not None:
                self.writer.add_scalar(f"epoch/{column}", state.row[column], state.row["epoch"])
        self.writer.flush()  # a crash later still leaves every finished epoch readable

    def on_fit_end(self, state: FitState) -> None:
        if self.writer is None:
            return
        if sys.exc_info()[0] is None:  # on_fit_end runs in fit's `finally`: no exception means it ended normally
            self.writer.file_writer.add_summary(self._session_end)
        self.writer.close()
        self.writer = None


class MLflowLogger(Callback):
    """The same records as an MLflow run: params, `step/*` and `epoch/*` metrics, the layer table.

    The tracking store is `tracking_uri`, else `$MLFLOW_TRACKING_URI`, else a local file store in the
    run directory's `mlruns/` (view with `mlflow ui --backend-store-uri file:RUN_DIR/mlruns`). The
    run's id is kept in the run directory's `mlflow.json`, so `--resume` continues the same run.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "cnnzoo", run_name: str | None = None):
        _require("mlflow", "--mlflow", "mlflow")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client = None
        self.run_id: str | None = None

    def _store_uri(self, state: FitState) -> str | None:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri or state.run_dir is None:
            return uri  # None: MLflow's own default
        # MLflow 3.7+ keeps the file store working only on request; it is what needs no database
        # package (mlflow-skinny has none), and it lives and dies with the run directory.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return state.run_dir.mlruns_dir.resolve().as_uri()

    def on_fit_start(self, state: FitState) -> None:
        if not state.is_main:
            return
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = self._store_uri(state)
        record = self._record(state)
        # self.client is set only with a run id: on_fit_end, which runs after any error, ends that run.
        client = MlflowClient(tracking_uri=uri)
        if record is not None and record["tracking_uri"] == uri:
            self.client, self.run_id = client, record["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return  # params are immutable in MLflow and were logged when the run began
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        name = self.run_name or (state.run_dir.path.name if state.run_dir is not None else None)
        self.client, self.run_id = client, client.create_run(experiment_id, run_name=name).info.run_id
        if state.run_dir is not None:
            state.run_dir.write_json(state.run_dir.MLFLOW, {"tracking_uri": uri, "experiment_id": experiment_id,
                                                     "run_id": self.run_id})
        params = [Param(key, str(value)) for key, value in hparams(state.config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        from cnnzoo.models.summary import summarize

        with torch.random.fork_rng(devices=[]):
            table = str(summarize(inert_copy(state.model), input_shape(state)))
        self.client.log_text(self.run_id, table, "model_summary.txt")

    @staticmethod
    def _record(state: FitState) -> dict[str, Any] | None:
        if state.run_dir is None or state.start_epoch == 0:
            return None
        return state.run_dir.read_mlflow()

    def on_epoch_end(self, state: FitState) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        first, losses, lrs = epoch_steps(state)
        stamp = int(time.time() * 1000)
        metrics = [Metric(STEP_TAGS["loss"], loss, stamp, first + i) for i, loss in enumerate(losses)]
        metrics += [Metric(STEP_TAGS["lr"], lr, stamp, first + i) for i, lr in enumerate(lrs)]
        metrics += [Metric(f"epoch/{column}", float(state.row[column]), stamp, state.row["epoch"])
                    for column in EPOCH_COLUMNS if state.row.get(column) is not None]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per call
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def on_fit_end(self, state: FitState) -> None:
        if self.client is None:
            return
        # on_fit_end runs in fit's `finally`; the exception in flight, if any, says how the run ended.
        error = sys.exc_info()[0]
        status = "FINISHED" if error is None else "KILLED" if _is_interrupt(error) else "FAILED"
        self.client.set_terminated(self.run_id, status=status)
        self.client = None


def _is_interrupt(error: type[BaseException]) -> bool:
    return issubclass(error, (KeyboardInterrupt, TrainingInterrupted))
