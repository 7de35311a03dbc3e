"""Training curves, confusion matrices and image grids as matplotlib Figures.

Every figure is built with ``matplotlib.figure.Figure`` directly instead of pyplot: that
needs no backend at all (nothing is chosen at import, no window can pop up, nothing piles up
in pyplot's figure registry), and a returned Figure still renders inline in Jupyter. Files are
written by matplotlib's Agg/SVG/PDF canvases, chosen from the file extension.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnzoo.atomic import atomic_target
from cnnzoo.errors import CnnzooError

IMAGE_FORMATS = ("png", "svg", "pdf")
SAVE_DPI = 110

_TRAIN = "#1f77b4"
_VAL = "#ff7f0e"
_TEST = "#2ca02c"


def image_format(path: str | os.PathLike) -> str:
    """The image format named by ``path``'s extension, or a CnnzooError for an unsupported one."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise CnnzooError(
            f"Cannot write {str(path)!r}: use a file name ending in one of "
            f"{', '.join('.' + f for f in IMAGE_FORMATS)}."
        )
    return fmt


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = SAVE_DPI, also_intact: str | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically, as PNG, SVG or PDF according to the extension;
    ``also_intact`` is what a full disk leaves intact besides the file (see ``atomic_target``)."""
    fmt = image_format(path)
    with atomic_target(path, also_intact=also_intact) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
    return Path(path)


def _floats(values: Sequence | None) -> np.ndarray | None:
    """Values as a float array, with None and "" as NaN; None when nothing is known at all."""
    if values is None:
        return None
    arr = np.array(
        [math.nan if v is None or v == "" else float(v) for v in np.asarray(values, dtype=object).ravel()],
        dtype=float,
    )
    return None if arr.size == 0 or np.isnan(arr).all() else arr


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=12, fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so the line starts at step 0."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def loss_figure(steps: Sequence, losses: Sequence, steps_per_epoch: int | None = None) -> Figure:
    """Loss per batch (the course plot) with a moving average; a top axis counts epochs."""
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    draw_loss(fig.add_subplot(), steps, losses, steps_per_epoch)
    return fig


def draw_loss(ax, steps: Sequence, losses: Sequence, steps_per_epoch: int | None = None) -> None:
    """The loss-per-batch plot drawn into ``ax`` (for figures that hold more than this plot)."""
    steps = np.asarray(steps, dtype=float)
    losses = np.asarray(losses, dtype=float)
    ax.plot(steps, losses, color=_TRAIN, alpha=0.3, linewidth=0.8, label="loss per batch")
    if len(losses) >= 10:
        window = max(5, len(losses) // 50)
        ax.plot(steps, _smooth(losses, window), color=_TRAIN, linewidth=2, label=f"moving average ({window} batches)")
    _style(ax, "Training loss", "step (batch)", "cross-entropy loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole; short runs got 2.5, 7.5
    if steps_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch))
        top.set_xlabel("epoch")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(losses):
        ax.legend(loc="upper right")


def accuracy_figure(
    epochs: Sequence, train_acc: Sequence, test_acc: Sequence | None = None, val_acc: Sequence | None = None,
    train_label: str = "train",
) -> Figure:
    """Train/validation/test accuracy per epoch, as percentages; the legend gives the last value."""
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    draw_accuracy(fig.add_subplot(), epochs, train_acc, test_acc, val_acc, train_label=train_label)
    return fig


def draw_accuracy(
    ax, epochs: Sequence, train_acc: Sequence, test_acc: Sequence | None = None, val_acc: Sequence | None = None,
    train_label: str = "train",
) -> None:
    """The accuracy-per-epoch plot drawn into ``ax``; `train_label` says which training accuracy it is."""
    epochs = np.asarray(epochs, dtype=float)
    for name, values, color, marker in (
        (train_label, train_acc, _TRAIN, "o"),
        ("validation", val_acc, _VAL, "s"),
        ("test", test_acc, _TEST, "^"),
    ):
        arr = _floats(values)
        if arr is None:
            continue
        known = ~np.isnan(arr)
        last = arr[known][-1]
        ax.plot(epochs[known], arr[known], color=color, marker=marker, markersize=4, linewidth=2,
                label=f"{name} (last {last * 100:.2f}%)")
    _style(ax, "Accuracy per epoch", "epoch", "accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.lines:
        ax.legend(loc="lower right")


def training_figure(batch_loss: Sequence, steps_per_epoch: int | None, epoch_rows: Sequence[dict],
                    epochs_planned: int | None = None, width: float = 12.0) -> Figure:
    """The course's two plots side by side in one figure: loss per batch, accuracy per epoch.

    ``epoch_rows`` are History/metrics.csv rows; ``epochs_planned`` fixes the accuracy axis to the
    whole run, so that a figure redrawn while training keeps its scale instead of jumping."""
    fig = Figure(figsize=(width, width * 0.36), layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    draw_loss(loss_ax, range(len(batch_loss)), batch_loss, steps_per_epoch)
    draw_accuracy(accuracy_ax, [r["epoch"] for r in epoch_rows], [r.get("train_acc") for r in epoch_rows],
                  test_acc=[r.get("test_acc") for r in epoch_rows], val_acc=[r.get("val_acc") for r in epoch_rows])
    if epochs_planned:
        accuracy_ax.set_xlim(0.5, max(epochs_planned, 1) + 0.5)
        if steps_per_epoch:
            loss_ax.set_xlim(0, epochs_planned * steps_per_epoch)
    if not accuracy_ax.lines:
        accuracy_ax.text(0.5, 0.5, "drawn after the first epoch", ha="center", va="center",
                         transform=accuracy_ax.transAxes, color="#5b6475")
    return fig


def lr_figure(steps: Sequence, lrs: Sequence, steps_per_epoch: int | None = None) -> Figure:
    """The learning-rate schedule against epochs: `steps` are batch steps when `steps_per_epoch` is
    given, else epoch numbers. Linear scale: the schedule's shape (warm-up, peak, decay) is what a
    reader looks for, and a log axis gives most of the height to a cosine tail near zero."""
    steps = np.asarray(steps, dtype=float)
    lrs = np.asarray(lrs, dtype=float)
    epochs = steps / steps_per_epoch if steps_per_epoch else steps
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(epochs, lrs, color="#9467bd", linewidth=2)
    _style(ax, "Learning rate", "epoch", "learning rate")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def _confusion_panel(fig: Figure, ax, matrix: np.ndarray, classes: Sequence[str], normalized: bool) -> None:
    n = len(classes)
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalized else max(matrix.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 format=PercentFormatter(xmax=1.0) if normalized else None)
    threshold = (1 if normalized else matrix.max()) / 2
    fontsize = 8 if n <= 10 else max(4, 80 // n)
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            text = f"{value * 100:.0f}" if normalized else f"{int(value)}"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if value > threshold else "black")
    ax.set_xticks(range(n), labels=classes, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n), labels=classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Row-normalized (% of true class)" if normalized else "Counts", fontweight="bold")


def confusion_figure(matrix, classes: Sequence[str], normalize: bool | None = None) -> Figure:
    """Confusion matrix (rows = true class). ``normalize=None`` draws counts and row-normalized
    side by side; ``False`` only counts; ``True`` only the row-normalized matrix."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(classes), len(classes)):
        raise CnnzooError(
            f"The confusion matrix is {matrix.shape} but there are {len(classes)} classes; "
            "pass one row and one column per class."
        )
    rows = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    panels = [(matrix, False), (normalized, True)] if normalize is None else [(normalized if normalize else matrix, bool(normalize))]
    fig = Figure(figsize=(7.2 * len(panels), 6.4), layout="constrained")
    for k, (values, is_normalized) in enumerate(panels):
        _confusion_panel(fig, fig.add_subplot(1, len(panels), k + 1), values, classes, is_normalized)
    fig.suptitle("Confusion matrix", fontsize=13, fontweight="bold")
    return fig


