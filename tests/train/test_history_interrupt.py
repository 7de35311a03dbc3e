"""History's notebook helpers and the Ctrl-C handler, without training."""

import signal

import pytest
from matplotlib.figure import Figure

from cnnzoo.train.history import EPOCH_COLUMNS, History
from cnnzoo.train.loop import _Interrupt


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


def test_plot_draws_the_course_two_figures():
    loss, accuracy = _history().plot()
    assert isinstance(loss, Figure) and isinstance(accuracy, Figure)
    assert loss.axes[0].lines and accuracy.axes[0].lines


def test_first_signal_asks_to_stop_and_second_exits_at_once():
    interrupt = _Interrupt()
    with interrupt.installed():
        assert signal.getsignal(signal.SIGINT) == interrupt._handle
        interrupt._handle(signal.SIGINT, None)
        assert interrupt.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            interrupt._handle(signal.SIGTERM, None)
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
