"""The display wiring: filled by the package root with viz's functions by name, looked up by train and models."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from cnnzoo import display
from cnnzoo.errors import CnnzooError
from cnnzoo.train.history import History

LOOKED_UP = {"history_figure", "history_bundle", "history_text", "evaluation_bundle", "evaluation_text",
             "summary_html", "lr_find_figure", "live_progress"}


def test_the_names_train_and_models_ask_for_are_the_names_wired():
    asked = set()
    for module in ("train/history", "train/evaluation", "train/lr_finder", "train/callbacks", "models/summary"):
        source = (Path(display.__file__).parent / f"{module}.py").read_text()
        asked |= {part.split('"')[1] for part in source.split('display.provider(')[1:]}
    assert asked == LOOKED_UP == set(display.DRAWN_BY)


def test_importing_cnnzoo_wires_everything_without_importing_viz():
    # A fresh process: this one's other tests may already have imported viz.
    code = (
        "import sys, cnnzoo.train.history, cnnzoo.train.callbacks, cnnzoo.train.evaluation, "
        "cnnzoo.train.lr_finder, cnnzoo.models.summary\n"
        "from cnnzoo import display\n"
        f"assert sorted(display.DRAWN_BY) == {sorted(LOOKED_UP)!r}, sorted(display.DRAWN_BY)\n"
        "assert not [m for m in sys.modules if m.startswith('cnnzoo.viz') or m.startswith('matplotlib')]\n"
        "figure = cnnzoo.train.history.History().plot()\n"
        "assert type(figure).__name__ == 'Figure' and 'cnnzoo.viz.notebook' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_wired_name_is_a_function_viz_has():
    for name, target in display.DRAWN_BY.items():
        module, function = target.split(":")
        assert module.startswith("cnnzoo.viz."), name
        assert callable(getattr(importlib.import_module(module), function)), name


def test_a_name_nobody_wired_is_one_sentence(monkeypatch):
    monkeypatch.delitem(display.DRAWN_BY, "history_figure")
    with pytest.raises(CnnzooError) as error:
        History().plot()
    message = str(error.value)
    assert message.startswith("nothing draws 'history_figure': cnnzoo/__init__.py wires viz's functions")
    assert "DRAWN_BY['history_figure'] = 'module:function'" in message and "\n" not in message


def test_rewiring_a_name_changes_what_draws_it(monkeypatch):
    monkeypatch.setitem(display.DRAWN_BY, "history_text", "builtins:ascii")
    assert str(History(epochs=[{"epoch": 1}])).startswith("[{'epoch': 1, ")  # the rows, as ascii() writes them


def test_a_wiring_without_module_and_function_is_one_sentence(monkeypatch):
    monkeypatch.setitem(display.DRAWN_BY, "history_figure", "history_figure")
    with pytest.raises(CnnzooError, match=r"DRAWN_BY\['history_figure'\] is 'history_figure'; it must read "
                                          r"'module:function'\.$"):
        History().plot()
