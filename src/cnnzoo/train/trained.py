"""A trained model restored from a run directory or checkpoint, with what is needed to feed it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnzoo.data import InputSpec
from cnnzoo.train.checkpoint import (check_matches_run, check_outputs_finite, check_trained, load_checkpoint,
                                     load_model_state)
from cnnzoo.train.config import TrainConfig, model_from_config
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.rundir import RunDir


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with what is needed to feed it."""

    model: nn.Module
    config: TrainConfig
    classes: list[str]
    input_spec: InputSpec  # what the run fed its model: size, normalization, resize mode
    meta: dict[str, Any]


def load_trained(path: str | Path, device: str = "cpu", which: str = "best") -> TrainedModel:
    """Load a run directory's `which` checkpoint (falling back to last) or a checkpoint file.

    This is where evaluate, predict, export, inspect and the report decide whether a run's weights are
    usable: never the untrained start of a run, never weights whose output overflows, never a
    checkpoint its run directory's config.json contradicts."""
    path = Path(path)
    run_dir = RunDir.open(path) if path.is_dir() else None
    if run_dir is not None:
        path = run_dir.checkpoint(which)
    checkpoint = load_checkpoint(path)
    check_trained(checkpoint)
    if run_dir is not None:
        check_matches_run(checkpoint, run_dir, fields=("model", "dataset", "model_options", "norm", "input_size"))
    config = checkpoint.train_config()
    classes = checkpoint.meta["classes"]
    model = model_from_config(config, len(classes))  # its initial weights are replaced at once
    load_model_state(model, checkpoint.model_state, source=f"checkpoint {path}")
    runtime_device = Runtime.from_config(config.replace(device=device)).device
    model.to(runtime_device).eval()
    input_spec = InputSpec.from_config(config)
    # A black and a white image, fed as the run fed its model.
    blank = torch.stack([torch.zeros(1, 28, 28, dtype=torch.uint8), torch.full((1, 28, 28), 255, dtype=torch.uint8)])
    check_outputs_finite(model, input_spec(blank.to(runtime_device)), f"checkpoint {path}")
    return TrainedModel(model=model, config=config, classes=classes, input_spec=input_spec, meta=checkpoint.meta)
