import io

import pytest
import torch

from cnnzoo.data import load_data
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train import Callback, fit, load_checkpoint
from cnnzoo.workflows import train_run
from cnnzoo.train.callbacks import ProgressBar, epoch_line, progress_callbacks


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, state):
        self.calls.append(("fit_start", state.start_epoch))

    def on_epoch_start(self, state):
        self.calls.append(("epoch_start", state.epoch))

    def on_step_end(self, state):
        assert state.loss.device == state.runtime.device and state.loss.ndim == 0
        assert state.global_step == state.epoch * state.steps_per_epoch + state.step
        self.calls.append(("step", state.epoch, state.step, state.seen))

    def on_epoch_end(self, state):
        assert state.row["epoch"] == state.epoch + 1 and state.history.epochs[-1] is state.row
        self.calls.append(("epoch_end", state.epoch))

    def on_fit_end(self, state):
        self.calls.append(("fit_end", len(state.history.epochs)))


@pytest.fixture
def tiny(quick_config):
    config = quick_config.replace(limit_train=256, limit_test=64, batch_size=128, epochs=2)
    return config, load_data("fashion-mnist", root=config.data_dir, limit_train=256, limit_test=64)


def test_hooks_run_in_order_once_per_step_and_epoch(tiny):
    config, data = tiny
    recorder = Recorder()
    fit(build_model("lenet5"), data, config, callbacks=[recorder], quiet=True)
    assert recorder.calls == [
        ("fit_start", 0),
        ("epoch_start", 0), ("step", 0, 0, 128), ("step", 0, 1, 256), ("epoch_end", 0),
        ("epoch_start", 1), ("step", 1, 0, 128), ("step", 1, 1, 256), ("epoch_end", 1),
        ("fit_end", 2),
    ]


def test_stop_training_ends_after_the_current_epoch_and_keeps_a_resumable_checkpoint(tmp_path, tiny):
    config, _ = tiny

    class StopAtFirst(Callback):
        def on_epoch_end(self, state):
            state.stop_training, state.stop_reason = True, "enough"

    recorder = Recorder()
    run_dir, history = train_run(config.replace(epochs=3), out=tmp_path, name="r", quiet=True,
                                 callbacks=[StopAtFirst(), recorder])
    assert [row["epoch"] for row in history.epochs] == [1]
    assert recorder.calls[-1] == ("fit_end", 1)
    assert load_checkpoint(run_dir.last_checkpoint).meta["epoch"] == 1


def test_fit_end_runs_when_a_callback_fails(tiny):
    config, data = tiny

    class Fails(Callback):
        def on_step_end(self, state):
            raise RuntimeError("boom")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(build_model("lenet5"), data, config, callbacks=[recorder, Fails()], quiet=True)
    assert recorder.calls[-1] == ("fit_end", 0)


def test_a_plain_function_is_refused_with_a_clear_message(tiny):
    config, data = tiny
    with pytest.raises(CnnzooError, match="subclass cnnzoo.Callback"):
        fit(build_model("lenet5"), data, config, callbacks=[lambda *a: None], quiet=True)


def test_progress_choice():
    with pytest.raises(CnnzooError, match="progress must be one of"):
        progress_callbacks("fancy", quiet=False)
    assert progress_callbacks("bar", quiet=True) == []
    assert progress_callbacks("none", quiet=False) == []
    assert [type(c) for c in progress_callbacks("bar", quiet=False)] == [ProgressBar]


def test_progress_bar_shows_loss_and_closes(tiny):
    config, data = tiny
    out = io.StringIO()
    fit(build_model("lenet5"), data, config.replace(epochs=1), callbacks=[ProgressBar(file=out)], quiet=True)
    shown = out.getvalue()
    assert "epoch 1/1" in shown and "loss=" in shown and "img_s=" in shown
    assert shown.endswith("\r") and not shown.rstrip("\r").split("\r")[-1].strip()  # closed: the line is cleared


def test_epoch_line_leaves_out_missing_splits():
    row = {"epoch": 3, "train_loss": 0.5, "train_acc": 0.8, "val_acc": None, "test_acc": 0.75, "time_s": 1.31}
    assert epoch_line(row, 10) == "epoch 3/10  loss 0.500  train 80.0%  test 75.0%  1.3 s"


def test_epoch_line_says_how_many_images_each_accuracy_was_measured_on():
    row = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.7, "test_acc": 0.75, "time_s": 2.0,
           "train_images": 48_000, "val_images": 12_000, "test_images": 2_000}
    line = epoch_line(row, 2)
    assert line == "epoch 1/2  loss 0.500  train 80.0% of 48,000  val 70.0% of 12,000  test 75.0% of 2,000  2.0 s"


def test_epoch_line_labels_the_course_training_accuracy():
    row = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.9104, "val_acc": None, "test_acc": 0.8966, "time_s": 2.0}
    assert "train(eval) 91.0%" in epoch_line(row, 10, train_acc="eval")
    assert "  train 91.0%" in epoch_line(row, 10)


def test_the_readout_gives_a_loss_as_a_float_and_an_epochs_losses_as_a_copy_with_their_tag():
    from cnnzoo.train.callbacks import AsyncLossReadout

    readout = AsyncLossReadout(torch.device("cpu"))
    assert readout(torch.tensor(0.25)) == 0.25
    losses = torch.tensor([2.0, 1.5, 0.0])
    shown = readout(losses, tag=(0, 2))
    assert shown.tolist() == [2.0, 1.5, 0.0] and readout.tag == (0, 2)
    losses[2] = 1.0  # a copy: later steps do not change what is on screen
    assert shown.tolist() == [2.0, 1.5, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the asynchronous copy exists only on CUDA")
def test_on_cuda_the_readout_lands_later_without_a_synchronize():
    from cnnzoo.train.callbacks import AsyncLossReadout

    readout = AsyncLossReadout(torch.device("cuda"))
    losses = torch.arange(4.0, device="cuda")
    assert readout(losses, tag=1) is None  # only started
    torch.cuda.synchronize()
    assert readout(losses * 2, tag=2).tolist() == [0.0, 1.0, 2.0, 3.0] and readout.tag == 1
