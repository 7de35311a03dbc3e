"""History: its rows, its plot and its notebook display, without training."""

import base64
import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cnnzoo.train.history import EPOCH_COLUMNS, History


def _history():
    history = History()
    for epoch in (1, 2):
        history.batch_loss += [2.0 / epoch, 1.5 / epoch, 1.0 / epoch]
        history.batch_lr += [0.1, 0.1, 0.1]
        history.batch_epoch += [epoch] * 3
        history.epochs.append({"epoch": epoch, "train_loss": 1.5 / epoch, "train_acc": 0.5 + epoch / 10,
                               "val_acc": None, "test_acc": 0.45 + epoch / 10, "lr": 0.1, "time_s": 1.0,
                               "images_per_s": 100.0})
    return history


def test_rows_are_plain_numbers_with_the_metrics_columns():
    history = _history()
    rows = history.rows()
    assert [list(r) for r in rows] == [list(EPOCH_COLUMNS)] * 2
    assert history.final["test_acc"] == pytest.approx(0.65)
    assert [r["step"] for r in history.batch_rows()] == list(range(6))
    assert History.from_dict(history.to_dict()) == history


def test_plot_draws_the_course_two_plots_in_one_figure():
    figure = _history().plot()
    assert isinstance(figure, Figure)
    loss, accuracy = [ax for ax in figure.axes if ax.get_title()]
    assert loss.get_title() == "Training loss" and accuracy.get_title() == "Accuracy per epoch"
    assert list(loss.lines[0].get_ydata()) == _history().batch_loss
    assert [list(line.get_ydata()) for line in accuracy.lines] == [[0.6, 0.7], [0.55, 0.65]]


def test_a_notebook_shows_a_history_as_its_curves_and_table(assert_valid_html):
    history = _history()
    bundle = history._repr_mimebundle_()
    png = bundle["image/png"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        assert image.size[0] > 400 and np.asarray(image.convert("L")).std() > 5
    page = bundle["text/html"]
    # the same picture, drawn once, inside the HTML; then the epoch table
    assert base64.b64encode(png).decode() in page
    assert_valid_html(page)
    assert page.count("<tr>") == 3 and "65.00%" in page
    assert history._repr_png_() == png and history._repr_html_() == page


def test_str_is_the_epoch_table_and_an_empty_history_says_so():
    lines = str(_history()).splitlines()
    assert lines[0].split()[:3] == ["epoch", "train", "loss"]
    assert lines[2].split()[:5] == ["2", "0.7500", "70.00%", "—", "65.00%"]
    empty = History()
    assert str(empty) == "History(empty)"
    assert "image/png" not in empty._repr_mimebundle_() and "No epoch" in empty._repr_html_()
