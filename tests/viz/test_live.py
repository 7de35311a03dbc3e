"""The live notebook display of a training run: one output area, replaced in place, with and
without ipywidgets, and stopped cleanly by a kernel interrupt."""

import base64
import io
import os
import signal
import sys
import warnings

import IPython
import IPython.display
import pytest
from PIL import Image

from cnnzoo.data import load_data
from cnnzoo.models import build_model
from cnnzoo.train import Callback, TrainingInterrupted, fit
from cnnzoo.workflows import resume_run, train_run
from cnnzoo.viz.live import LiveProgress


class FakeKernel:
    """IPython's shell as a kernel has it, recording what the cell displays."""

    def __init__(self):
        self.kernel = object()
        self.shown = []  # one entry per display(); each a list of the bundles it showed, updates included

    def display(self, bundle, raw=False, display_id=False):
        assert raw and display_id is True  # an updatable area, not an appended output
        updates = [bundle]
        self.shown.append(updates)

        class Handle:
            def update(self, new, raw=False):
                assert raw
                updates.append(new)

        return Handle()


@pytest.fixture
def kernel(monkeypatch):
    fake = FakeKernel()
    monkeypatch.setattr(IPython, "get_ipython", lambda: fake)
    monkeypatch.setattr(IPython.display, "display", fake.display)
    return fake


@pytest.fixture
def tiny(quick_config):
    config = quick_config.replace(limit_train=512, limit_test=128, batch_size=32, epochs=2)
    return config, load_data("fashion-mnist", root=config.data_dir, limit_train=512, limit_test=128)


def _pictures(page):
    return [Image.open(io.BytesIO(base64.b64decode(p.split('"', 1)[0])))
            for p in page.split('src="data:image/png;base64,')[1:]]


@pytest.mark.parametrize("widgets", ["installed", "hidden"])
def test_auto_in_a_kernel_shows_one_area_updated_in_place_ending_with_the_curves(
        widgets, kernel, tiny, monkeypatch, capsys, assert_valid_html):
    if widgets == "hidden":
        monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now fails
    else:
        import ipywidgets  # noqa: F401 - the other case: present, and still no warning
    config, data = tiny
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(build_model("lenet5"), data, config)  # progress="auto"
    assert not [w for w in caught if "Tqdm" in type(w.message).__name__ or "IProgress" in str(w.message)]
    assert len(kernel.shown) == 1, "one output area"
    updates = kernel.shown[0]
    assert len(updates) >= 3  # shown at the start, at each epoch's end, at the end
    final = updates[-1]
    assert_valid_html(final["text/html"])
    assert final["text/plain"].startswith("done: 2 epochs")
    assert final["text/html"].count("<tr>") == 1 + 2  # the epoch table: header and both epochs
    (curves,) = _pictures(final["text/html"])
    assert curves.size[0] > 600
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # no epoch lines beneath it, no tqdm bar on stderr
    assert len(history.epochs) == 2


def test_bar_in_a_kernel_is_the_same_area_without_curves(kernel, tiny):
    config, data = tiny
    fit(build_model("lenet5"), data, config.replace(epochs=1), progress="bar")
    (updates,) = kernel.shown
    assert not _pictures(updates[-1]["text/html"]) and "done: 1 epochs" in updates[-1]["text/plain"]


def test_between_epochs_the_bar_counts_batches_and_the_curve_grows(kernel, tiny, monkeypatch):
    config, data = tiny
    monkeypatch.setattr("cnnzoo.viz.live.BAR_INTERVAL_S", 0.0)
    monkeypatch.setattr("cnnzoo.viz.live.MIN_PLOT_INTERVAL_S", 0.0)
    progress = LiveProgress()
    fit(build_model("lenet5"), data, config.replace(epochs=1), progress="none", callbacks=[progress], quiet=True)
    (updates,) = kernel.shown
    lines = [u["text/plain"].splitlines()[0] for u in updates]
    assert any("8/16 batches" in line and "img/s" in line and "loss " in line and "ETA" in line for line in lines)
    assert progress.plot_interval > 0  # the redraw rate follows the drawing's cost


def test_a_kernel_interrupt_stops_after_the_step_and_the_run_resumes(kernel, tiny, tmp_path):
    config, _ = tiny

    class PressInterrupt(Callback):  # what Jupyter's interrupt button does: SIGINT to the kernel
        def on_step_end(self, state):
            if state.epoch == 1 and state.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="resume with"):
        train_run(config, out=tmp_path, name="run", callbacks=[PressInterrupt()])
    final = kernel.shown[0][-1]["text/plain"]
    assert final.startswith("stopped in epoch 2/2") and "1 epochs finished" in final
    run_dir, history = resume_run(tmp_path / "run", progress="none")
    assert [row["epoch"] for row in history.epochs] == [1, 2]


def test_it_listens_every_few_steps_once_their_speed_is_known(monkeypatch):
    # A fixed clock: 100 steps took 1 s, so half a redraw interval (0.125 s) holds 12 of them.
    from types import SimpleNamespace

    import cnnzoo.viz.live as live

    monkeypatch.setattr(live, "time", SimpleNamespace(perf_counter=lambda: 101.0))
    display = LiveProgress()
    display.last_update = 101.0  # just redrawn: this call only measures
    assert display.step_every == 1
    display.on_step_end(SimpleNamespace(step=99, epoch_start=100.0))
    assert display.step_every == int(live.BAR_INTERVAL_S / 2 / 0.01)
    display.on_step_end(SimpleNamespace(step=0, epoch_start=90.0))  # a step slower than the interval: every step
    assert display.step_every == 1
