"""The model a diagram draws, traced, and what both views (layered, graph) share: colours, title, legend.

Shapes come from ``torch.fx``: the model is traced (modules without children are kept as one
node each, so hand-written layers such as cnnzoo.nn's batch norm stay one box) and
``ShapeProp`` runs one zero image through it in eval mode.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from cnnzoo.errors import CnnzooError

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
CATEGORIES = {
    "input": ("Input", "#BBBBBB"),
    "conv": ("Convolution", "#56B4E9"),
    "pool": ("Pooling", "#E69F00"),
    "dense": ("Dense (Linear)", "#009E73"),
    "norm": ("Batch norm", "#F0E442"),
    "activation": ("Activation", "#CC79A7"),
    "dropout": ("Dropout", "#DDDDDD"),
    "reshape": ("Flatten / reshape", "#0072B2"),
    "merge": ("Add / concat", "#D55E00"),
    "block": ("Residual block", "#8FBFE0"),
    "dense_layer": ("Dense layer (its input, concatenated with its output)", "#B5D9EE"),
    "branches": ("Parallel paths, concatenated (Inception)", "#F5D28C"),
    "other": ("Other", "#999999"),
}
SKIP_COLOR = "#D55E00"  # every skip connection's colour, its arrows and its legend entry alike
_MERGE_FUNCS = {"add", "iadd", "sub", "mul", "cat", "concat", "stack"}
_RESHAPE_FUNCS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose", "contiguous"}
_POOL_FUNCS = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"}
_ACTIVATION_FUNCS = {"relu", "relu_", "sigmoid", "tanh", "gelu", "silu", "softmax", "log_softmax", "leaky_relu", "elu"}


@dataclass
class Node:
    name: str
    kind: str  # class or function name, e.g. "Conv2d", "add"
    label: str  # kind plus the hyper-parameters worth seeing, e.g. "Conv2d 5×5 /2"
    category: str
    shape: tuple[int, ...]  # without the batch dimension
    inputs: list[int] = field(default_factory=list)


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # fx would otherwise trace into hand-written layers and draw their arithmetic.
        return next(m.children(), None) is None or super().is_leaf_module(m, module_qualified_name)


def dims(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _describe_module(module: nn.Module) -> tuple[str, str, str]:
    kind = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return kind, f"{kind} {k[0]}×{k[1]}" + (f" /{s[0]}" if max(s) > 1 else ""), "conv"
    if isinstance(module, nn.Linear):
        return kind, kind, "dense"
    if "Pool" in kind:
        if hasattr(module, "kernel_size"):
            k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            return kind, f"{kind} {k[0]}×{k[1]}" + (f" /{s[0]}" if max(s) > 1 else ""), "pool"
        return kind, kind, "pool"
    if "Norm" in kind:
        return kind, kind, "norm"
    if "Dropout" in kind:
        return kind, f"{kind} {module.p:g}" if hasattr(module, "p") else kind, "dropout"
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return kind, kind, "reshape"
    if type(module).__module__ == "torch.nn.modules.activation":
        return kind, kind, "activation"
    return kind, kind, "other"


def _describe_function(target) -> tuple[str, str, str]:
    kind = getattr(target, "__name__", str(target)).strip("_")
    if kind in _MERGE_FUNCS or target in (operator.add, operator.iadd, torch.add, torch.cat):
        return kind, kind, "merge"
    for names, category in ((_RESHAPE_FUNCS, "reshape"), (_POOL_FUNCS, "pool"), (_ACTIVATION_FUNCS, "activation")):
        if kind in names:
            return kind, kind, category
    return kind, kind, "other"


def trace(model: nn.Module, input_shape: tuple[int, ...], title: str) -> list[Node]:
    """The model's tensor-valued operations in execution order, with output shapes and inputs."""
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32)
    # Eval mode before tracing: batch norm on one image fails in training mode, and branches on
    # self.training are frozen in at trace time.
    model.eval()
    try:
        tracer = _LeafTracer()
        try:
            graph = tracer.trace(model)
        except Exception as exc:
            raise CnnzooError(f"Cannot trace {title} to draw it ({exc}); only fx-traceable models can be drawn.") from exc
        gm = fx.GraphModule(tracer.root, graph)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(x)
        except Exception as exc:
            raise CnnzooError(f"{title} cannot take an input of shape {dims(input_shape)}: {exc}") from exc
    finally:
        for module, training in modes.items():
            module.train(training)

    nodes: list[Node] = []
    # fx node -> indices of the drawn nodes it stands for; non-tensor nodes (x.size(0), ...)
    # stand for their own inputs so edges pass through them.
    producers: dict[fx.Node, list[int]] = {}
    for n in gm.graph.nodes:
        inputs = sorted({i for a in n.all_input_nodes for i in producers.get(a, [])})
        meta = n.meta.get("tensor_meta")
        if n.op == "output" or not isinstance(meta, TensorMetadata):
            producers[n] = inputs
            continue
        if n.op == "placeholder":
            kind, label, category = "input", "input", "input"
        elif n.op == "call_module":
            kind, label, category = _describe_module(gm.get_submodule(n.target))
        else:
            kind, label, category = _describe_function(n.target)
        name = n.target if n.op == "call_module" else n.name
        nodes.append(Node(name, kind, label, category, tuple(meta.shape[1:]), inputs))
        producers[n] = [len(nodes) - 1]
    return nodes


