"""Pictures of models and runs: training curves, confusion matrices, architecture diagrams and
a self-contained HTML report. Nothing here trains; it reads models and run directories."""

from cnnzoo.viz.diagram_graph import graph_figure
from cnnzoo.viz.diagram_layered import layered_figure
from cnnzoo.viz.diagrams import draw_model, model_figure
from cnnzoo.viz.plots import (
    accuracy_figure,
    confusion_figure,
    display_sample,
    draw_accuracy,
    draw_loss,
    image_grid_figure,
    loss_figure,
    lr_figure,
    lr_find_figure,
    misclassified_figure,
    plot_run,
    save_figure,
    training_figure,
)
from cnnzoo.viz.report import render_report, write_report
from cnnzoo.viz.notebook import show_figures_inline
from cnnzoo.viz.run_card import RunCard, open_run

show_figures_inline()

__all__ = [
    "accuracy_figure",
    "confusion_figure",
    "display_sample",
    "draw_accuracy",
    "draw_loss",
    "draw_model",
    "graph_figure",
    "image_grid_figure",
    "layered_figure",
    "loss_figure",
    "lr_figure",
    "lr_find_figure",
    "misclassified_figure",
    "model_figure",
    "open_run",
    "plot_run",
    "render_report",
    "RunCard",
    "save_figure",
    "training_figure",
    "write_report",
]
