"""Architecture diagrams: a layered (3-D boxes) view and a graph view with skip connections.

Both are drawn here with matplotlib rather than with visualtorch or torchview+graphviz:
visualtorch 1.4.1 renders through PIL/aggdraw, so it cannot write SVG or PDF, its dimension
labels are a small bitmap font that is unreadable once a VGG is scaled to a sane width, and
its box sizes are linear (a 4096-wide dense layer dwarfs everything else); torchview needs
graphviz's ``dot`` binary on every machine that draws. Matplotlib is already a dependency and
writes PNG, SVG and PDF alike.

Shapes come from ``torch.fx``: the model is traced (modules without children are kept as one
node each, so hand-written layers such as cnnzoo.nn's batch norm stay one box) and
``ShapeProp`` runs one zero image through it in eval mode.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch, Polygon, Rectangle
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from cnnzoo.errors import CnnzooError
from cnnzoo.viz.plots import image_format, save_figure

STYLES = ("layered", "graph", "visualkeras")  # visualkeras: the Keras twin, drawn by visualkeras (PNG)

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
class _Node:
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


def _dims(shape: tuple[int, ...]) -> str:
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


def _trace(model: nn.Module, input_shape: tuple[int, ...], title: str) -> list[_Node]:
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
            raise CnnzooError(f"{title} cannot take an input of shape {_dims(input_shape)}: {exc}") from exc
    finally:
        for module, training in modes.items():
            module.train(training)

    nodes: list[_Node] = []
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
        nodes.append(_Node(name, kind, label, category, tuple(meta.shape[1:]), inputs))
        producers[n] = [len(nodes) - 1]
    return nodes


def _resolve(model_or_name, input_shape) -> tuple[nn.Module, tuple[int, ...], str]:
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


def _title(title: str, model: nn.Module, input_shape: tuple[int, ...]) -> str:
    params = sum(p.numel() for p in model.parameters())
    return f"{title}: input {_dims(input_shape)}, {params:,} parameters"


def _legend(fig: Figure, categories: dict[str, str], skip: bool = False) -> None:
    handles = [Patch(facecolor=CATEGORIES[c][1], edgecolor="#333333", label=label) for c, label in categories.items()]
    if skip:
        handles.append(Line2D([], [], color=SKIP_COLOR, lw=1.2, label="skip connection / shortcut"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)


# ---- layered view -------------------------------------------------------------------------

def _spatial(s: int) -> float:
    """Drawn height of a spatial extent: log-scaled so 28 px and 224 px inputs both fit."""
    return 1.2 * (1 + math.log2(max(s, 1)))


def _box_size(shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(thickness along the flow ∝ log channels, height ∝ log H, oblique depth ∝ log W)."""
    if len(shape) >= 3:
        c, h, w = shape[0], shape[1], math.prod(shape[2:])
        return 0.3 * (1 + math.log2(max(c, 1))), _spatial(h), 0.25 * _spatial(w)
    if len(shape) == 2:
        return 0.3 * (1 + math.log2(max(shape[0], 1))), _spatial(shape[1]), 0.3
    return 0.45, 0.8 * (1 + math.log2(max(math.prod(shape), 1))), 0.3


def _shade(color: str, factor: float) -> tuple[float, float, float]:
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    if factor >= 1:
        return tuple(v + (1 - v) * (factor - 1) for v in (r, g, b))
    return (r * factor, g * factor, b * factor)


def _is_chain(nodes: list[_Node]) -> bool:
    consumers = [0] * len(nodes)
    for node in nodes:
        for i in node.inputs:
            consumers[i] += 1
    return all(node.inputs == [i - 1] for i, node in enumerate(nodes) if i) and max(consumers, default=0) <= 1


def _residual_spans(nodes: list[_Node], main: list[int]) -> list[tuple[int, int, list[int]]] | None:
    """The skip connections of a model that is a chain apart from them, as (row the skip leaves
    from, row it rejoins at, the shortcut's own nodes) along the main path; None when the branches
    nest or overlap, which boxes in a row cannot show."""
    row = {i: r for r, i in enumerate(main)}
    spans = []
    for r, i in enumerate(main):
        for j in nodes[i].inputs:
            if row.get(j) == r - 1:
                continue
            shortcut, origins, stack = set(), set(), [j]
            while stack:
                k = stack.pop()
                if k in row:
                    origins.add(row[k])
                elif k not in shortcut:
                    shortcut.add(k)
                    stack.extend(nodes[k].inputs)
            if len(origins) != 1:
                return None
            spans.append((origins.pop(), r, sorted(shortcut)))
    # Several paths between the same two rows (an Inception block's) are one span with all their nodes.
    merged: dict[tuple[int, int], set[int]] = {}
    for start, end, shortcut in spans:
        merged.setdefault((start, end), set()).update(shortcut)
    spans = [(start, end, sorted(shortcut)) for (start, end), shortcut in merged.items()]
    spans.sort()
    if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
        return None
    if set(main) | {k for _, _, shortcut in spans for k in shortcut} != set(range(len(nodes))):
        return None
    return spans


