"""Checkpoints as single safetensors files: tensors plus JSON metadata, nothing ever unpickled.

`save_checkpoint` writes one atomically and `load_checkpoint` reads it back checked (schema,
checksum, finite weights), so what a run resumes or evaluates is what it wrote. The file's layout
is told at `save_checkpoint`, its integrity at `tensor_checksum`, the older format at `VERSION`.
"""

from __future__ import annotations

import hashlib
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
from cnnzoo.train.rundir import RunDir
from cnnzoo.train.schema import HISTORY_LISTS, DocumentError, check_checkpoint_meta
from cnnzoo.values import is_whole

FORMAT = "cnnzoo-checkpoint"
# Format version 1 (cnnzoo before the checksum; history in the header) is still read, without
# verification: refusing it would strand every run trained so far, and it was written whole by the
# same atomic rename. Writing always produces VERSION.
VERSION = 2
# The per-step history is stored as tensors: in the JSON header it would grow with every step until
# it hit safetensors' 100 MB header limit on long runs.
HISTORY_DTYPES = {"batch_loss": torch.float64, "batch_lr": torch.float64, "batch_epoch": torch.int64}


class CheckpointCorrupted(CnnzooError):
    """A checkpoint's tensors do not match the checksum written with them."""


class NonFiniteWeights(CnnzooError):
    """Weights holding NaN or infinity: a diverged model, which no checkpoint may keep (never saved, never loaded)."""


