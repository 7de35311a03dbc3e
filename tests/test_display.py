"""The display slots: filled by the package root with lazy viz providers, looked up by train and models."""

import importlib
import subprocess
import sys

import pytest

from cnnzoo import display
from cnnzoo.errors import CnnzooError
from cnnzoo.train.history import History


def test_importing_cnnzoo_fills_every_slot_without_importing_viz():
    # A fresh process: this one's other tests may already have imported viz.
    code = (
        "import sys, cnnzoo.train.history, cnnzoo.train.callbacks, cnnzoo.train.evaluation, "
        "cnnzoo.train.lr_finder, cnnzoo.models.summary\n"
        "from cnnzoo import display\n"
        "assert set(display.PROVIDERS) == set(display.SLOTS), sorted(display.PROVIDERS)\n"
        "assert not [m for m in sys.modules if m.startswith('cnnzoo.viz') or m.startswith('matplotlib')]\n"
        "figure = cnnzoo.train.history.History().plot()\n"
        "assert type(figure).__name__ == 'Figure' and 'cnnzoo.viz.notebook' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_lazy_provider_names_a_function_viz_has():
    for slot, provider in display.PROVIDERS.items():
        assert provider.module.startswith("cnnzoo.viz."), slot
        assert callable(getattr(importlib.import_module(provider.module), provider.target)), slot


def test_a_slot_nobody_filled_is_one_sentence(monkeypatch):
    monkeypatch.delitem(display.PROVIDERS, "history_figure")
    with pytest.raises(CnnzooError) as error:
        History().plot()
    message = str(error.value)
    assert message.startswith("nothing is registered to draw a History's curves as a matplotlib Figure")
    assert "cnnzoo.display.register('history_figure', function)" in message and "\n" not in message


def test_register_replaces_a_provider_and_rejects_an_unknown_slot(monkeypatch):
    monkeypatch.setitem(display.PROVIDERS, "history_text", display.PROVIDERS["history_text"])
    display.register("history_text", lambda rows: f"{len(rows)} epochs")
    assert str(History(epochs=[{"epoch": 1}])) == "1 epochs"
    with pytest.raises(ValueError, match="no display slot is named 'history_png'"):
        display.register("history_png", print)
    with pytest.raises(ValueError, match="no display slot is named 'history_png'"):
        display.provider("history_png")


def test_lazy_imports_its_module_only_when_called():
    provider = display.lazy("cnnzoo.no_such_module", "f")  # building it imports nothing
    with pytest.raises(ModuleNotFoundError):
        provider()
    assert display.lazy("json", "dumps")({"a": 1}) == '{"a": 1}'