def _block_label(members: list[_Node]) -> str:
    """"layer2.0: conv 3×3 /2 + 3×3": the block's module prefix and its convolutions."""
    paths = [n.name.split(".") for n in members if n.category != "merge"]
    prefix = []
    for parts in zip(*paths):
        if len(set(parts)) > 1:
            break
        prefix.append(parts[0])
    kernels = [n.label.split(" ", 1)[1] for n in members if n.category == "conv" and " " in n.label]
    body = "conv " + " + ".join(kernels) if kernels else " → ".join(n.kind for n in members)
    return f"{'.'.join(prefix) or 'block'}: {body}"


def _paths(nodes: list[_Node], members: list[int], shortcut: list[int]) -> list[tuple[str, str]]:
    """The parallel paths of a block that ends in a concatenation, in module order, each as (its layers, e.g.
    "1×1 → 5×5" or "pool 3×3 → 1×1", the category of its first layer); ``members`` are the main path's."""
    groups: dict[int, list[int]] = {}  # a path's first node -> its nodes, along the input edges
    owner: dict[int, int] = {}
    for i in sorted(members + shortcut):
        parent = next((j for j in nodes[i].inputs if j in owner), None)
        owner[i] = i if parent is None else owner[parent]
        groups.setdefault(owner[i], []).append(i)
    paths = []
    for path in sorted(groups.values(), key=lambda path: nodes[path[0]].name):
        shaping = [nodes[i] for i in path if nodes[i].category in ("conv", "pool")]
        steps = [("pool " if n.category == "pool" else "") + (n.label.split(" ", 1)[1] if " " in n.label else n.kind)
                 for n in shaping]
        paths.append((" → ".join(steps) or "identity", shaping[0].category if shaping else "other"))
    return paths


