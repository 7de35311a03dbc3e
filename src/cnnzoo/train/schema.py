"""One schema for the documents a run keeps about itself: config.json, a checkpoint's metadata,
metrics.csv and batch_loss.csv, evaluation.json and mlflow.json.

Each is read back by later commands (train --resume, report, compare --runs, predict, evaluate,
export), possibly from an older cnnzoo, a damaged disk or a hand edit. Every read goes through a
check here (:func:`check_config`, :func:`check_checkpoint_meta`, :func:`check_table`, ...), so a bad
file is one sentence naming the file and the field, never a traceback deep inside the consumer.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from cnnzoo.errors import CnnzooError
from cnnzoo.models.registry import MAX_CHANNELS
from cnnzoo.models.shapes import MAX_INPUT_SIDE
from cnnzoo.train.config import TrainConfig
from cnnzoo.values import is_number, is_whole

REQUIRED_CONFIG_FIELDS = ("model", "dataset")
HISTORY_LISTS = ("batch_loss", "batch_lr", "batch_epoch")


class DocumentError(CnnzooError):
    """A run's config.json or checkpoint metadata is not what cnnzoo wrote."""


_RESTORE = "restore the file from a copy or train the run again"


def _bad(source: str, field: str, problem: str, fix: str = _RESTORE) -> DocumentError:
    return DocumentError(f"{source} is damaged or was not written by cnnzoo: its field {field!r} {problem}; {fix}.")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a whole number", float: "a number"}.get(type(value), type(value).__name__)


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return is_whole(value)
    if annotation is float:
        return is_number(value)
    if annotation is str:
        return isinstance(value, str)
    if (origin or annotation) is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if (origin or annotation) is list:
        return isinstance(value, list)
    return True  # Any


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    return {type(None): "null", bool: "true/false", int: "a whole number", float: "a number", str: "a string",
            }.get(annotation, "an object" if (typing.get_origin(annotation) or annotation) is dict else "a value")


_CONFIG_TYPES = typing.get_type_hints(TrainConfig)


def check_config(values: Any, source: str, *, newer_if_unknown: bool = False) -> TrainConfig:
    """The TrainConfig a stored document describes, checked field by field and then as a whole.

    Fields TrainConfig does not know are ignored in config.json (it also records the input shape,
    versions and so on); in a checkpoint (``newer_if_unknown``) they mean a newer cnnzoo wrote it.
    """
    if not isinstance(values, dict):
        raise DocumentError(f"{source} is damaged or was not written by cnnzoo: it holds {_kind(values)} where its "
                            "settings (an object) should be; restore the file from a copy or train the run again.")
    unknown = sorted(k for k in values if k not in _CONFIG_TYPES)
    if unknown and newer_if_unknown:
        from cnnzoo import __version__

        raise DocumentError(f"{source} was written by a newer cnnzoo (its settings {', '.join(map(str, unknown))} "
                            f"are unknown to cnnzoo {__version__}); upgrade cnnzoo to use it.")
    for name in REQUIRED_CONFIG_FIELDS:
        if name not in values:
            raise _bad(source, name, "is missing")
    known = {}
    for name, annotation in _CONFIG_TYPES.items():
        if name in values:
            if not _matches(values[name], annotation):
                raise _bad(source, name, f"is {_kind(values[name])} ({values[name]!r:.40}), not {_describe(annotation)}")
            known[name] = values[name]
    config = TrainConfig(**known)
    from cnnzoo.data import DATASETS
    from cnnzoo.models import get_model_spec

    if config.dataset not in DATASETS:
        raise _bad(source, "dataset", f"names an unknown data set {config.dataset!r} (cnnzoo knows "
                                      f"{', '.join(sorted(DATASETS))})")
    try:
        get_model_spec(config.model)
        config.validate()
    except CnnzooError as error:
        raise DocumentError(f"{source} holds a setting no run can use ({str(error).rstrip('.')}); restore the file "
                            "from a copy or train the run again.") from None
    return config


def check_run_config(values: Any, source: str) -> tuple[TrainConfig, dict[str, Any]]:
    """config.json: the TrainConfig plus the descriptive fields readers use, each checked when present."""
    config = check_config(values, source)
    shape = values.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3
                                  and all(is_whole(v) and v > 0 for v in shape)
                                  and shape[0] <= MAX_CHANNELS and max(shape[1:]) <= MAX_INPUT_SIDE):
        raise _bad(source, "input_shape", f"is {shape!r:.40}, not [C, H, W] with at most {MAX_CHANNELS} channels "
                                          f"and {MAX_INPUT_SIDE} pixels a side")
    if "num_params" in values and not (is_whole(values["num_params"]) and values["num_params"] >= 0):
        raise _bad(source, "num_params", f"is {values['num_params']!r:.40}, not a whole number")
    _check_classes(values, source, required=False)
    return config, values


