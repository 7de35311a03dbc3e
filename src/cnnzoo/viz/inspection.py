"""What a network computes for a few images: every layer's activations, the first convolution's
filters, and Grad-CAM and saliency (from captum, the optional `inspect` extra) for a class.

The computation lives in viz, beside the pictures it feeds, because the report (viz) draws it too;
`cnnzoo.inspect` (cnnzoo.workflows.look_inside) adds reading run directories, test indices and
image files on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cnnzoo.data import InputSpec
from cnnzoo.errors import CnnzooError

__all__ = ["Inspection", "inspect_model", "first_conv", "gradcam_layer_name"]


@dataclass(repr=False)  # the default repr would print every activation array
class Inspection:
    """Numbers of one look inside a model; `plot()` and the notebook display draw them.

    images: uint8 (N, 28, 28), the input as the model sees it before scaling. inputs: the float
    tensors fed to the model, (N, C, H, W). probabilities: (N, classes). activations: the output of
    every leaf layer that ran, named as `cnnzoo.summarize` names layers (a layer called twice, like a
    ResNet block's shared ReLU, adds `name#2`), each (N, ...). filters: the first convolution's weights
    (out, in, kh, kw). gradcam and saliency: (N, H, W) at the input's resolution, for `targets`.
    """

    images: np.ndarray
    inputs: np.ndarray
    classes: tuple[str, ...]
    probabilities: np.ndarray
    targets: np.ndarray
    activations: dict[str, np.ndarray]
    filters: np.ndarray
    filter_layer: str
    gradcam: np.ndarray
    gradcam_layer: str
    saliency: np.ndarray
    labels: np.ndarray | None = None  # the true classes, when the images came from a labelled split
    sources: list[str] = field(default_factory=list)  # where each image came from, for titles

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    def top_k(self, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per image, the k likeliest classes with their probabilities, likeliest first."""
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.classes[i], float(row[i])) for i in ranked] for row, ranked in zip(self.probabilities, order)]

    def __repr__(self) -> str:
        tops = "; ".join(", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked) for ranked in self.top_k(2))
        return (f"Inspection({len(self.images)} images: {tops}; {len(self.activations)} layers, filters of "
                f"{self.filter_layer}, Grad-CAM at {self.gradcam_layer})")

    def feature_layers(self) -> list[str]:
        """The layers whose activations are maps (C, H, W), in the order they ran."""
        return [name for name, value in self.activations.items() if value.ndim == 4]

    def plot(self, kind: str = "overview", layer: str | None = None, index: int = 0):
        """A matplotlib Figure: `kind` is "overview" (each image with its top classes, Grad-CAM and
        saliency), "filters", "feature_maps" (image `index` at `layer`, default the first
        convolution's) or "all" (the list of the three)."""
        from cnnzoo.viz import inside

        return inside.inspection_figure(self, kind=kind, layer=layer, index=index)

    def _repr_html_(self) -> str:
        from cnnzoo.viz import inside

        return inside.inspection_html(self)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise CnnzooError(f"{type(model).__name__} has no Conv2d layer, so it has no filters to show; inspect a CNN.")


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if name and not list(module.children())}


