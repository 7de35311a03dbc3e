"""Pictures of models and runs: training curves, confusion matrices, architecture diagrams and
a self-contained HTML report. Nothing here trains; it reads models and run directories."""

from cnnzoo.viz.diagrams import draw_model, graph_figure, layered_figure, model_figure
from cnnzoo.viz.plots import (
    accuracy_figure,
    confusion_figure,
    display_sample,
    image_grid_figure,
    loss_figure,
    lr_figure,
    lr_find_figure,
    misclassified_figure,
    plot_run,
    save_figure,
)
from cnnzoo.viz.report import render_report, write_report

__all__ = [
    "accuracy_figure",
    "confusion_figure",
    "display_sample",
    "draw_model",
    "graph_figure",
    "image_grid_figure",
    "layered_figure",
    "loss_figure",
    "lr_figure",
    "lr_find_figure",
    "misclassified_figure",
    "model_figure",
    "plot_run",
    "render_report",
    "save_figure",
    "write_report",
]
