"""Architecture diagrams: a layered (3-D boxes) view and a graph view with skip connections.

Entry: :func:`draw_model` writes a diagram by style (:data:`STYLES`), :func:`model_figure` returns it. The views
live in their own modules (diagram_layered, diagram_graph), over the traced model that diagram_trace owns.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from cnnzoo.errors import CnnzooError
from cnnzoo.viz.diagram_graph import graph_figure
from cnnzoo.viz.diagram_layered import layered_figure
from cnnzoo.viz.plots import image_format, save_figure

STYLES = ("layered", "graph", "visualkeras")  # visualkeras: the Keras twin, drawn by visualkeras (PNG)


def model_figure(model_or_name, style: str = "layered", input_shape=None) -> Figure:
    """The diagram of a registered model (by name) or of an nn.Module with ``input_shape`` (C, H, W).

    Drawn with matplotlib, which is already a dependency and writes PNG, SVG and PDF alike. Why not
    visualtorch 1.4.1: it renders through PIL/aggdraw, so it cannot write SVG or PDF, its dimension labels
    are a small bitmap font unreadable once a VGG is scaled to a sane width, and its box sizes are linear
    (a 4096-wide dense layer dwarfs everything else). Why not torchview: it needs graphviz's ``dot`` binary
    on every machine that draws.
    """
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
