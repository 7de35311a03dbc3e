"""Whether cnnzoo runs inside a Jupyter kernel; kept free of torch and matplotlib, so that both
the trainer and the pictures can ask it cheaply."""

import sys


def in_notebook() -> bool:
    """Whether this code runs inside a Jupyter kernel (classic, Lab, VS Code, Colab).

    The kernel, not the tty, is what matters: a kernel's stderr is never a tty, and a terminal
    IPython has no kernel. IPython is only looked up, never imported: if nothing has imported it,
    this is no kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