def tensor_checksum(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> str:
    """BLAKE2b over each tensor's name, dtype, shape and raw bytes, in name order, and over the
    metadata (less its own "checksum" entry) as canonical JSON, so a damaged header is caught too.

    Written into the header on save and verified on every load (one pass over the data, about 0.1 s
    for ResNet-18's 89 MB), so a flipped byte is refused with the file's name instead of loading silently.
    """
    digest = hashlib.blake2b(digest_size=16)
    if meta is not None:
        digest.update(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{str(tensor.dtype).removeprefix('torch.')}|{list(tensor.shape)}|".encode())
        digest.update(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().data)
    return "blake2b:" + digest.hexdigest()


def first_non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or infinity, else None."""
    floating = [(name, t) for name, t in state.items() if t.is_floating_point()]
    if not floating:
        return None
    # One reduction per tensor and a single host read: cheap even for ResNet-18 on a GPU.
    finite = torch.stack([torch.isfinite(t).all().to(floating[0][1].device) for _, t in floating]).cpu()
    bad = (~finite).nonzero()
    return floating[int(bad[0])][0] if len(bad) else None


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
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{index}"] = state
    if torch.backends.mps.is_available():  # dropout on an Apple GPU draws from its own generator
        states["rng.mps"] = torch.mps.get_rng_state()
    return states


def restore_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if "rng.mps" in tensors and torch.backends.mps.is_available():
        torch.mps.set_rng_state(tensors["rng.mps"])


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
    """Write a checkpoint atomically; raise NonFiniteWeights, writing nothing, if a weight is NaN or inf.

    Layout: model tensors under ``model.``, optimizer state tensors under ``optimizer.``, RNG states
    under ``rng.``, and the per-step history (loss, learning rate, epoch of every step) under
    ``history.``, as tensors. Everything else in ``meta`` (config, epoch, step, per-epoch rows,
    optimizer hyper-parameters, class names) is JSON in the header, checked against
    `cnnzoo.train.schema` on every read. There is no scheduler state to store: the learning rate is
    a pure function of the step (`LRSchedule`). An fp16 run's loss scale (`GradScaler.state_dict()`)
    is JSON in the header under ``grad_scaler``, so its resume is exact; bf16 needs no loss scaling.
    """
    path = Path(path)
    weights = model_state(model)
    bad = first_non_finite(weights)
    if bad is not None:
        raise NonFiniteWeights(f"Refusing to save {path}: the model's {bad} holds NaN or infinite values (training "
                               "diverged), so the previous checkpoint is kept; lower the learning rate and retrain.")
    tensors = {f"model.{k}": v for k, v in weights.items()}
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, **meta}
    if "history" in header:
        history = dict(header["history"])
        for name in HISTORY_LISTS:
            tensors[f"history.{name}"] = torch.tensor(history.pop(name, []), dtype=HISTORY_DTYPES[name])
        header["history"] = history
    if optimizer is not None:
        opt_tensors, header["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    if include_rng:
        tensors.update(rng_state())
    header["checksum"] = tensor_checksum(tensors, header)
    text = json.dumps(header, allow_nan=False)
    size = sum(t.numel() * t.element_size() for t in tensors.values()) + len(text)
    # Written beside its target and renamed over it: a crash mid-write leaves the previous checkpoint intact.
    with atomic_target(path, size_hint=size, also_intact="and so is every checkpoint written before") as tmp:
        save_file(tensors, tmp, metadata={"cnnzoo": text})
    return path


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    rng: dict[str, torch.Tensor]
    config_checked: TrainConfig | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    def train_config(self) -> TrainConfig:
        """The run's TrainConfig (checked on load; a setting this version does not know means a newer cnnzoo)."""
        if self.config_checked is None:
            self.config_checked = check_checkpoint_meta(self.meta, str(self.path), VERSION)
        return TrainConfig.from_dict(self.config_checked.to_dict())


def _describe_non_safetensors(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        return (
            f"{path} is a pickle/torch.save file, not a cnnzoo checkpoint; cnnzoo refuses to unpickle "
            "files because loading a pickle can run arbitrary code."
        )
    # A safetensors file starts with its header's length (8 bytes, little-endian) and the header's "{".
    header = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if head[8:9] == b"{" and 0 < header < 100_000_000:
        return (f"{path} is a safetensors file cut short or damaged (the header or the tensors it lists are not all "
                "there): it was not written completely or was damaged in a copy; use another checkpoint, restore "
                "it from a copy, or train again.")
    return f"{path} is not a cnnzoo checkpoint (not a readable safetensors file); point to a run's checkpoints/*.safetensors."


def _resolve(path: Path) -> Path:
    if path.is_dir() and path.suffix != ".safetensors":
        candidate = RunDir(path).last_checkpoint
        if not candidate.exists():
            raise CnnzooError(f"{path} has no {candidate.relative_to(path)}; is it a cnnzoo run directory?")
        path = candidate
    if path.is_dir():
        raise CnnzooError(f"Checkpoint {path} is a folder, not a file; remove or rename that folder and give a "
                          "run directory or a .safetensors checkpoint.")
    if not path.is_file():
        raise CnnzooError(f"Checkpoint {path} does not exist; give a run directory or a .safetensors checkpoint.")
    if path.stat().st_size == 0:
        raise CnnzooError(f"Checkpoint {path} is empty; it was not written completely, use another one.")
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Read a checkpoint without executing anything in it; every failure is a CnnzooError.

    The metadata is checked against the schema, the tensors against their checksum, and the
    weights for NaN/inf, so what comes back is a checkpoint some run really wrote and can use.
    """
    path = _resolve(Path(path))
    try:
        with safe_open(str(path), framework="pt", device=map_location) as f:
            raw = (f.metadata() or {}).get("cnnzoo")
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError, OverflowError):
        raise CnnzooError(_describe_non_safetensors(path)) from None
    try:
        meta = json.loads(raw) if raw else None
    except (json.JSONDecodeError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CnnzooError(f"{path} is a safetensors file but not a cnnzoo checkpoint (no cnnzoo metadata).")
    version = meta.get("version")
    if not (is_whole(version) and version >= 1):
        raise DocumentError(f"{path} is damaged or was not written by cnnzoo: its field 'version' is {version!r:.40}, "
                            "not a format number; restore the file from a copy or train the run again.")
    if version > VERSION:
        raise CnnzooError(f"{path} was written by a newer cnnzoo (format {version}); upgrade cnnzoo to read it.")
    if version >= 2:
        _verify(path, meta, tensors)
    config = check_checkpoint_meta(meta, str(path), version)
    if version >= 2 and "history" in meta:
        meta["history"] = {**meta["history"], **_history_lists(path, tensors)}
    meta.setdefault("history", {"batch_loss": [], "batch_lr": [], "batch_epoch": [], "epochs": []})
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    bad = first_non_finite(model)
    if bad is not None:
        raise NonFiniteWeights(f"{path} holds non-finite weights ({bad} is NaN or infinite): the run diverged "
                               "before this was saved, so no result from it would mean anything; retrain with a "
                               "lower learning rate.")
    optimizer = None
    if "optimizer" in meta:
        optimizer = _unflatten_optimizer(_optimizer_tensors(path, tensors), meta["optimizer"])
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return Checkpoint(path=path, meta=meta, model_state=model, optimizer_state=optimizer, rng=rng,
                      config_checked=config)


def _verify(path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    stored = meta.get("checksum")
    if not isinstance(stored, str):
        raise DocumentError(f"{path} is damaged or was not written by cnnzoo: its field 'checksum' is missing; "
                            "restore the file from a copy or train the run again.")
    if tensor_checksum(tensors, meta) != stored:
        raise CheckpointCorrupted(f"{path} is corrupted: its contents do not match the checksum written with them "
                                  "(a damaged disk or copy); restore it from a copy, or resume from another "
                                  "checkpoint or train again.")


def _history_lists(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    lists = {}
    for name, dtype in HISTORY_DTYPES.items():
        tensor = tensors.get(f"history.{name}")
        if tensor is None or tensor.dtype != dtype or tensor.ndim != 1:
            raise DocumentError(f"{path} is damaged or was not written by cnnzoo: its tensor 'history.{name}' is "
                                f"missing or not a 1-D {str(dtype).removeprefix('torch.')} list; restore the file "
                                "from a copy or train the run again.")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            # The divergence guard of a resumed run measures new losses against these: NaN disables it.
            raise DocumentError(f"{path} is damaged: its per-step history '{name}' holds NaN or infinity, which no "
                                "run records; restore the file from a copy or train the run again.")
        lists[name] = tensor.tolist()
    if len({len(v) for v in lists.values()}) > 1:
        raise DocumentError(f"{path} is damaged or was not written by cnnzoo: its per-step history tensors have "
                            "different lengths; restore the file from a copy or train the run again.")
    return lists


def _optimizer_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    found = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    for name in found:
        parts = name.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
            raise DocumentError(f"{path} is damaged or was not written by cnnzoo: its tensor {name!r} is not named "
                                "optimizer.<index>.<state>; restore the file from a copy or train the run again.")
    return found


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load weights strictly, turning key, shape or dtype mismatches into one clear sentence."""
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
        if value.dtype != expected[key].dtype:
            # A silent cast would hide a file converted after training (say, to float16) behind its result.
            raise CnnzooError(
                f"The {source} stores {key} as {str(value.dtype).removeprefix('torch.')} but the model holds "
                f"{str(expected[key].dtype).removeprefix('torch.')}; it was converted after saving, use the "
                "checkpoint as training wrote it."
            )
    model.load_state_dict(state)


class UnusableWeights(CnnzooError):
    """A checkpoint whose weights would give a result that means nothing (untrained, or overflowing)."""


def check_trained(checkpoint: Checkpoint) -> None:
    """Refuse the checkpoint a run writes before its first epoch (so that a stop in epoch 1 can be
    resumed): its weights are the untrained initial ones, and a result from them (10% accuracy) would
    pass for the run's. A checkpoint of a model as built or imported (no optimizer state) is no
    run's starting point and is allowed: it is what it says it is."""
    if checkpoint.meta["epoch"] == 0 and "optimizer" in checkpoint.meta:
        run = RunDir.holding(checkpoint.path)
        raise UnusableWeights(
            f"{checkpoint.path} holds the untrained weights its run started from: no epoch finished (the run was "
            f"stopped, or diverged, in epoch 1); continue it with `cnnzoo train --resume {run}`, or if it diverged "
            "train again with a lower --lr.")


def check_outputs_finite(model: nn.Module, inputs: torch.Tensor, source: str) -> None:
    """Refuse weights that are finite but so large that the model's output overflows float32 (a run that
    was diverging when it was saved): evaluate and predict would print NaN and exit 0. `inputs` is a
    batch prepared as the run fed its model; eval mode, no gradient."""
    with torch.no_grad():
        logits = model(inputs)
    if not bool(torch.isfinite(logits).all()):
        raise UnusableWeights(
            f"{source} holds weights so large that the model's output overflows to NaN or infinity (the run was "
            "diverging when it was saved), so no result from it would mean anything; train again with a lower "
            "--lr.")


# A run directory's config.json and its checkpoints are written by the same run; a field on which
# they disagree means one of them is not that run's (a copy, a hand edit). Resume may change these:
RESUME_MAY_CHANGE = ("epochs", "device", "data_dir")


def check_matches_run(checkpoint: Checkpoint, run_dir: RunDir, fields: tuple[str, ...] | None = None) -> None:
    """Refuse a checkpoint whose settings (`fields`, default every TrainConfig field resume may not
    change) or class names differ from its run directory's config.json, naming the first such field."""
    stored, values = run_dir.read_config()
    mine = checkpoint.train_config().to_dict()
    theirs = stored.to_dict()
    names = fields if fields is not None else tuple(k for k in mine if k not in RESUME_MAY_CHANGE)
    differing = [(k, theirs.get(k), mine.get(k)) for k in names if theirs.get(k) != mine.get(k)]
    if "classes" in values and values["classes"] != checkpoint.meta["classes"]:
        differing.append(("classes", values["classes"], checkpoint.meta["classes"]))
    if differing:
        name, in_config, in_checkpoint = differing[0]
        raise CnnzooError(
            f"{run_dir.config_path} says {name} is {in_config!r:.60} but {checkpoint.path} says {in_checkpoint!r:.60}: "
            "the two files do not come from the same run (a copy or a hand edit); restore the run directory from a "
            "copy, or train again.")