def layered_figure(model_or_name, input_shape=None) -> Figure:
    """One 3-D box per shape-changing layer (convolutions, pooling, dense, flatten); the
    activations, batch norm and dropout that follow a layer are folded into its box and named
    in the legend. A residual model is drawn as a teacher sketches it: one box per residual
    block, with its skip connection as an arc over the box (labelled with the shortcut's
    convolution where it has one). A dense layer (DenseNet) is such a box too, its arc labelled
    "concat"; an Inception block is drawn as its parallel paths, stacked, fanning out of the
    previous box and into their concatenation."""
    model, input_shape, title = _resolve(model_or_name, input_shape)
    nodes = _trace(model, input_shape, title)
    main = _longest_path(nodes)
    spans = _residual_spans(nodes, main)
    if spans is None:
        raise CnnzooError(
            f"{title} has skip connections that nest or overlap, which the layered view cannot show; draw it with "
            "style 'graph' (--style graph)."
        )
    block_at = {start + 1: (end, shortcut) for start, end, shortcut in spans}
    # (node giving the box its shape, label, category, folded kinds, skip label or None)
    groups: list[tuple[_Node, str, str, list[str], str | None]] = []
    parallel: dict[int, list[tuple[str, str]]] = {}  # group index -> its paths, for blocks drawn as parallel paths
    r = 0
    while r < len(main):
        node = nodes[main[r]]
        if r in block_at:
            end, shortcut = block_at[r]
            members = [nodes[main[k]] for k in range(r, end + 1)]
            kinds = list(dict.fromkeys(n.kind for n in members))
            if nodes[main[end]].kind == "cat" and shortcut:
                parallel[len(groups)] = _paths(nodes, [main[k] for k in range(r, end)], shortcut)
                prefix = _block_label(members + [nodes[k] for k in shortcut]).split(":")[0]  # every path's module
                label = f"{prefix}: {len(parallel[len(groups)])} paths, concat"
                groups.append((nodes[main[end]], label, "branches", kinds, None))
                r = end + 1
                continue
            convs = [nodes[k].label.split(" ", 1) for k in shortcut if nodes[k].category == "conv"]
            concat = nodes[main[end]].kind == "cat"
            skip = ", ".join(f"conv {kernel}" for _, kernel in convs) if convs else "concat" if concat else "identity"
            groups.append((nodes[main[end]], _block_label(members), "dense_layer" if concat else "block", kinds, skip))
            r = end + 1
            continue
        if groups and node.shape == groups[-1][0].shape and node.category not in ("conv", "dense", "pool", "input"):
            if node.kind not in groups[-1][3]:
                groups[-1][3].append(node.kind)
        else:
            groups.append((node, node.label, node.category, [], None))
        r += 1

    boxes = []
    x = 0.0
    for k, (node, *_) in enumerate(groups):
        t, h, d = _box_size(node.shape)
        if k in parallel:  # room for each path's layers written across its bar
            t = max(2 * t, 4.5)
        boxes.append((x, t, h, d))
        x += t + d + 0.7
    width_u = x - 0.7
    top_u = max(h / 2 + d for _, _, h, d in boxes)
    arcs = [(k, skip) for k, (*_, skip) in enumerate(groups) if skip is not None]
    arc_rise = 0.35 * max((boxes[k][0] + boxes[k][1] - boxes[k - 1][0] - boxes[k - 1][1] for k, _ in arcs), default=0)
    arc_base = top_u + 0.3
    if arcs:  # room for the arcs and their labels above the boxes
        top_u = arc_base + arc_rise + 1.2
    bottom_u = max(h / 2 for _, _, h, _ in boxes)
    inch = min(0.35, 14.0 / width_u)  # inches per drawing unit: wide models are scaled down
    top_text = max(len(label) for _, label, *_ in groups) * 0.062 + 0.2  # inches of rotated label
    bottom_text = max(len(_dims(node.shape)) for node, *_ in groups) * 0.062 + 0.2
    legend_h, title_h = 0.75, 0.45
    fig_w = width_u * inch + 0.6
    axes_h = (top_u + bottom_u) * inch + top_text + bottom_text
    fig_h = axes_h + legend_h + title_h
    fig = Figure(figsize=(max(fig_w, 6.0), fig_h))
    ax = fig.add_axes((0, legend_h / fig_h, 1, axes_h / fig_h))
    ax.set_axis_off()
    pad_x = (max(fig_w, 6.0) - width_u * inch) / 2 / inch
    ax.set_xlim(-pad_x, width_u + pad_x)
    ax.set_ylim(-bottom_u - bottom_text / inch, top_u + top_text / inch)
    fig.suptitle(_title(title, model, input_shape), fontsize=11, fontweight="bold", y=1 - 0.1 / fig_h, va="top")

    legend: dict[str, list[str]] = {}
    for k, ((node, label, category, folded, _), (x0, t, h, d)) in enumerate(zip(groups, boxes)):
        color = CATEGORIES[category][1]
        y0, y1 = -h / 2, h / 2
        if k in parallel:
            _draw_paths(ax, parallel[k], (x0, t, h, d), zorder=3 + 2 * k)
            legend.setdefault(category, [])
            ax.text(x0 + (t + d) / 2, top_u + 0.15 / inch, label, rotation=90, ha="center", va="bottom", fontsize=7.5)
            ax.text(x0 + t / 2, -bottom_u - 0.12 / inch, _dims(node.shape), rotation=90, ha="center", va="top",
                    fontsize=7.5, color="#333333")
            if k + 1 < len(boxes):
                ax.annotate("", xy=(boxes[k + 1][0], 0), xytext=(x0 + t + d, 0),
                            arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0})
            continue
        ax.add_patch(Rectangle((x0, y0), t, h, facecolor=color, edgecolor="#333333", linewidth=0.6, zorder=3 + 2 * k))
        ax.add_patch(Polygon([(x0, y1), (x0 + d, y1 + d), (x0 + t + d, y1 + d), (x0 + t, y1)],
                             facecolor=_shade(color, 1.35), edgecolor="#333333", linewidth=0.6, zorder=3 + 2 * k))
        ax.add_patch(Polygon([(x0 + t, y0), (x0 + t + d, y0 + d), (x0 + t + d, y1 + d), (x0 + t, y1)],
                             facecolor=_shade(color, 0.75), edgecolor="#333333", linewidth=0.6, zorder=3 + 2 * k))
        if k + 1 < len(boxes):
            ax.annotate("", xy=(boxes[k + 1][0], 0), xytext=(x0 + t, 0),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0}, zorder=2 + 2 * k)
        ax.text(x0 + (t + d) / 2, top_u + 0.15 / inch, label, rotation=90, ha="center", va="bottom", fontsize=7.5)
        ax.text(x0 + t / 2, -bottom_u - 0.12 / inch, _dims(node.shape), rotation=90, ha="center", va="top",
                fontsize=7.5, color="#333333")
        seen = legend.setdefault(category, [])
        seen.extend(kind for kind in folded if kind not in seen)
    for k, skip in arcs:  # from the previous box's output, over the block, into the block's output
        start, end = boxes[k - 1][0] + boxes[k - 1][1], boxes[k][0] + boxes[k][1]
        rise = 0.35 * (end - start)
        ax.add_patch(FancyArrowPatch((start, arc_base), (end, arc_base), color=SKIP_COLOR, lw=1.2,
                                     arrowstyle="-|>", mutation_scale=8, zorder=2 * len(boxes) + 4,
                                     connectionstyle=f"arc3,rad={-2 * rise / (end - start):.3f}"))
        for x_end in (start, end):  # where the skip leaves and rejoins the flow
            ax.plot([x_end, x_end], [0, arc_base], color=SKIP_COLOR, lw=0.8, linestyle=":", zorder=1)
        ax.text((start + end) / 2, arc_base + rise + 0.15, skip, ha="center", va="bottom", fontsize=6.5,
                color=SKIP_COLOR, rotation=90 if len(skip) > 14 else 0, zorder=2 * len(boxes) + 4)
    _legend(fig, {c: CATEGORIES[c][0] + (f" → {', '.join(f)}" if f else "") for c, f in legend.items()},
            skip=bool(arcs))
    return fig


