"""Pictures of what a network computes (a cnnzoo.viz.inspection.Inspection): the first layer's
filters, one image's feature maps at a layer, and each image with its top classes, its Grad-CAM
overlay and its saliency map. Built on matplotlib's Figure directly, like cnnzoo.viz.plots."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from cnnzoo.errors import CnnzooError
from cnnzoo.viz.notebook import escape, figure_png, fragment, img_tag

KINDS = ("overview", "filters", "feature_maps", "all")
MAX_MAPS = 32  # the first channels of a wide layer: beyond that the panels get too small to read
MAX_FILTERS = 64


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _panels(fig: Figure, arrays: list[np.ndarray], titles: list[str], cmap: str, symmetric: bool) -> None:
    ncols = min(8, max(1, len(arrays)))
    nrows = math.ceil(len(arrays) / ncols)
    for k, (array, title) in enumerate(zip(arrays, titles)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        limit = float(np.abs(array).max()) or 1.0
        # Filters are signed: one symmetric scale per panel shows which pixels excite and which inhibit.
        ax.imshow(array, cmap=cmap, vmin=-limit if symmetric else None, vmax=limit if symmetric else None,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
        _blank(ax)


def _filters_size(filters: np.ndarray) -> tuple[float, float]:
    count = min(MAX_FILTERS, filters.shape[0] * filters.shape[1])
    return 1.1 * min(8, count), 1.1 * math.ceil(count / 8) + 0.6


def draw_filters(fig, filters: np.ndarray, layer: str) -> None:
    """The first convolution's kernels into `fig` (a Figure or SubFigure), one panel per (output,
    input) channel pair, red positive, blue negative."""
    out_channels, in_channels = filters.shape[:2]
    pairs = [(o, i) for o in range(out_channels) for i in range(in_channels)][:MAX_FILTERS]
    shown = "" if len(pairs) == out_channels * in_channels else f", the first {len(pairs)}"
    fig.suptitle(f"Filters of {layer} ({out_channels}×{in_channels}×{filters.shape[2]}×{filters.shape[3]}{shown})",
                 fontsize=10, fontweight="bold")
    titles = [f"{o}" if in_channels == 1 else f"{o}/{i}" for o, i in pairs]
    _panels(fig, [filters[o, i] for o, i in pairs], titles, "bwr", symmetric=True)


def filters_figure(filters: np.ndarray, layer: str) -> Figure:
    fig = Figure(figsize=_filters_size(filters), layout="constrained")
    draw_filters(fig, filters, layer)
    return fig


def _maps_size(maps: np.ndarray) -> tuple[float, float]:
    count = min(MAX_MAPS, len(maps))
    return 1.2 * min(8, count), 1.2 * math.ceil(count / 8) + 0.6


def draw_feature_maps(fig, maps: np.ndarray, layer: str, title: str = "") -> None:
    """One image's maps (C, H, W) at `layer` into `fig`: the first MAX_MAPS channels, each on its own scale."""
    shown = maps[:MAX_MAPS]
    more = "" if len(shown) == len(maps) else f", the first {len(shown)} of {len(maps)}"
    fig.suptitle(f"Feature maps of {layer} ({maps.shape[1]}×{maps.shape[2]}{more}){title}", fontsize=10,
                 fontweight="bold")
    _panels(fig, list(shown), [str(c) for c in range(len(shown))], "viridis", symmetric=False)


def feature_maps_figure(maps: np.ndarray, layer: str, title: str = "") -> Figure:
    fig = Figure(figsize=_maps_size(maps), layout="constrained")
    draw_feature_maps(fig, maps, layer, title)
    return fig


def _title(inspection, n: int) -> str:
    predicted = int(inspection.predicted[n])
    text = f"{inspection.classes[predicted]} {100 * inspection.probabilities[n, predicted]:.0f}%"
    if inspection.labels is not None:
        text += f" (true: {inspection.classes[int(inspection.labels[n])]})"
    return text


def overlay(ax, image: np.ndarray, heat: np.ndarray) -> None:
    """`heat` (any size) stretched over the 28×28 `image`, translucent, so the object shows through."""
    height, width = image.shape
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest", extent=(0, width, height, 0))
    if heat.max() > 0:  # an all-zero map (no map argues for the class) would tint everything one blue
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=float(heat.max()), interpolation="bilinear",
                  extent=(0, width, height, 0))
    _blank(ax)


def gradcam_title(inspection, n: int) -> str:
    target = inspection.classes[int(inspection.targets[n])]
    # Grad-CAM keeps only positive evidence; a confident class may have none at a late layer.
    return f"Grad-CAM: {target}" + ("" if inspection.gradcam[n].max() > 0 else " (zero everywhere)")


def _overview_size(inspection) -> tuple[float, float]:
    return 9.5, 2.2 * len(inspection.images) + 0.5


