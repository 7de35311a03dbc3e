"""A trained model restored from a run directory or checkpoint, with what is needed to feed it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnzoo.data import InputSpec
from cnnzoo.train.checkpoint import load_checkpoint, load_model_state
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.rundir import RunDir
from cnnzoo.workflows.run import model_for


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
        path = run_dir.checkpoint(which)
    checkpoint = load_checkpoint(path)
    config = checkpoint.train_config()
    classes = checkpoint.meta["classes"]
    model = model_for(config, len(classes))
    load_model_state(model, checkpoint.model_state, source=f"checkpoint {path}")
    runtime_device = Runtime.from_config(config.replace(device=device)).device
    model.to(runtime_device).eval()
    return TrainedModel(model=model, config=config, classes=classes, input_spec=InputSpec.from_config(config),
                        meta=checkpoint.meta)