def _record(model: nn.Module, inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, int], torch.Tensor]:
    """One forward pass: each leaf layer's output by name, how often each layer ran, and the logits."""
    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    handles = []

    def hook(name):
        def keep(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                outputs[name if calls[name] == 1 else f"{name}#{calls[name]}"] = output.detach()
        return keep

    for name, module in _leaves(model).items():
        handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, calls, logits


def gradcam_layer_name(activations: dict[str, torch.Tensor | np.ndarray], calls: dict[str, int]) -> str:
    """The last layer that makes maps wider than one pixel and runs once (a hook on a layer called
    twice would mix two places of the network): where Grad-CAM still has somewhere to point."""
    for name, value in reversed(list(activations.items())):
        if value.ndim == 4 and value.shape[-1] * value.shape[-2] > 1 and calls.get(name) == 1:
            return name
    raise CnnzooError("the model has no layer with spatial maps that runs once, so Grad-CAM has no layer to use; "
                      "pass layer= with a convolution's name from cnnzoo.summarize.")


def _captum():
    try:
        import captum.attr
    except ImportError:
        raise CnnzooError("Grad-CAM and saliency need captum: pip install 'cnnzoo[inspect]'.") from None
    return captum.attr


def inspect_model(
    model: nn.Module,
    images: torch.Tensor,
    *,
    classes: Sequence[str],
    input_spec: InputSpec | None = None,
    target: int | str | None = None,
    layer: str | None = None,
    labels: Sequence[int] | None = None,
    sources: Sequence[str] | None = None,
) -> Inspection:
    """Look inside `model` on uint8 `images` (N, 1, 28, 28), fed as `input_spec` says (default: as
    they are, scaled to [0, 1]). Grad-CAM and saliency explain `target` (a class index or name;
    default each image's predicted class); Grad-CAM uses `layer` (default `gradcam_layer_name`).
    The model is left in the train/eval mode it came in, its weights untouched."""
    attr = _captum()
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise CnnzooError(f"images must be a uint8 tensor (N, 1, 28, 28), got {images.dtype} {tuple(images.shape)}.")
    classes = tuple(classes)
    target_index = _class_index(target, classes)
    spec = input_spec or InputSpec()
    parameter = next(model.parameters())
    inputs = spec(images.to(parameter.device), dtype=parameter.dtype)
    filter_layer, conv = first_conv(model)
    was_training = model.training
    model.eval()
    try:
        outputs, calls, logits = _record(model, inputs)
        if logits.shape[-1] != len(classes):
            raise CnnzooError(f"the model outputs {logits.shape[-1]} classes but {len(classes)} class names were "
                              "given; pass the run's classes.")
        probabilities = logits.double().softmax(1)
        targets = probabilities.argmax(1) if target_index is None else torch.full_like(probabilities[:, 0], target_index, dtype=torch.long)
        gradcam_layer = layer or gradcam_layer_name(outputs, calls)
        modules = dict(model.named_modules())
        if gradcam_layer not in modules or gradcam_layer not in outputs:
            raise CnnzooError(f"the model has no layer named {gradcam_layer!r} that makes an output; pick one of "
                              f"{', '.join(n for n in outputs if '#' not in n)}.")
        if outputs[gradcam_layer].ndim != 4:
            raise CnnzooError(f"layer {gradcam_layer!r} makes a {outputs[gradcam_layer].ndim}-d output, not maps; "
                              "Grad-CAM needs a convolutional layer's (N, C, H, W) output.")
        target_list = targets.tolist()
        # Grad-CAM: each map weighted by its mean gradient, summed, the negative part dropped
        # (Selvaraju et al.), then scaled up to the input's size to lay over it.
        cam = attr.LayerGradCam(model, modules[gradcam_layer]).attribute(inputs, target=target_list,
                                                                          relu_attributions=True)
        cam = attr.LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear")
        # Saliency: |d score / d pixel|, the largest over the input's channels.
        saliency = attr.Saliency(model).attribute(inputs.clone().requires_grad_(True), target=target_list, abs=True)
    finally:
        model.train(was_training)
    return Inspection(
        images=images[:, 0].cpu().numpy(),
        inputs=inputs.detach().cpu().numpy(),
        classes=classes,
        probabilities=probabilities.cpu().numpy(),
        targets=targets.cpu().numpy(),
        activations={name: value.cpu().numpy() for name, value in outputs.items()},
        filters=conv.weight.detach().cpu().numpy().copy(),
        filter_layer=filter_layer,
        gradcam=cam[:, 0].detach().cpu().numpy(),
        gradcam_layer=gradcam_layer,
        saliency=saliency.amax(1).detach().cpu().numpy(),
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        sources=list(sources or []),
    )


def _class_index(target: int | str | None, classes: tuple[str, ...]) -> int | None:
    if target is None:
        return None
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        wanted = target.strip().lower()
        for index, name in enumerate(classes):
            if name.lower() == wanted:
                return index
        raise CnnzooError(f"no class is named {target!r}; the classes are {', '.join(classes)}.")
    index = int(target)
    if not 0 <= index < len(classes):
        raise CnnzooError(f"target class {index} is out of range; give 0 to {len(classes) - 1} or a class name.")
    return index
