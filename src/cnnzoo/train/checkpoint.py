"""Checkpoints as single safetensors files: tensors plus JSON metadata, nothing ever unpickled.

Layout: model tensors under ``model.``, optimizer state tensors under ``optimizer.``, RNG states
under ``rng.``; everything else (config, epoch, step, history, optimizer hyper-parameters, class
names) is JSON in the safetensors header. There is no scheduler or grad-scaler state to store:
the learning rate is a pure function of the step (`LRSchedule`), and bf16 autocast needs no loss
scaling. A file is written beside its target and renamed over it, so a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from cnnzoo.atomic import atomic_target
from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import TrainConfig

FORMAT = "cnnzoo-checkpoint"
VERSION = 1


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{index}"] = state
    return states


def restore_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # Compiled and DDP-wrapped models prefix their keys; checkpoints store the plain module's names.
    module = model
    while isinstance(inner := getattr(module, "_orig_mod", None) or getattr(module, "module", None), nn.Module):
        module = inner
    return {k: v.detach().contiguous().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    include_rng: bool = True,
) -> Path:
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model_state(model).items()}
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, **meta}
    if optimizer is not None:
        opt_tensors, header["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    if include_rng:
        tensors.update(rng_state())
    with atomic_target(path) as tmp:
        save_file(tensors, tmp, metadata={"cnnzoo": json.dumps(header)})
    return path


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    rng: dict[str, torch.Tensor]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    def train_config(self) -> TrainConfig:
        """The run's TrainConfig; a setting this version does not know means a newer cnnzoo wrote it."""
        unknown = sorted(set(self.config) - set(TrainConfig.field_names()))
        if unknown:
            from cnnzoo import __version__

            raise CnnzooError(f"{self.path} was written by a newer cnnzoo (its settings {', '.join(unknown)} are "
                              f"unknown to cnnzoo {__version__}); upgrade cnnzoo to use it.")
        return TrainConfig.from_dict(self.config)


def _describe_non_safetensors(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        return (
            f"{path} is a pickle/torch.save file, not a cnnzoo checkpoint; cnnzoo refuses to unpickle "
            "files because loading a pickle can run arbitrary code."
        )
    return f"{path} is not a cnnzoo checkpoint (not a readable safetensors file); point to a run's checkpoints/*.safetensors."


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Read a checkpoint without executing anything in it; every failure is a CnnzooError."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.safetensors"
        if not candidate.is_file():
            raise CnnzooError(f"{path} has no checkpoints/last.safetensors; is it a cnnzoo run directory?")
        path = candidate
    if not path.is_file():
        raise CnnzooError(f"Checkpoint {path} does not exist; give a run directory or a .safetensors checkpoint.")
    if path.stat().st_size == 0:
        raise CnnzooError(f"Checkpoint {path} is empty; it was not written completely, use another one.")
    try:
        with safe_open(str(path), framework="pt", device=map_location) as f:
            raw = (f.metadata() or {}).get("cnnzoo")
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError, OverflowError):
        raise CnnzooError(_describe_non_safetensors(path)) from None
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CnnzooError(f"{path} is a safetensors file but not a cnnzoo checkpoint (no cnnzoo metadata).")
    if meta.get("version", 0) > VERSION:
        raise CnnzooError(f"{path} was written by a newer cnnzoo (format {meta['version']}); upgrade cnnzoo to read it.")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer = None
    if "optimizer" in meta:
        optimizer = _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optimizer.")}, meta["optimizer"])
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return Checkpoint(path=path, meta=meta, model_state=model, optimizer_state=optimizer, rng=rng)


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load weights strictly, turning shape or key mismatches into one clear sentence."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CnnzooError(
            f"The {source} does not fit this model ({len(missing)} missing and {len(unexpected)} unexpected "
            f"tensors, e.g. {(missing or unexpected)[0]!r}); it was saved for another architecture."
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CnnzooError(
                f"The {source} does not fit this model: {key} has shape {tuple(value.shape)} but the model "
                f"expects {tuple(expected[key].shape)} (another class count, channel count or input size?)."
            )
    model.load_state_dict(state)
