"""CnnzooError in IPython and Jupyter: its one sentence, not a traceback (tests/cli checks the command line's one line)."""

import os
import subprocess
import sys
import textwrap

from cnnzoo.errors import CnnzooError

SENTENCE = "Unknown model 'lenet6'; choose one of: alexnet, lenet5."


def test_ipython_is_given_the_one_sentence_with_the_type_named():
    assert CnnzooError(SENTENCE)._render_traceback_() == [f"CnnzooError: {SENTENCE}"]


def test_a_subclass_is_named_as_itself():
    class RunStopped(CnnzooError):
        pass

    assert RunStopped("The run stopped.")._render_traceback_() == ["RunStopped: The run stopped."]


def test_a_real_ipython_shell_prints_the_sentence_and_no_traceback(tmp_path):
    # A separate process: IPython's shell is a process-wide singleton that other tests must not inherit.
    cell = f"from cnnzoo.errors import CnnzooError\nraise CnnzooError({SENTENCE!r})"
    script = textwrap.dedent(f"""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance(colors="NoColor")
        shell.run_cell({cell!r})
        print("<<bug>>")
        shell.run_cell("raise ValueError('a bug')")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "IPYTHONDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    user_error, bug = result.stdout.split("<<bug>>")
    assert [line for line in user_error.splitlines() if line.strip()] == [f"CnnzooError: {SENTENCE}"]
    assert "Traceback" in bug and "ValueError: a bug" in bug  # a bug keeps its traceback
