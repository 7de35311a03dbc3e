"""progress="auto" is the live plot in a Jupyter kernel, the bar on a terminal, nothing in a pipe."""

import io
import sys
import types

import pytest

from cnnzoo.errors import CnnzooError
from cnnzoo.kernel import in_notebook
from cnnzoo.train.progress import resolve_progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def kernel(monkeypatch):
    """This process seen as a Jupyter kernel: IPython's shell has a kernel attached."""
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


@pytest.fixture
def terminal_ipython(monkeypatch):
    """IPython in a terminal: a shell, but no kernel."""
    shell = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


@pytest.fixture
def plain_python(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)


def test_auto_in_a_kernel_is_the_live_plot_even_though_no_stream_is_a_tty(kernel):
    assert in_notebook()
    assert resolve_progress("auto", stream=io.StringIO()) == "plot"
    assert resolve_progress("bar", stream=io.StringIO()) == "bar"


@pytest.mark.parametrize("shell", ["plain_python", "terminal_ipython"])
def test_auto_on_a_terminal_is_the_bar_and_in_a_pipe_nothing(shell, request):
    request.getfixturevalue(shell)
    assert not in_notebook()
    assert resolve_progress("auto", stream=_Terminal()) == "bar"
    assert resolve_progress("auto", stream=io.StringIO()) == "none"


def test_a_terminal_cannot_draw_so_plot_is_the_bar_there(plain_python):
    assert resolve_progress("plot", stream=io.StringIO()) == "bar"


def test_an_explicit_bar_is_shown_even_when_piped_and_quiet_or_none_show_nothing(kernel):
    assert resolve_progress("bar", stream=io.StringIO()) == "bar"
    assert resolve_progress("none") == "none"
    assert resolve_progress("plot", quiet=True) == "none"


def test_an_unknown_choice_names_the_valid_ones():
    with pytest.raises(CnnzooError, match="'auto', 'bar', 'plot', 'none'"):
        resolve_progress("live")