def _draw_paths(ax, paths: list[tuple[str, str]], box: tuple[float, float, float, float], zorder: int) -> None:
    """An Inception block in the box's place: one flat bar per path, stacked, each naming its layers, with
    lines fanning out of the block's input (the box's left edge) and into the concatenation (its right)."""
    x0, t, h, d = box
    gap = 0.12 * h / len(paths)
    bar_h = (h - gap * (len(paths) - 1)) / len(paths)
    fan = 0.2 * t
    for i, (text, category) in enumerate(paths):
        y = h / 2 - (i + 1) * bar_h - i * gap
        ax.add_patch(Rectangle((x0 + fan, y), t - fan, bar_h, facecolor=_shade(CATEGORIES[category][1], 1.2),
                               edgecolor="#333333", linewidth=0.5, zorder=zorder))
        ax.text(x0 + fan + (t - fan) / 2, y + bar_h / 2, text, ha="center", va="center", fontsize=5.5, zorder=zorder + 1)
        ax.plot([x0, x0 + fan], [0, y + bar_h / 2], color="#555555", lw=0.6, zorder=zorder)
        ax.plot([x0 + t, x0 + t + d], [y + bar_h / 2, 0], color=CATEGORIES["merge"][1], lw=0.8, zorder=zorder)
    ax.plot([x0 + t + d], [0], marker="o", markersize=3, color=CATEGORIES["merge"][1], zorder=zorder + 1)


# ---- graph view ---------------------------------------------------------------------------

_BOX_W, _SIDE_W, _BOX_H, _ARC_SPACE, _COL_GAP = 5.4, 4.4, 0.8, 1.0, 1.4
_MAX_ROWS = 26


def _longest_path(nodes: list[_Node]) -> list[int]:
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


