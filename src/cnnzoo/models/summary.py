"""Keras-style model summaries, parameter and multiply-add counts (via torchinfo).

Everything here runs on a meta-device copy of the model: shapes and counts come out exactly,
no arithmetic is done (VGG-16 at 224x224 takes milliseconds), and the model itself, its
weights, batch-norm statistics and train/eval modes, is never touched.
"""

import copy
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from cnnzoo.models.registry import build_model, get_model_spec, list_models


@dataclass(frozen=True)
class LayerSummary:
    name: str  # dotted path in the model, e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # batch dimension first
    params: int


@dataclass(frozen=True)
class ModelSummary:
    model: str
    input_shape: tuple[int, ...]  # batch dimension first
    layers: tuple[LayerSummary, ...]  # leaf modules in call order
    total_params: int
    trainable_params: int
    non_trainable_params: int
    param_size_mb: float
    # torchinfo's convention: each weight and bias counts one multiply-add per output position
    mult_adds: int

    def _repr_html_(self) -> str:
        from cnnzoo.viz.notebook import summary_html

        return summary_html(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))  # IPython's plain-text display: the table, not the dataclass fields

    def __str__(self) -> str:
        header = ("Layer (type)", "Output Shape", "Param #")
        rows = [
            (f"{layer.name} ({layer.kind})", str(list(layer.output_shape)), f"{layer.params:,}")
            for layer in self.layers
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        width = sum(widths) + 4

        def line(row: tuple[str, str, str]) -> str:
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

        return "\n".join(
            [
                f'Model: "{self.model}", input {list(self.input_shape)}',
                "=" * width,
                line(header),
                "=" * width,
                *map(line, rows),
                "=" * width,
                f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.non_trainable_params:,}",
                f"Params size (MB): {self.param_size_mb:.2f}",
                f"Mult-adds: {self.mult_adds:,}",
                "=" * width,
            ]
        )


@dataclass(frozen=True)
class ModelRow:
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    params: int
    mult_adds: int


def _meta_copy(model: nn.Module) -> nn.Module:
    # deepcopy consults the memo before copying, so every tensor is swapped for a storage-less
    # meta twin while the module structure (and any hand-written layers) is copied as usual.
    memo: dict[int, torch.Tensor] = {}
    for t in chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def summarize(
    model: nn.Module, input_shape: tuple[int, int, int], batch_size: int = 1
) -> ModelSummary:
    """Summarize ``model`` on a batch of ``batch_size`` inputs of shape (C, H, W)."""
    twin = _meta_copy(model).eval()  # eval: batch norm accepts a batch of one
    names = {id(m): name for name, m in twin.named_modules()}
    import torchinfo  # here, not at the top: training never needs it, so a bare torch install can train

    stats = torchinfo.summary(twin, input_size=(batch_size, *input_shape), device="meta", verbose=0)
    layers = tuple(
        LayerSummary(
            name=names[info.layer_id],
            kind=info.class_name,
            output_shape=tuple(info.output_size),
            params=0 if info.is_recursive else info.num_params,
        )
        for info in stats.summary_list
        if info.is_leaf_layer and info.executed
    )
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    return ModelSummary(
        model=type(model).__name__,
        input_shape=(batch_size, *input_shape),
        layers=layers,
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        param_size_mb=sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
        mult_adds=stats.total_mult_adds,
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_mult_adds(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass on a single (C, H, W) input."""
    return summarize(model, input_shape).mult_adds


def models_table() -> list[ModelRow]:
    """One row per registered model at its default input, for ``cnnzoo models``."""
    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        with torch.device("meta"):  # no memory for VGG-16's 138M weights, no init cost
            model = build_model(name)
        rows.append(
            ModelRow(
                name=name,
                input_shape=spec.input_shape,
                num_classes=spec.num_classes,
                params=count_parameters(model),
                mult_adds=count_mult_adds(model, spec.input_shape),
            )
        )
    return rows
