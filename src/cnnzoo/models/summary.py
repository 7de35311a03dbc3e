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

from cnnzoo import display
from cnnzoo.models.registry import build_model, get_model_spec, list_models


@dataclass(frozen=True)
class LayerSummary:
    name: str  # dotted path in the model, e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # batch dimension first
    params: int
    buffers: int = 0  # floating-point buffers: batch norm's running mean and variance


@dataclass(frozen=True)
class ModelSummary:
    model: str  # the registered name when known, else the class name
    input_shape: tuple[int, ...]  # batch dimension first
    layers: tuple[LayerSummary, ...]  # leaf modules in call order
    total_params: int
    trainable_params: int
    non_trainable_params: int
    param_size_mb: float
    # torchinfo's convention: each weight and bias counts one multiply-add per output position
    mult_adds: int
    # Values of floating-point buffers (batch norm's running statistics). PyTorch does not count
    # them as parameters; Keras counts its moving mean/variance as non-trainable weights.
    # Integer buffers (num_batches_tracked) have no Keras counterpart and are left out.
    buffers: int = 0

    @property
    def keras_total(self) -> int:
        """The total Keras' ``model.summary()`` prints for the same layers."""
        return self.total_params + self.buffers

    @property
    def keras_non_trainable(self) -> int:
        return self.non_trainable_params + self.buffers

    def _repr_html_(self) -> str:
        return display.provider("summary_html")(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))  # IPython's plain-text display: the table, not the dataclass fields

    def __str__(self) -> str:
        header = ["Layer (type)", "Output Shape", "Param #"]
        rows = [
            [f"{layer.name} ({layer.kind})", str(list(layer.output_shape)), f"{layer.params:,}"]
            for layer in self.layers
        ]
        if self.buffers:
            header.append("Buffers #")
            for row, layer in zip(rows, self.layers):
                row.append(f"{layer.buffers:,}")
        columns = len(header)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(columns)]
        width = sum(widths) + 2 * (columns - 1)

        def line(row: list[str]) -> str:
            cells = [f"{row[0]:<{widths[0]}}", f"{row[1]:<{widths[1]}}"]
            return "  ".join(cells + [f"{v:>{w}}" for v, w in zip(row[2:], widths[2:])])

        buffer_lines = []
        if self.buffers:
            buffer_lines = [
                f"Buffers (BN running statistics, not parameters): {self.buffers:,}",
                f"As Keras counts them (buffers are non-trainable weights): {self.keras_total:,} total, "
                f"{self.keras_non_trainable:,} non-trainable",
            ]
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
                *buffer_lines,
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
    description: str = ""  # which form the model is and where it comes from


def _meta_copy(model: nn.Module) -> nn.Module:
    # deepcopy consults the memo before copying, so every tensor is swapped for a storage-less
    # meta twin while the module structure (and any hand-written layers) is copied as usual.
    memo: dict[int, torch.Tensor] = {}
    for t in chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def count_buffers(module: nn.Module, recurse: bool = True) -> int:
    """Values in ``module``'s floating-point buffers (batch norm's running mean and variance)."""
    return sum(b.numel() for b in module.buffers(recurse=recurse) if b.is_floating_point())


def summarize(
    model: nn.Module, input_shape: tuple[int, int, int], batch_size: int = 1, name: str | None = None
) -> ModelSummary:
    """Summarize ``model`` on a batch of ``batch_size`` inputs of shape (C, H, W).

    ``name`` heads the table (pass the registered name: lenet5 and lenet5_classic are both
    ``LeNet`` instances); by default the model's class name.
    """
    twin = _meta_copy(model).eval()  # eval: batch norm accepts a batch of one
    names = {id(m): path for path, m in twin.named_modules()}
    modules = {id(m): m for m in twin.modules()}
    import torchinfo  # here, not at the top: training never needs it, so a bare torch install can train

    stats = torchinfo.summary(twin, input_size=(batch_size, *input_shape), device="meta", verbose=0)
    layers = tuple(
        LayerSummary(
            name=names[info.layer_id],
            kind=info.class_name,
            output_shape=tuple(info.output_size),
            params=0 if info.is_recursive else info.num_params,
            buffers=0 if info.is_recursive else count_buffers(modules[info.layer_id], recurse=False),
        )
        for info in stats.summary_list
        if info.is_leaf_layer and info.executed
    )
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    return ModelSummary(
        model=name or type(model).__name__,
        input_shape=(batch_size, *input_shape),
        layers=layers,
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        param_size_mb=sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
        mult_adds=stats.total_mult_adds,
        buffers=count_buffers(model),
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
                description=spec.description,
            )
        )
    return rows
