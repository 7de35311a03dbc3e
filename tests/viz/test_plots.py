import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cnnzoo.atomic import DiskFull
from cnnzoo.errors import CnnzooError
from cnnzoo.viz import (
    accuracy_figure,
    confusion_figure,
    image_grid_figure,
    loss_figure,
    lr_figure,
    misclassified_figure,
    plot_run,
    save_figure,
)


def assert_sensible_image(path, lo=200, hi=6000):
    with Image.open(path) as image:
        w, h = image.size
        assert lo <= w <= hi and lo <= h <= hi, (path, image.size)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{path} looks blank"


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_image_grid_has_one_panel_per_image_titled_by_class(test_split, tmp_path):
    images, labels = test_split.images[:13], test_split.labels[:13]
    fig = image_grid_figure(images, labels, test_split.classes, ncols=5)
    panels = image_axes(fig)
    assert len(panels) == 13
    assert [ax.get_title() for ax in panels] == [test_split.classes[int(y)] for y in labels]
    assert_sensible_image(save_figure(fig, tmp_path / "grid.png"))


def test_show_like_grid_of_a_real_split(test_split, tmp_path):
    # What `cnnzoo show` does: the first images of a split with their class names.
    fig = image_grid_figure(test_split.images[:32], test_split.labels[:32], test_split.classes)
    assert len(image_axes(fig)) == 32
    shown = image_axes(fig)[0].images[0].get_array()
    assert np.array_equal(np.asarray(shown), test_split.images[0, 0].numpy())
    assert_sensible_image(save_figure(fig, tmp_path / "show.png"))


def test_confusion_draws_counts_and_normalized_by_default():
    classes = [f"c{i}" for i in range(10)]
    matrix = np.eye(10) * 95 + 1
    assert [ax.get_title() for ax in image_axes(confusion_figure(matrix, classes))] == [
        "Counts", "Row-normalized (% of true class)"]
    assert len(image_axes(confusion_figure(matrix, classes, normalize=True))) == 1
    counts = image_axes(confusion_figure(matrix, classes, normalize=False))
    assert len(counts) == 1 and counts[0].get_title() == "Counts"
    with pytest.raises(CnnzooError, match="10 classes"):
        confusion_figure(np.ones((3, 3)), classes)


def test_curves_have_titles_labels_and_percent_accuracy(tmp_path):
    loss = loss_figure(range(100), np.linspace(2, 0.3, 100), steps_per_epoch=20)
    ax = loss.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    assert any(child.get_xlabel() == "epoch" for child in ax.child_axes)
    short = loss_figure(range(21), np.linspace(2, 1, 21), steps_per_epoch=7).axes[0]  # untouched: 2.5, 7.5, ...
    short.figure.canvas.draw()
    assert all(tick == int(tick) for tick in short.get_xticks())  # steps are whole numbers

    acc = accuracy_figure([1, 2, 3], [0.5, 0.7, 0.8], test_acc=["0.6", "0.75", "0.9123"], val_acc=["", "", ""])
    ax = acc.axes[0]
    assert [line.get_label() for line in ax.lines] == ["train (last 80.00%)", "test (last 91.23%)"]
    assert ax.yaxis.get_major_formatter()(0.5, 0).startswith("50")

    # a cosine schedule decaying to 1e-9 over 5 epochs of 10 steps
    cosine = 0.1 * (1 + np.cos(np.pi * np.arange(50) / 49)) / 2 + 1e-9
    lr = lr_figure(range(50), cosine, steps_per_epoch=10)
    ax = lr.axes[0]
    assert ax.get_yscale() == "linear" and ax.get_xlabel() == "epoch" and ax.get_ylim()[0] == 0
    assert ax.lines[0].get_xdata()[-1] == pytest.approx(4.9)  # step 49 of 10 per epoch
    for name, fig in {"loss": loss, "acc": acc, "lr": lr}.items():
        assert_sensible_image(save_figure(fig, tmp_path / f"{name}.png"))


