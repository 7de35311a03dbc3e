"""One schema for the two documents a run keeps about itself: config.json and a checkpoint's metadata.

Both are read back by later commands (train --resume, report, compare --runs, predict, evaluate,
export), possibly from an older cnnzoo, a damaged disk or a hand edit. Every read goes through
:func:`check_config` / :func:`check_checkpoint_meta`, so a bad file is one sentence naming the file
and the field, never a traceback deep inside the consumer.
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

REQUIRED_CONFIG_FIELDS = ("model", "dataset")
HISTORY_LISTS = ("batch_loss", "batch_lr", "batch_epoch")


class DocumentError(CnnzooError):
    """A run's config.json or checkpoint metadata is not what cnnzoo wrote."""


def _bad(source: str, field: str, problem: str) -> DocumentError:
    return DocumentError(f"{source} is damaged or was not written by cnnzoo: its field {field!r} {problem}; "
                         "restore the file from a copy or train the run again.")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a whole number", float: "a number"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_number(value)
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
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)
                                  and shape[0] <= MAX_CHANNELS and max(shape[1:]) <= MAX_INPUT_SIDE):
        raise _bad(source, "input_shape", f"is {shape!r:.40}, not [C, H, W] with at most {MAX_CHANNELS} channels "
                                          f"and {MAX_INPUT_SIDE} pixels a side")
    if "num_params" in values and not (_is_int(values["num_params"]) and values["num_params"] >= 0):
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
        if name in meta and not (_is_int(meta[name]) and meta[name] >= 0):
            raise _bad(source, name, f"is {meta[name]!r:.40}, not a whole number of at least 0")
    if meta["epoch"] > config.epochs:
        raise _bad(source, "epoch", f"is {meta['epoch']}, more than the {config.epochs} epochs of its config")
    if "best" in meta and not _is_number(meta["best"]):
        raise _bad(source, "best", f"is {_kind(meta['best'])}, not a number")
    # A checkpoint of trained epochs carries their history (resume continues it); one of epoch 0, a
    # model as built or imported, may leave it out.
    if "history" in meta or meta["epoch"] > 0:
        _check_history(meta.get("history"), source, header_lists=version < 2)
    if "optimizer" in meta:
        _check_optimizer(meta["optimizer"], source)
    return config


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
        for key, value in row.items():
            if value is not None and not _is_number(value):
                raise _bad(source, "history.epochs", f"holds {key}={value!r:.40}, not a number")
    if not _is_number(history.get("compile_s", 0.0)):
        raise _bad(source, "history.compile_s", "is not a number")
    if not isinstance(history.get("compile_mode"), (str, type(None))):
        raise _bad(source, "history.compile_mode", "is not a string or null")
    if header_lists:
        for name in HISTORY_LISTS:
            values = history.get(name, [])
            if not (isinstance(values, list) and all(_is_number(v) for v in values)):
                raise _bad(source, f"history.{name}", "is not a list of numbers")
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
        if not (isinstance(params, list) and all(_is_int(p) and p >= 0 for p in params)):
            raise _bad(source, "optimizer.param_groups", "has a group without a list of parameter indices")
        if not (_is_number(group.get("lr")) and math.isfinite(group["lr"])):
            raise _bad(source, "optimizer.param_groups", "has a group without a finite learning rate")
    scalars = optimizer.get("scalars", {})
    if not (isinstance(scalars, dict) and all(isinstance(v, dict) for v in scalars.values())
            and all(k.isdigit() for k in scalars)):
        raise _bad(source, "optimizer.scalars", "is not an object of per-parameter values")