def draw_overview(fig, inspection, k: int = 3) -> None:
    """A row per image into `fig`: the input as the model sees it, Grad-CAM over it, saliency, the top-k classes."""
    count = len(inspection.images)
    fig.suptitle(f"What the network looked at (Grad-CAM at {inspection.gradcam_layer})", fontsize=11, fontweight="bold")
    for n, ranked in enumerate(inspection.top_k(k)):
        wrong = inspection.labels is not None and int(inspection.labels[n]) != int(inspection.predicted[n])
        ax = fig.add_subplot(count, 4, 4 * n + 1)
        ax.imshow(inspection.images[n], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(_title(inspection, n), fontsize=8, color="#b00020" if wrong else "black")
        _blank(ax)
        target = inspection.classes[int(inspection.targets[n])]
        ax = fig.add_subplot(count, 4, 4 * n + 2)
        overlay(ax, inspection.images[n], inspection.gradcam[n])
        ax.set_title(gradcam_title(inspection, n), fontsize=8)
        ax = fig.add_subplot(count, 4, 4 * n + 3)
        ax.imshow(inspection.saliency[n], cmap="hot", interpolation="nearest")
        ax.set_title(f"saliency: {target}", fontsize=8)
        _blank(ax)
        ax = fig.add_subplot(count, 4, 4 * n + 4)
        ax.barh([name for name, _ in ranked][::-1], [100 * p for _, p in ranked][::-1], color="#1f77b4")
        ax.set_xlim(0, 100)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("probability (%)", fontsize=7)


def overview_figure(inspection, k: int = 3) -> Figure:
    fig = Figure(figsize=_overview_size(inspection), layout="constrained")
    draw_overview(fig, inspection, k)
    return fig


def inspection_figure(inspection, kind: str = "overview", layer: str | None = None, index: int = 0):
    """`Inspection.plot`: one Figure, or for kind "all" the list [overview, filters, feature maps]."""
    if kind not in KINDS:
        raise CnnzooError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    if kind == "overview":
        return overview_figure(inspection)
    if kind == "filters":
        return filters_figure(inspection.filters, inspection.filter_layer)
    if kind == "feature_maps":
        return feature_maps_figure(*_maps_of(inspection, layer, index))
    return [overview_figure(inspection), filters_figure(inspection.filters, inspection.filter_layer),
            feature_maps_figure(*_maps_of(inspection, layer, index))]


def _maps_of(inspection, layer: str | None, index: int = 0) -> tuple[np.ndarray, str, str]:
    """The feature maps of image `index` at `layer` (default: the first convolution's output), its
    name and a title suffix."""
    layer = layer or inspection.filter_layer
    if layer not in inspection.activations:
        raise CnnzooError(f"no layer named {layer!r} made maps; pick one of {', '.join(inspection.feature_layers())}.")
    maps = inspection.activations[layer]
    if maps.ndim != 4:
        raise CnnzooError(f"layer {layer!r} makes a flat vector, not maps; pick one of "
                          f"{', '.join(inspection.feature_layers())}.")
    if not 0 <= index < len(maps):
        raise CnnzooError(f"image index {index} is out of range; the inspection holds {len(maps)} images.")
    return maps[index], layer, f", image {index}"


def combined_figure(inspection, layer: str | None = None) -> Figure:
    """One Figure holding the overview, the filters and the first image's feature maps: what
    `cnnzoo inspect -o FILE.png` writes."""
    maps = _maps_of(inspection, layer)
    sizes = [_overview_size(inspection), _filters_size(inspection.filters), _maps_size(maps[0])]
    fig = Figure(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes)), layout="constrained")
    overview, filters, feature_maps = fig.subfigures(3, 1, height_ratios=[h for _, h in sizes])
    draw_overview(overview, inspection)
    draw_filters(filters, inspection.filters, inspection.filter_layer)
    draw_feature_maps(feature_maps, *maps)
    return fig


def inspection_html(inspection) -> str:
    """The notebook display: the top classes as text, then the overview, the filters and the first image's maps."""
    lines = "".join(f"<li>{escape(source or f'image {n}')}: "
                    + ", ".join(f"{escape(name)} {100 * p:.1f}%" for name, p in ranked) + "</li>"
                    for n, (source, ranked) in enumerate(zip(inspection.sources or [""] * len(inspection.images),
                                                             inspection.top_k(3))))
    figures = [("overview", overview_figure(inspection)),
               ("filters", filters_figure(inspection.filters, inspection.filter_layer)),
               ("feature maps", feature_maps_figure(*_maps_of(inspection, None)))]
    return fragment(f"<h4>Inspection</h4><ul>{lines}</ul>"
                    + "".join(img_tag(figure_png(fig), alt) for alt, fig in figures))