def resolve_model(model_or_name, input_shape) -> tuple[nn.Module, tuple[int, ...], str]:
    if isinstance(model_or_name, str):
        from cnnzoo.models import build_model, get_model_spec

        shape = tuple(input_shape or get_model_spec(model_or_name).input_shape)
        # Only shapes are needed: on the meta device even VGG-16 builds without allocating weights.
        # Built for the input drawn: the dense head's width depends on it.
        with torch.device("meta"):
            model = build_model(model_or_name, in_channels=shape[0], input_size=tuple(shape[1:]))
        return model, shape, model_or_name
    if not isinstance(model_or_name, nn.Module):
        raise CnnzooError(f"Cannot draw a {type(model_or_name).__name__}; pass a model name or an nn.Module.")
    if input_shape is None:
        raise CnnzooError("Drawing an nn.Module needs its input shape; pass input_shape=(C, H, W).")
    return model_or_name, tuple(input_shape), type(model_or_name).__name__


def figure_title(title: str, model: nn.Module, input_shape: tuple[int, ...]) -> str:
    params = sum(p.numel() for p in model.parameters())
    return f"{title}: input {dims(input_shape)}, {params:,} parameters"


def add_legend(fig: Figure, categories: dict[str, str], skip: bool = False) -> None:
    handles = [Patch(facecolor=CATEGORIES[c][1], edgecolor="#333333", label=label) for c, label in categories.items()]
    if skip:
        handles.append(Line2D([], [], color=SKIP_COLOR, lw=1.2, label="skip connection / shortcut"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)


def shade(color: str, factor: float) -> tuple[float, float, float]:
    """``color`` ("#RRGGBB") lightened towards white (factor > 1) or darkened (factor < 1)."""
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    if factor >= 1:
        return tuple(v + (1 - v) * (factor - 1) for v in (r, g, b))
    return (r * factor, g * factor, b * factor)


def longest_path(nodes: list[Node]) -> list[int]:
    """The main path both views lay out along; nodes off it are shortcuts."""
    length = [0] * len(nodes)
    best_input = [-1] * len(nodes)
    for i, node in enumerate(nodes):
        for j in node.inputs:
            if length[j] + 1 > length[i]:
                length[i], best_input[i] = length[j] + 1, j
    path, i = [], len(nodes) - 1
    while i >= 0:
        path.append(i)
        i = best_input[i]
    return path[::-1]