def test_misclassified_titles(test_split):
    fig = misclassified_figure(test_split.images[:3], [0, 1, 2], [6, 3, 4], [0.987, 0.5, 0.25], test_split.classes)
    assert [ax.get_title() for ax in image_axes(fig)] == [
        "T-shirt/top → Shirt (99%)", "Trouser → Dress (50%)", "Pullover → Coat (25%)"]


@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_save_figure_picks_format_by_extension_and_leaves_no_temp_files(tmp_path, ext, magic):
    path = save_figure(lr_figure([0, 1], [0.1, 0.1]), tmp_path / "sub" / f"lr.{ext}")
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in path.parent.iterdir()] == [f"lr.{ext}"]


def test_save_figure_rejects_unknown_extension(tmp_path):
    with pytest.raises(CnnzooError, match=r"\.png"):
        save_figure(lr_figure([0, 1], [0.1, 0.1]), tmp_path / "lr.jpg")
    assert list(tmp_path.iterdir()) == []


def test_plot_run_writes_every_png(run_dir):
    written = plot_run(run_dir)
    names = {"loss.png", "accuracy.png", "lr.png", "confusion.png", "misclassified.png"}
    assert {p.name for p in written} == names
    for name in names:
        assert_sensible_image(run_dir / name)


def test_plot_run_before_evaluation_draws_only_curves(new_run):
    run = new_run("running", evaluation=False)
    assert {p.name for p in plot_run(run)} == {"loss.png", "accuracy.png", "lr.png"}


def test_plot_run_without_data_still_draws_confusion(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "data_dir": str(run_dir / "no-data")}))
    with pytest.warns(UserWarning, match="misclassified.png"):
        written = {p.name for p in plot_run(run_dir)}
    assert "confusion.png" in written and "misclassified.png" not in written


def test_a_full_disk_while_plotting_a_run_says_its_checkpoints_are_intact(run_dir, monkeypatch, no_space):
    (run_dir / "checkpoints").mkdir()
    monkeypatch.setattr(Figure, "savefig", no_space)
    with pytest.raises(DiskFull) as caught:
        plot_run(run_dir)
    assert "; loss.png was not written, and the last checkpoint in checkpoints/ is intact: " in str(caught.value)


def test_plot_run_rejects_a_directory_without_metrics(tmp_path):
    with pytest.raises(CnnzooError, match="run directory"):
        plot_run(tmp_path)


def test_figures_choose_no_backend_and_never_load_pyplot():
    # Notebooks pick their own (inline) backend; importing and drawing must not pre-empt it.
    code = (
        "import sys, matplotlib\n"
        "from cnnzoo.viz import loss_figure, save_figure\n"
        "import tempfile, os\n"
        "save_figure(loss_figure([0, 1, 2], [1.0, 0.5, 0.2]), os.path.join(tempfile.mkdtemp(), 'l.png'))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert matplotlib.rcParams._get_backend_or_none() is None\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # a user's choice would pre-empt ours
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_display_sample_first_random_and_per_class():
    from cnnzoo.viz import display_sample

    labels = [0, 1, 2] * 10 + [3]
    assert display_sample(labels, 4) == [0, 1, 2, 3]
    drawn = display_sample(labels, 5, seed=1)
    assert drawn == display_sample(labels, 5, seed=1) != display_sample(labels, 5, seed=2)
    assert len(set(drawn)) == 5 and drawn != [0, 1, 2, 3, 4]
    first = display_sample(labels, 2, per_class=True)
    assert first == [0, 3, 1, 4, 2, 5, 30]  # two of each class, class by class; class 3 has only one
    shuffled = display_sample(labels, 2, seed=0, per_class=True)
    assert [labels[i] for i in shuffled] == [0, 0, 1, 1, 2, 2, 3] and shuffled != first
    assert display_sample(labels, 100) == list(range(len(labels)))
