"""The layered view: one 3-D box per shape-changing layer, residual blocks as boxes with their skip arcs."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Polygon, Rectangle

from cnnzoo.errors import CnnzooError
from cnnzoo.viz.diagram_trace import (
    CATEGORIES,
    SKIP_COLOR,
    Node,
    add_legend,
    dims,
    figure_title,
    longest_path,
    resolve_model,
    shade,
    trace,
)


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



def _residual_spans(nodes: list[Node], main: list[int]) -> list[tuple[int, int, list[int]]] | None:
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


def _block_label(members: list[Node]) -> str:
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


def _paths(nodes: list[Node], members: list[int], shortcut: list[int]) -> list[tuple[str, str]]:
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
    model, input_shape, title = resolve_model(model_or_name, input_shape)
    nodes = trace(model, input_shape, title)
    main = longest_path(nodes)
    spans = _residual_spans(nodes, main)
    if spans is None:
        raise CnnzooError(
            f"{title} has skip connections that nest or overlap, which the layered view cannot show; draw it with "
            "style 'graph' (--style graph)."
        )
    block_at = {start + 1: (end, shortcut) for start, end, shortcut in spans}
    # (node giving the box its shape, label, category, folded kinds, skip label or None)
    groups: list[tuple[Node, str, str, list[str], str | None]] = []
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
    bottom_text = max(len(dims(node.shape)) for node, *_ in groups) * 0.062 + 0.2
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
    fig.suptitle(figure_title(title, model, input_shape), fontsize=11, fontweight="bold", y=1 - 0.1 / fig_h, va="top")

    legend: dict[str, list[str]] = {}
    for k, ((node, label, category, folded, _), (x0, t, h, d)) in enumerate(zip(groups, boxes)):
        color = CATEGORIES[category][1]
        y0, y1 = -h / 2, h / 2
        if k in parallel:
            _draw_paths(ax, parallel[k], (x0, t, h, d), zorder=3 + 2 * k)
            legend.setdefault(category, [])
            ax.text(x0 + (t + d) / 2, top_u + 0.15 / inch, label, rotation=90, ha="center", va="bottom", fontsize=7.5)
            ax.text(x0 + t / 2, -bottom_u - 0.12 / inch, dims(node.shape), rotation=90, ha="center", va="top",
                    fontsize=7.5, color="#333333")
            if k + 1 < len(boxes):
                ax.annotate("", xy=(boxes[k + 1][0], 0), xytext=(x0 + t + d, 0),
                            arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0})
            continue
        ax.add_patch(Rectangle((x0, y0), t, h, facecolor=color, edgecolor="#333333", linewidth=0.6, zorder=3 + 2 * k))
        ax.add_patch(Polygon([(x0, y1), (x0 + d, y1 + d), (x0 + t + d, y1 + d), (x0 + t, y1)],
                             facecolor=shade(color, 1.35), edgecolor="#333333", linewidth=0.6, zorder=3 + 2 * k))
        ax.add_patch(Polygon([(x0 + t, y0), (x0 + t + d, y0 + d), (x0 + t + d, y1 + d), (x0 + t, y1)],
                             facecolor=shade(color, 0.75), edgecolor="#333333", linewidth=0.6, zorder=3 + 2 * k))
        if k + 1 < len(boxes):
            ax.annotate("", xy=(boxes[k + 1][0], 0), xytext=(x0 + t, 0),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0}, zorder=2 + 2 * k)
        ax.text(x0 + (t + d) / 2, top_u + 0.15 / inch, label, rotation=90, ha="center", va="bottom", fontsize=7.5)
        ax.text(x0 + t / 2, -bottom_u - 0.12 / inch, dims(node.shape), rotation=90, ha="center", va="top",
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
    add_legend(fig, {c: CATEGORIES[c][0] + (f" → {', '.join(f)}" if f else "") for c, f in legend.items()},
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
        ax.add_patch(Rectangle((x0 + fan, y), t - fan, bar_h, facecolor=shade(CATEGORIES[category][1], 1.2),
                               edgecolor="#333333", linewidth=0.5, zorder=zorder))
        ax.text(x0 + fan + (t - fan) / 2, y + bar_h / 2, text, ha="center", va="center", fontsize=5.5, zorder=zorder + 1)
        ax.plot([x0, x0 + fan], [0, y + bar_h / 2], color="#555555", lw=0.6, zorder=zorder)
        ax.plot([x0 + t, x0 + t + d], [y + bar_h / 2, 0], color=CATEGORIES["merge"][1], lw=0.8, zorder=zorder)
    ax.plot([x0 + t + d], [0], marker="o", markersize=3, color=CATEGORIES["merge"][1], zorder=zorder + 1)

