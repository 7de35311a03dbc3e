"""The graph view: every operation as a box in execution order, skip connections as arcs, deep models in columns."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

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


_BOX_W, _SIDE_W, _BOX_H, _ARC_SPACE, _COL_GAP = 5.4, 4.4, 0.8, 1.0, 1.4
_MAX_ROWS = 26


def _is_chain(nodes: list[Node]) -> bool:
    """Whether each node feeds only the next: no skip connection to draw or to name in the legend."""
    consumers = [0] * len(nodes)
    for node in nodes:
        for i in node.inputs:
            consumers[i] += 1
    return all(node.inputs == [i - 1] for i, node in enumerate(nodes) if i) and max(consumers, default=0) <= 1


def _layout(nodes: list[Node]):
    """Rows for the longest path; other (shortcut) nodes sit in a side lane between the rows of
    the main nodes they leave from and rejoin; columns break only where no edge spans the break."""
    main = longest_path(nodes)
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
    model, input_shape, title = resolve_model(model_or_name, input_shape)
    nodes = trace(model, input_shape, title)
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
    fig.suptitle(figure_title(title, model, input_shape), fontsize=11, fontweight="bold", y=1 - 0.1 / fig_h, va="top")

    arrow = {"arrowstyle": "-|>", "color": "#444444", "lw": 0.8, "shrinkA": 0, "shrinkB": 0, "mutation_scale": 8}
    for i, node in enumerate(nodes):
        x, y, w = position(i)
        ax.add_patch(Rectangle((x, y - _BOX_H / 2), w, _BOX_H, facecolor=shade(CATEGORIES[node.category][1], 1.25),
                               edgecolor="#333333", linewidth=0.6, zorder=3))
        name = "input" if node.category == "input" else node.name
        ax.text(x + 0.15, y + 0.13, name, ha="left", va="center", fontsize=6.5, fontweight="bold", zorder=4)
        ax.text(x + 0.15, y - 0.18, node.label if node.category != "input" else "", ha="left", va="center",
                fontsize=6.5, zorder=4)
        ax.text(x + w - 0.15, y - 0.18, dims(node.shape), ha="right", va="center", fontsize=6.5,
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
    add_legend(fig, {c: CATEGORIES[c][0] for c in present}, skip=not _is_chain(nodes))
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
