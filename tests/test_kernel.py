"""in_notebook(): True only inside a Jupyter kernel, asked without importing IPython or torch."""

import os
import subprocess
import sys
import textwrap
import types

import IPython
import pytest

from cnnzoo.kernel import in_notebook


def _python(script: str, tmp_path) -> str:
    # A child process: IPython's shell is a process-wide singleton that other tests must not inherit.
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "IPYTHONDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_pytest_is_no_kernel():
    assert not in_notebook()


def test_without_ipython_imported_it_is_no_kernel(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not in_notebook()
    assert "IPython" not in sys.modules  # looked up, never imported


def test_a_shell_with_a_kernel_attached_is_a_kernel(monkeypatch):
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "IPython", IPython)
    assert in_notebook()


@pytest.mark.parametrize("shell", [None, types.SimpleNamespace(), types.SimpleNamespace(kernel=None)],
                         ids=["no shell", "terminal shell", "kernel detached"])
def test_ipython_without_a_kernel_is_no_kernel(monkeypatch, shell):
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    monkeypatch.setitem(sys.modules, "IPython", IPython)
    assert not in_notebook()


def test_importing_and_asking_loads_neither_ipython_nor_torch(tmp_path):
    assert _python("""
        import sys
        from cnnzoo.kernel import in_notebook
        print(in_notebook(), sorted({"IPython", "torch", "matplotlib"} & set(sys.modules)))
    """, tmp_path) == "False []"


def test_a_real_kernel_is_a_kernel_and_a_terminal_ipython_is_not(tmp_path):
    assert _python("""
        from ipykernel.inprocess.manager import InProcessKernelManager
        manager = InProcessKernelManager()
        manager.start_kernel()
        manager.kernel.shell.run_cell("from cnnzoo.kernel import in_notebook; inside = in_notebook()")
        print(manager.kernel.shell.user_ns["inside"])
        manager.shutdown_kernel()
    """, tmp_path) == "True"
    assert _python("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_cell("from cnnzoo.kernel import in_notebook; inside = in_notebook()")
        print(shell.user_ns["inside"])
    """, tmp_path) == "False"
