"""A trained model restored from a run directory or checkpoint, with what is needed to feed it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnzoo.data import DATASETS
from cnnzoo.train.checkpoint import load_checkpoint, load_model_state
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.device import Runtime
from cnnzoo.train.loop import input_size_for, input_transform
from cnnzoo.train.rundir import RunDir
from cnnzoo.workflows.run import model_for


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with what is needed to feed it."""

    model: nn.Module
    config: TrainConfig
    classes: list[str]
    input_size: tuple[int, int]
    normalize: tuple[float, float] | None
    meta: dict[str, Any]
    resize_mode: str = "tensor"  # how the run resized its inputs (TrainConfig.resize_mode)


def load_trained(path: str | Path, device: str = "cpu", which: str = "best") -> TrainedModel:
    """Load a run directory's `which` checkpoint (falling back to last) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        run_dir = RunDir.open(path)
        path = run_dir.checkpoint(which)
    checkpoint = load_checkpoint(path)
    config = checkpoint.train_config()
    classes = checkpoint.meta["classes"]
    model = model_for(config, len(classes))
    load_model_state(model, checkpoint.model_state, source=f"checkpoint {path}")
    runtime_device = Runtime.from_config(config.replace(device=device)).device
    model.to(runtime_device).eval()
    h, w = input_size_for(config)
    info = DATASETS[config.dataset]
    return TrainedModel(model=model, config=config, classes=classes, input_size=(h, w),
                        normalize=input_transform(config, info, (h, w))["normalize"], meta=checkpoint.meta,
                        resize_mode=config.resize_mode)
