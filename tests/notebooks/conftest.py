"""Executing the shipped notebooks in a real Jupyter kernel, as a reader would run them."""

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class RecordingClient(NotebookClient):
    """nbclient, counting the display updates each cell sent (the notebook keeps only their last state)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates: dict[int, int] = {}

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "update_display_data":
            self.updates[cell_index] = self.updates.get(cell_index, 0) + 1
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="session")
def kernel_specs(tmp_path_factory):
    """A kernel spec for this very interpreter, in a temporary folder: nothing is installed for the
    user, and the kernel runs the Python and the cnnzoo that run the tests."""
    from ipykernel.kernelspec import write_kernel_spec

    import cnnzoo

    folder = tmp_path_factory.mktemp("kernels")
    # The kernel works in a temporary folder, so a relative PYTHONPATH would not find this checkout.
    source = str(Path(cnnzoo.__file__).resolve().parents[1])
    path = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
    write_kernel_spec(folder / "cnnzoo-tests", overrides={
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "env": {"PYTHONPATH": path}})
    return KernelSpecManager(kernel_dirs=[str(folder)])


@pytest.fixture(scope="session")
def run_notebook(kernel_specs, tmp_path_factory):
    """``run_notebook(name, **settings)``: execute notebooks/NAME top to bottom in a fresh kernel,
    in a temporary working folder, with `settings` assigned right after its parameters cell (as
    papermill does). Returns (notebook, client, seconds). A notebook already run with the same
    settings is not run again: the tests only read what it showed, and each run costs a kernel start
    and a training run."""
    executed = {}

    def run(name: str, **settings):
        key = (name, tuple(sorted(settings.items())))
        if key not in executed:
            executed[key] = _execute(name, settings, kernel_specs, tmp_path_factory.mktemp("notebook"))
        return executed[key]

    return run


def _execute(name: str, settings: dict, kernel_specs, folder: Path):
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    (index,) = [i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", [])]
    if settings:
        code = "\n".join(f"{key} = {value!r}" for key, value in settings.items())
        override = nbformat.v4.new_code_cell(code, metadata={"tags": ["injected-parameters"]})
        book.cells.insert(index + 1, override)
    manager = KernelManager(kernel_name="cnnzoo-tests", kernel_spec_manager=kernel_specs)
    client = RecordingClient(book, km=manager, timeout=300, resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    client.execute()
    return book, client, time.perf_counter() - start