def _as_images(images) -> np.ndarray:
    """(K,1,H,W) or (K,H,W) uint8 tensor/array as a (K,H,W) numpy array."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise CnnzooError(f"Expected grayscale images shaped (K,1,H,W), got {tuple(images.shape)}.")
        images = images[:, 0]
    if images.ndim != 3:
        raise CnnzooError(f"Expected images shaped (K,1,H,W) or (K,H,W), got {tuple(images.shape)}.")
    return images


def _grid(images: np.ndarray, titles: Sequence[str] | None, ncols: int, title: str,
          panel_w: float, title_color: str = "black") -> Figure:
    count = len(images)
    ncols = max(1, min(ncols, count))
    nrows = max(1, math.ceil(count / ncols))
    fig = Figure(figsize=(panel_w * ncols, panel_w * nrows + 0.5), layout="constrained")
    fig.suptitle(title, fontsize=12, fontweight="bold")
    if count == 0:
        fig.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        return fig
    for k in range(count):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(images[k], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=8, color=title_color)
    return fig


def image_grid_figure(images_uint8, labels: Sequence[int] | None, classes: Sequence[str], ncols: int = 8,
                      title: str = "Images") -> Figure:
    """One panel per image, titled with its class name (no titles when ``labels`` is None)."""
    images = _as_images(images_uint8)
    titles = None if labels is None else [str(classes[int(y)]) for y in labels]
    return _grid(images, titles, ncols, title, panel_w=1.3)


def display_sample(labels: Sequence[int], n: int, seed: int | None = None, per_class: bool = False) -> list[int]:
    """Which images to show: the first `n`, or `n` drawn at random with `seed`; with `per_class`,
    `n` of every class (the first or drawn ones), class by class, so each class fills a row."""
    labels = np.asarray(labels)
    order = np.arange(len(labels)) if seed is None else np.random.default_rng(seed).permutation(len(labels))
    if not per_class:
        return order[:n].tolist()
    return [int(i) for k in np.unique(labels) for i in order[labels[order] == k][:n]]


def misclassified_figure(images_uint8, true: Sequence[int], pred: Sequence[int], confidence: Sequence[float],
                         classes: Sequence[str], ncols: int = 6) -> Figure:
    """The given wrong predictions, titled "true → pred (p%)"; pass them most confident first."""
    images = _as_images(images_uint8)
    titles = [f"{classes[int(t)]} → {classes[int(p)]} ({float(c) * 100:.0f}%)"
              for t, p, c in zip(true, pred, confidence, strict=True)]
    return _grid(images, titles, ncols, "Most confident mistakes (true → predicted, confidence)",
                 panel_w=2.0, title_color="#b00020")


def lr_find_figure(lrs: Sequence, losses: Sequence, smoothed: Sequence, suggestion: float, rule: str,
                   min_loss_lr: float | None = None) -> Figure:
    """The learning-rate range test: loss per step against its learning rate (log axis), the
    smoothed curve, the suggested rate and the rate of the lowest loss marked."""
    lrs, losses, smoothed = (np.asarray(v, dtype=float) for v in (lrs, losses, smoothed))
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color=_TRAIN, alpha=0.3, linewidth=0.8, label="loss per step")
    ax.plot(lrs, smoothed, color=_TRAIN, linewidth=2, label="smoothed")
    ax.set_xscale("log")
    at = float(np.interp(np.log10(suggestion), np.log10(lrs), smoothed))
    ax.axvline(suggestion, color="#d62728", linestyle="--", linewidth=1)
    ax.plot([suggestion], [at], "o", color="#d62728", markersize=8, label=f"suggested lr {suggestion:.1e} ({rule})")
    if min_loss_lr is not None:
        low = float(np.interp(np.log10(min_loss_lr), np.log10(lrs), smoothed))
        ax.plot([min_loss_lr], [low], "v", color="#7f7f7f", markersize=7, label=f"lowest loss at lr {min_loss_lr:.1e}")
    # The blow-up at the end would otherwise squash the part of the curve worth reading.
    span = smoothed.max() - smoothed.min()
    ax.set_ylim(min(losses.min(), smoothed.min()) - 0.05 * span, smoothed.max() + 0.1 * span)
    _style(ax, "Learning-rate range test", "learning rate (log scale)", "training loss")
    ax.legend(loc="best")
    return fig


def _column(rows: list[dict[str, int | float | None]], name: str) -> list[int | float | None]:
    return [row.get(name) for row in rows]


def misclassified_images(run_dir: Path, evaluation: dict):
    """The uint8 images (N, 1, H, W) of the mistakes `evaluation` (the run's evaluation.json) lists, in
    its order, read back through cnnzoo.data from the official split: a mistake's index is its position
    in the official file, whatever subset the run evaluated. Never downloads (a missing data set costs
    only the figure)."""
    from cnnzoo.data import load_split
    from cnnzoo.train.rundir import RunDir

    config = RunDir(run_dir).read_config()[0]
    split = load_split(config.dataset, evaluation.get("split", "test"), root=config.data_dir, download=False)
    indices = [int(m["index"]) for m in evaluation["misclassified"]]
    return split.images[indices]


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Draw a run directory's curves (and, once evaluation.json exists, its confusion matrix and
    most confident mistakes) as PNGs inside it; return the paths written."""
    # here, not at import: drawing a figure needs no training code
    from cnnzoo.train.history import steps_per_epoch
    from cnnzoo.train.rundir import RunDir

    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    metrics_path, batch_path, eval_path = run.metrics_path, run.batch_loss_path, run.evaluation_path
    if not metrics_path.is_file() and not batch_path.is_file():
        raise CnnzooError(f"{str(run_dir)!r} has no {run.METRICS} or {run.BATCH_LOSS}; pass a run directory written "
                          "by `cnnzoo train`.")
    written: list[Path] = []

    def save(fig: Figure, kind: str) -> None:
        path = run.plot_path(kind)
        written.append(save_figure(fig, path, also_intact=run.disk_full_note(path)))

    metrics = run.read_metrics() if metrics_path.is_file() else []
    batches = run.read_batch_loss() if batch_path.is_file() else []

    if batches:
        steps = _column(batches, "step")
        save(loss_figure(steps, _column(batches, "loss"), steps_per_epoch(_column(batches, "epoch"))), "loss")
    if metrics:
        epochs = _column(metrics, "epoch")
        eval_mode = run.config_path.is_file() and run.read_config()[0].train_acc == "eval"
        save(accuracy_figure(epochs, _column(metrics, "train_acc"), _column(metrics, "test_acc"), _column(metrics, "val_acc"),
                             train_label="train (eval mode)" if eval_mode else "train"), "accuracy")
    lrs = _column(batches, "lr")
    if batches and all(lr is not None for lr in lrs):
        save(lr_figure(_column(batches, "step"), lrs, steps_per_epoch(_column(batches, "epoch"))), "lr")
    elif metrics and all(lr is not None for lr in _column(metrics, "lr")):
        save(lr_figure(_column(metrics, "epoch"), _column(metrics, "lr")), "lr")

    if eval_path.is_file():
        evaluation = run.read_evaluation()
        classes = evaluation["classes"]
        save(confusion_figure(evaluation["confusion"], classes), "confusion")
        wrong = evaluation.get("misclassified") or []
        try:
            images = misclassified_images(run_dir, evaluation) if wrong else np.zeros((0, 28, 28), np.uint8)
        except (CnnzooError, OSError, KeyError) as exc:
            # The figures above are still worth having when the data set is not on this machine.
            warnings.warn(f"{run.PLOTS['misclassified']} not drawn: {exc}", stacklevel=2)
        else:
            fig = misclassified_figure(images, [m["true"] for m in wrong], [m["pred"] for m in wrong],
                                       [m["confidence"] for m in wrong], classes)
            save(fig, "misclassified")
    return written