def _check_classes(values: dict[str, Any], source: str, required: bool) -> None:
    if "classes" not in values:
        if required:
            raise _bad(source, "classes", "is missing")
        return
    classes = values["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise _bad(source, "classes", f"is {classes!r:.40}, not a non-empty list of class names")


def check_checkpoint_meta(meta: dict[str, Any], source: str, version: int) -> TrainConfig:
    """A checkpoint's JSON metadata (format and version already checked): its TrainConfig."""
    config = check_config(meta.get("config"), f"{source} (its metadata field 'config')", newer_if_unknown=True) \
        if isinstance(meta.get("config"), dict) else None
    if config is None:
        if "config" not in meta:
            raise _bad(source, "config", "is missing")
        raise _bad(source, "config", f"is {_kind(meta['config'])}, not an object of settings")
    _check_classes(meta, source, required=True)
    if "epoch" not in meta:
        raise _bad(source, "epoch", "is missing")
    for name in ("epoch", "step"):
        if name in meta and not (is_whole(meta[name]) and meta[name] >= 0):
            raise _bad(source, name, f"is {meta[name]!r:.40}, not a whole number of at least 0")
    if meta["epoch"] > config.epochs:
        raise _bad(source, "epoch", f"is {meta['epoch']}, more than the {config.epochs} epochs of its config")
    if "best" in meta and not is_number(meta["best"]):
        raise _bad(source, "best", f"is {_kind(meta['best'])}, not a number")
    # A checkpoint of trained epochs carries their history (resume continues it); one of epoch 0, a
    # model as built or imported, may leave it out.
    if "history" in meta or meta["epoch"] > 0:
        _check_history(meta.get("history"), source, header_lists=version < 2)
    if "optimizer" in meta:
        _check_optimizer(meta["optimizer"], source)
    if "grad_scaler" in meta:
        _check_grad_scaler(meta["grad_scaler"], source)
    return config


# GradScaler.state_dict()'s fields: a damaged loss scale would silently skip or blow up every fp16 step.
_GRAD_SCALER_FIELDS = {"scale": "positive", "growth_factor": "positive", "backoff_factor": "positive",
                       "growth_interval": "count", "_growth_tracker": "count"}


def _check_grad_scaler(scaler: Any, source: str) -> None:
    if not isinstance(scaler, dict) or set(scaler) != set(_GRAD_SCALER_FIELDS):
        raise _bad(source, "grad_scaler", f"is {_kind(scaler)}, not a gradient scaler's state "
                   f"({', '.join(sorted(_GRAD_SCALER_FIELDS))})")
    for name, kind in _GRAD_SCALER_FIELDS.items():
        value = scaler[name]
        good = (is_number(value) and math.isfinite(value) and value > 0) if kind == "positive" \
            else (is_whole(value) and value >= 0)
        if not good:
            wanted = "a finite number above 0" if kind == "positive" else "a whole number of at least 0"
            raise _bad(source, f"grad_scaler.{name}", f"is {value!r:.40}, not {wanted}")


def _check_history(history: Any, source: str, header_lists: bool) -> None:
    if not isinstance(history, dict):
        raise _bad(source, "history", "is missing" if history is None else f"is {_kind(history)}, not an object")
    from cnnzoo.train.history import History

    fields = {f.name for f in dataclasses.fields(History)}
    stored = fields if header_lists else fields - set(HISTORY_LISTS)
    unknown = sorted(set(history) - stored)
    if unknown:
        raise _bad(source, "history", f"has unknown entries {', '.join(map(str, unknown))}")
    epochs = history.get("epochs", [])
    if not (isinstance(epochs, list) and all(isinstance(row, dict) for row in epochs)):
        raise _bad(source, "history.epochs", "is not a list of per-epoch rows")
    for row in epochs:
        # Early stopping's replay and the checkpoint's own epoch count go by each row's epoch.
        if not (is_whole(row.get("epoch")) and row["epoch"] >= 1):
            raise _bad(source, "history.epochs", f"holds a row whose epoch is {row.get('epoch')!r:.40}, not a whole "
                       "number of at least 1")
        for key, value in row.items():
            # NaN would pass for a number, and a resumed run's divergence guard compares against it.
            if value is not None and not (is_number(value) and math.isfinite(value)):
                raise _bad(source, "history.epochs", f"holds {key}={value!r:.40}, not a finite number")
    if not is_number(history.get("compile_s", 0.0)):
        raise _bad(source, "history.compile_s", "is not a number")
    if not isinstance(history.get("compile_mode"), (str, type(None))):
        raise _bad(source, "history.compile_mode", "is not a string or null")
    if header_lists:
        for name in HISTORY_LISTS:
            values = history.get(name, [])
            if not (isinstance(values, list) and all(is_number(v) and math.isfinite(v) for v in values)):
                raise _bad(source, f"history.{name}", "is not a list of finite numbers")
        if len({len(history.get(name, [])) for name in HISTORY_LISTS}) > 1:
            raise _bad(source, "history", "has per-step lists of different lengths")


def _check_optimizer(optimizer: Any, source: str) -> None:
    if not isinstance(optimizer, dict):
        raise _bad(source, "optimizer", f"is {_kind(optimizer)}, not an object")
    groups = optimizer.get("param_groups")
    if not (isinstance(groups, list) and groups and all(isinstance(g, dict) for g in groups)):
        raise _bad(source, "optimizer.param_groups", "is not a non-empty list of parameter groups")
    for group in groups:
        params = group.get("params")
        if not (isinstance(params, list) and all(is_whole(p) and p >= 0 for p in params)):
            raise _bad(source, "optimizer.param_groups", "has a group without a list of parameter indices")
        if not (is_number(group.get("lr")) and math.isfinite(group["lr"])):
            raise _bad(source, "optimizer.param_groups", "has a group without a finite learning rate")
    scalars = optimizer.get("scalars", {})
    if not (isinstance(scalars, dict) and all(isinstance(v, dict) for v in scalars.values())
            and all(k.isdigit() for k in scalars)):
        raise _bad(source, "optimizer.scalars", "is not an object of per-parameter values")


# ---------------------------------------------------------------- the run's tables and evaluation.json
# What each column of metrics.csv and batch_loss.csv holds: (kind, lowest value, highest value,
# may be empty). Columns marked optional may be absent (files written before they existed).
_ACCURACY = ("float", 0.0, 1.0)
METRICS_COLUMNS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "epoch": ("int", 1, None, False), "train_loss": ("float", None, None, False),
    "train_acc": (*_ACCURACY, True), "val_acc": (*_ACCURACY, True), "test_acc": (*_ACCURACY, True),
    "lr": ("float", 0.0, None, True), "time_s": ("float", 0.0, None, False),
    "images_per_s": ("float", 0.0, None, True),
    "train_images": ("int", 0, None, True), "val_images": ("int", 0, None, True), "test_images": ("int", 0, None, True),
}
METRICS_OPTIONAL = ("val_acc", "train_images", "val_images", "test_images")
BATCH_LOSS_COLUMNS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "step": ("int", 0, None, False), "epoch": ("int", 1, None, False), "loss": ("float", None, None, False),
    "lr": ("float", 0.0, None, True),
}
# No number cnnzoo writes is longer; a longer field is damage, and parsing it could cost time.
MAX_FIELD_CHARS = 40