def _layout(nodes: list[_Node]):
    """Rows for the longest path; other (shortcut) nodes sit in a side lane between the rows of
    the main nodes they leave from and rejoin; columns break only where no edge spans the break."""
    main = _longest_path(nodes)
    row = {i: r for r, i in enumerate(main)}
    consumers: list[list[int]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for j in node.inputs:
            consumers[j].append(i)
    lo: dict[int, float] = {}
    for i, node in enumerate(nodes):
        if i not in row:
            lo[i] = max((row.get(j, lo.get(j, 0)) for j in node.inputs), default=0)
    hi: dict[int, float] = {}
    for i in reversed(range(len(nodes))):
        if i not in row:
            hi[i] = min((row.get(j, hi.get(j, len(main) - 1)) for j in consumers[i]), default=len(main) - 1)
    side_groups: dict[tuple[float, float], list[int]] = {}
    for i, start in lo.items():
        side_groups.setdefault((start, hi[i]), []).append(i)
    side_row: dict[int, float] = {}
    for (a, b), members in side_groups.items():
        for k, i in enumerate(members):
            side_row[i] = a + (b - a) * (k + 1) / (len(members) + 1)

    blocked = [False] * len(main)  # blocked[r]: no column break between rows r and r + 1
    # spanned[r]: a skip from one main node to another passes there; a break is possible but drawn around
    # the columns, taken only when a long chain of skips (DenseNet's dense blocks) leaves no free row.
    spanned = [False] * len(main)
    for i, node in enumerate(nodes):
        for j in node.inputs:
            a = row.get(j, lo.get(j))
            b = row.get(i, hi.get(i))
            if j in row and i in row and b == a + 1:
                continue
            for r in range(int(a), math.ceil(b)):
                (spanned if j in row and i in row else blocked)[r] = True
    ncols = max(1, math.ceil(len(main) / _MAX_ROWS))
    target = math.ceil(len(main) / ncols)
    column_of_row, col, start = [], 0, 0
    for r in range(len(main)):
        column_of_row.append((col, start))
        rows = r - start + 1
        free = not blocked[r] and (not spanned[r] or rows >= 2 * target)
        if rows >= target and free and r + 1 < len(main):
            col, start = col + 1, r + 1
    return row, side_row, column_of_row


def graph_figure(model_or_name, input_shape=None) -> Figure:
    """Every operation as a box with its output shape, in execution order top to bottom and in
    several columns for deep models; skip connections are drawn as arcs, and shortcut layers
    (e.g. ResNet's strided 1×1 convs) in a lane beside the main path."""
    model, input_shape, title = _resolve(model_or_name, input_shape)
    nodes = _trace(model, input_shape, title)
    row, side_row, column_of_row = _layout(nodes)
    has_side = bool(side_row)
    col_w = _BOX_W + _ARC_SPACE + (_SIDE_W + 0.4 if has_side else 0) + _COL_GAP
    ncols = column_of_row[-1][0] + 1
    rows_per_col = max(sum(1 for c, _ in column_of_row if c == k) for k in range(ncols))

    def position(i: int) -> tuple[float, float, float]:
        """(left x, centre y, width) of node i's box."""
        r = row[i] if i in row else side_row[i]
        col, start = column_of_row[int(r)]
        x = col * col_w + (0 if i in row else _BOX_W + _ARC_SPACE)
        return x, -(r - start), _BOX_W if i in row else _SIDE_W

    inch = 0.36
    legend_h, title_h = 0.8, 0.5
    width_u, height_u = ncols * col_w - _COL_GAP + 0.6, rows_per_col + 0.6
    fig_w, axes_h = width_u * inch, height_u * inch
    fig_h = axes_h + legend_h + title_h
    fig = Figure(figsize=(max(fig_w, 6.5), fig_h))
    ax = fig.add_axes((0, legend_h / fig_h, 1, axes_h / fig_h))
    ax.set_axis_off()
    pad_x = (max(fig_w, 6.5) - fig_w) / 2 / inch
    ax.set_xlim(-0.3 - pad_x, width_u - 0.3 + pad_x)
    ax.set_ylim(-(rows_per_col - 1) - 0.8, 0.8)
    fig.suptitle(_title(title, model, input_shape), fontsize=11, fontweight="bold", y=1 - 0.1 / fig_h, va="top")

    arrow = {"arrowstyle": "-|>", "color": "#444444", "lw": 0.8, "shrinkA": 0, "shrinkB": 0, "mutation_scale": 8}
    for i, node in enumerate(nodes):
        x, y, w = position(i)
        ax.add_patch(Rectangle((x, y - _BOX_H / 2), w, _BOX_H, facecolor=_shade(CATEGORIES[node.category][1], 1.25),
                               edgecolor="#333333", linewidth=0.6, zorder=3))
        name = "input" if node.category == "input" else node.name
        ax.text(x + 0.15, y + 0.13, name, ha="left", va="center", fontsize=6.5, fontweight="bold", zorder=4)
        ax.text(x + 0.15, y - 0.18, node.label if node.category != "input" else "", ha="left", va="center",
                fontsize=6.5, zorder=4)
        ax.text(x + w - 0.15, y - 0.18, _dims(node.shape), ha="right", va="center", fontsize=6.5,
                color="#222222", zorder=4)
        for j in node.inputs:
            xj, yj, wj = position(j)
            if j in row and i in row:
                if row[i] == row[j] + 1 and column_of_row[row[i]][0] == column_of_row[row[j]][0]:
                    ax.annotate("", xy=(x + w / 2, y + _BOX_H / 2), xytext=(xj + wj / 2, yj - _BOX_H / 2),
                                arrowprops=arrow)
                elif row[i] == row[j] + 1:
                    _column_jump(ax, (xj + wj / 2, yj - _BOX_H / 2), (x + w / 2, y + _BOX_H / 2), arrow)
                elif column_of_row[row[i]][0] != column_of_row[row[j]][0]:
                    _skip_jump(ax, (xj + wj, yj), (x + w, y), -(rows_per_col - 1) - 0.6, arrow)
                else:
                    bulge = min(_ARC_SPACE * 1.5, 0.9 + 0.1 * (row[i] - row[j]))
                    ax.add_patch(FancyArrowPatch((xj + wj, yj), (x + w, y), color=SKIP_COLOR, lw=1.1,
                                                 arrowstyle="-|>", mutation_scale=8,
                                                 connectionstyle=f"arc3,rad={-2 * bulge / (yj - y):.3f}", zorder=2))
            elif i not in row and j in row:  # leaving the main path: right, then down
                ax.annotate("", xy=(x + w / 2, y + _BOX_H / 2), xytext=(xj + wj, yj),
                            arrowprops=dict(arrow, color=SKIP_COLOR, connectionstyle="angle,angleA=0,angleB=90,rad=0"))
            elif i in row:  # rejoining the main path: down, then left
                ax.annotate("", xy=(x + w, y), xytext=(xj + wj / 2, yj - _BOX_H / 2),
                            arrowprops=dict(arrow, color=SKIP_COLOR, connectionstyle="angle,angleA=-90,angleB=0,rad=0"))
            else:
                ax.annotate("", xy=(x + w / 2, y + _BOX_H / 2), xytext=(xj + wj / 2, yj - _BOX_H / 2),
                            arrowprops=dict(arrow, color=SKIP_COLOR))
    present = dict.fromkeys(node.category for node in nodes)
    _legend(fig, {c: CATEGORIES[c][0] for c in present}, skip=not _is_chain(nodes))
    return fig


def _column_jump(ax, start: tuple[float, float], end: tuple[float, float], arrow: dict) -> None:
    """From the bottom of one column to the top of the next, around both columns' boxes."""
    (x0, y0), (x1, y1) = start, end
    gap_x = x1 - _BOX_W / 2 - _COL_GAP / 2
    low, high = y0 - 0.35, y1 + 0.35
    ax.plot([x0, x0, gap_x, gap_x, x1], [y0, low, low, high, high], color="#444444", lw=0.8, zorder=2)
    ax.annotate("", xy=end, xytext=(x1, high), arrowprops=arrow)


def _skip_jump(ax, start: tuple[float, float], end: tuple[float, float], bottom: float, arrow: dict) -> None:
    """A skip connection into the next column: along the arc lane beside the boxes, under the columns, and
    up the next column's arc lane into the box it rejoins."""
    (x0, y0), (x1, y1) = start, end
    lane = 0.6 * _ARC_SPACE
    ax.plot([x0, x0 + lane, x0 + lane, x1 + lane, x1 + lane], [y0, y0, bottom, bottom, y1], color=SKIP_COLOR,
            lw=1.1, zorder=2)
    ax.annotate("", xy=end, xytext=(x1 + lane, y1), arrowprops=dict(arrow, color=SKIP_COLOR))


def model_figure(model_or_name, style: str = "layered", input_shape=None) -> Figure:
    """The diagram of a registered model (by name) or of an nn.Module with ``input_shape`` (C, H, W)."""
    if style not in STYLES:
        raise CnnzooError(f"Unknown diagram style {style!r}; choose one of: {', '.join(STYLES)}.")
    if style == "visualkeras":
        raise CnnzooError("The visualkeras style is a picture visualkeras draws, not a matplotlib figure; "
                          "write it with draw_model(model, 'name.png', style='visualkeras').")
    return (layered_figure if style == "layered" else graph_figure)(model_or_name, input_shape)


def draw_model(model_or_name, path: str | os.PathLike, style: str = "layered", input_shape=None) -> Path:
    """Write the diagram to ``path``; the extension (.png, .svg, .pdf) picks the format."""
    if style == "visualkeras":
        from cnnzoo.viz.visualkeras import draw_twin  # needs the optional Keras extra

        return draw_twin(model_or_name, path, input_shape)
    image_format(path)  # refuse a bad extension before building a large model
    return save_figure(model_figure(model_or_name, style, input_shape), path)
