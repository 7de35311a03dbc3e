"""`cnnzoo.inspect`: a trained run (or a model) and some images in, an Inspection out.

Images may be tensors, test-set indices or image files; files are framed as `cnnzoo predict` frames
them (cnnzoo.data.load_image with the run's data set's framing)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cnnzoo.data import InputSpec, canonical_dataset_name, load_image, load_split
from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.trained import TrainedModel, load_trained
from cnnzoo.values import is_whole
from cnnzoo.viz.inspection import Inspection, inspect_model

__all__ = ["inspect", "gather_images"]


def inspect(
    model_or_run: str | os.PathLike | TrainedModel | nn.Module,
    images,
    *,
    target: int | str | None = None,
    layer: str | None = None,
    classes: Sequence[str] | None = None,
    config: TrainConfig | None = None,
    invert: str | bool = "auto",
    device: str = "cpu",
    data_dir: str | None = None,
) -> Inspection:
    """Look inside a trained model on `images`.

    `model_or_run`: a run directory or checkpoint (its best weights, else its last), a
    `load_trained` result, or a bare `nn.Module` (then `classes` names its outputs, default 0..K-1,
    and its images are fed as `config`, the TrainConfig it was trained with, says: its size and
    normalization; without one, as they are, scaled to [0, 1]). `images`: a uint8 tensor (N, 1, 28, 28)
    or (28, 28), or a list of test-set indices (ints) and image file paths. `target`: the class
    (index or name) Grad-CAM and saliency explain, default each image's predicted one; `layer`: the
    layer Grad-CAM uses, named as `cnnzoo.summarize` names it.
    """
    if isinstance(model_or_run, nn.Module):
        trained = None
        model = model_or_run
        spec = InputSpec() if config is None else InputSpec.from_config(config)
        dataset = "fashion-mnist" if config is None else canonical_dataset_name(config.dataset)
    else:
        trained = model_or_run if isinstance(model_or_run, TrainedModel) else load_trained(model_or_run, device=device)
        model, spec, dataset = trained.model, trained.input_spec, canonical_dataset_name(trained.config.dataset)
    pixels, labels, sources = gather_images(images, dataset, invert=invert,
                                            data_dir=data_dir or getattr(trained.config if trained else config, "data_dir", None))
    if trained is not None:
        classes = trained.classes
    elif classes is None:
        was_training = model.training
        with torch.no_grad():  # in eval mode: batch norm cannot take one image in training mode
            count = model.eval()(spec(pixels[:1].to(next(model.parameters()).device))).shape[-1]
        model.train(was_training)
        classes = [str(k) for k in range(count)]
    return inspect_model(model, pixels, classes=classes, input_spec=spec, target=target, layer=layer,
                         labels=labels, sources=sources)


def gather_images(images, dataset: str, *, invert: str | bool = "auto", data_dir: str | None = None):
    """uint8 (N, 1, 28, 28), the true labels (when every image came from the test set, else None)
    and a source name per image, from a tensor or a list of test indices and file paths."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise CnnzooError(f"image tensors must be uint8 (0-255) like the data sets, got {images.dtype}.")
        batch = {2: lambda t: t[None, None], 3: lambda t: t[:, None] if t.shape[0] != 1 else t[None], 4: lambda t: t}
        if images.ndim not in batch:
            raise CnnzooError(f"images must be shaped (N, 1, 28, 28), (N, 28, 28) or (28, 28), got {tuple(images.shape)}.")
        pixels = batch[images.ndim](images)
        return pixels.cpu(), None, [f"image {k}" for k in range(len(pixels))]
    if isinstance(images, (int, str, os.PathLike)):
        images = [images]
    items = list(images)
    if not items:
        raise CnnzooError("no images to inspect; give image files, test-set indices or a uint8 tensor.")
    test = None
    pixels, labels, sources = [], [], []
    for item in items:
        if is_whole(item):
            test = test if test is not None else load_split(dataset, "test", root=data_dir)
            if not 0 <= item < len(test):
                raise CnnzooError(f"test index {item} is out of range; the {dataset} test set has {len(test):,} "
                                  f"images (0 to {len(test) - 1}).")
            pixels.append(test.images[item].cpu())
            labels.append(int(test.labels[item]))
            sources.append(f"test #{item}")
        elif isinstance(item, (str, os.PathLike)):
            pixels.append(load_image(item, invert=invert, framing=dataset))
            sources.append(Path(item).name)
        else:
            raise CnnzooError(f"cannot inspect {type(item).__name__} {item!r}; give image files, test-set indices "
                              "or a uint8 tensor.")
    return torch.stack(pixels), (labels if len(labels) == len(items) else None), sources