def _table_bad(source: str, problem: str, fix: str = _RESTORE) -> DocumentError:
    return DocumentError(f"{source} is damaged or was not written by cnnzoo: {problem}; {fix}.")


def _number_field(text: str, kind: str, low: float | None, high: float | None) -> int | float:
    if len(text) > MAX_FIELD_CHARS:
        raise ValueError(f"is {len(text)} characters long, not a number")
    try:
        value: int | float = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"is {text!r:.40}, not {'a whole number' if kind == 'int' else 'a number'}") from None
    if not math.isfinite(value):
        raise ValueError(f"is {text!r}, not a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"is {text!r:.40}, not a value {span}")
    return value


def check_table(data: bytes, source: str, columns: dict[str, tuple[str, float | None, float | None, bool]],
                optional: tuple[str, ...] = ()) -> list[dict[str, int | float | None]]:
    """The rows of a CSV table cnnzoo wrote (metrics.csv, batch_loss.csv), each value checked and
    converted: an int, a float, or None for an empty cell the column allows. Anything else (not
    UTF-8, a missing column, a short row, text, NaN, an out-of-range accuracy, zero time, a step
    out of order) is one DocumentError naming the file, the row and the column."""
    import csv
    import io

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _table_bad(source, f"byte {error.start} is not UTF-8 text") from None
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise _table_bad(source, f"it is not a CSV table ({error})") from None
    if not table:
        raise _table_bad(source, "it has no header line")
    header = table[0]
    for name in columns:
        if name not in header and name not in optional:
            raise _table_bad(source, f"its column {name!r} is missing")
    rows: list[dict[str, int | float | None]] = []
    for line, cells in enumerate(table[1:], start=2):
        if len(cells) != len(header):
            raise _table_bad(source, f"line {line} has {len(cells)} fields, not the {len(header)} of its header")
        raw = dict(zip(header, cells))
        row: dict[str, int | float | None] = {}
        for name, (kind, low, high, may_be_empty) in columns.items():
            text = raw.get(name, "")
            if text == "":
                if not may_be_empty and name in header:
                    raise _table_bad(source, f"line {line} has no value in column {name!r}")
                row[name] = None
                continue
            try:
                row[name] = _number_field(text, kind, low, high)
            except ValueError as error:
                raise _table_bad(source, f"line {line}'s column {name!r} {error}") from None
        order = "epoch" if "step" not in columns else "step"
        if rows and row[order] <= rows[-1][order]:
            raise _table_bad(source, f"line {line}'s {order} {row[order]} does not follow {rows[-1][order]}")
        rows.append(row)
    if "time_s" in columns and any(row["time_s"] == 0 for row in rows):
        raise _table_bad(source, "an epoch's time_s is 0, and no epoch trains in no time")
    return rows


def check_evaluation(values: Any, source: str) -> dict[str, Any]:
    """evaluation.json (the test of a finished run), checked field by field; returned as read."""
    if not isinstance(values, dict):
        raise _table_bad(source, f"it holds {_kind(values)}, not an object")

    def number(name: str, low: float, high: float | None, required: bool = True) -> None:
        if name not in values or values[name] is None:
            if required:
                raise _bad(source, name, "is missing")
            return
        value = values[name]
        if not (is_number(value) and math.isfinite(value) and value >= low and (high is None or value <= high)):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise _bad(source, name, f"is {value!r:.40}, not a number {span}")

    number("accuracy", 0.0, 1.0)
    number("loss", 0.0, None, required=False)
    for name in ("images", "train_images", "val_images"):
        if name in values and not (is_whole(values[name]) and values[name] >= 0):
            raise _bad(source, name, f"is {values[name]!r:.40}, not a whole number of images")
    if not isinstance(values.get("split", "test"), str):
        raise _bad(source, "split", "is not a string")
    classes = values.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise _bad(source, "classes", f"is {classes!r:.40}, not a non-empty list of class names")
    n = len(classes)
    confusion = values.get("confusion")
    if not (isinstance(confusion, list) and len(confusion) == n and all(
            isinstance(row, list) and len(row) == n and all(is_whole(v) and v >= 0 for v in row) for row in confusion)):
        raise _bad(source, "confusion", f"is not a {n}x{n} table of image counts, one row per class")
    per_class = values.get("per_class_accuracy")
    if not (isinstance(per_class, list) and len(per_class) == n
            and all(is_number(v) and math.isfinite(v) and 0 <= v <= 1 for v in per_class)):
        raise _bad(source, "per_class_accuracy", f"is not a list of {n} accuracies from 0 to 1")
    wrong = values.get("misclassified", [])
    if not isinstance(wrong, list):
        raise _bad(source, "misclassified", f"is {_kind(wrong)}, not a list")
    for item in wrong:
        if not (isinstance(item, dict) and is_whole(item.get("index")) and item["index"] >= 0
                and all(is_whole(item.get(k)) and 0 <= item[k] < n for k in ("true", "pred"))
                and is_number(item.get("confidence")) and 0 <= item["confidence"] <= 1):
            raise _bad(source, "misclassified", "holds an entry that is not {index, true, pred, confidence} of a "
                       "test image")
    return values


# The MLflow run itself lives in its tracking store; only the link to it is lost with this file.
_MLFLOW_FIX = "delete it and the resumed run logs to a new MLflow run"


def check_mlflow_record(values: Any, source: str) -> dict[str, str]:
    """mlflow.json (which MLflow run a run logs to, so a resume continues it), checked field by field."""
    if not isinstance(values, dict):
        raise _table_bad(source, f"it holds {_kind(values)}, not an object", _MLFLOW_FIX)
    for name in ("tracking_uri", "experiment_id", "run_id"):
        if name not in values:
            raise _bad(source, name, "is missing", _MLFLOW_FIX)
        if not (isinstance(values[name], str) and values[name]):
            raise _bad(source, name, f"is {values[name]!r:.40}, not a non-empty string", _MLFLOW_FIX)
    return values
