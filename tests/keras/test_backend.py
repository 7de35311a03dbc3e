"""Keras is imported on its PyTorch backend, and a missing Keras is one sentence."""

import os
import subprocess
import sys

import pytest

from cnnzoo.errors import CnnzooError
from cnnzoo.keras.backend import import_keras


def test_import_cnnzoo_keras_then_keras_gives_the_torch_backend():
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = "import cnnzoo.keras, keras; print(keras.backend.backend())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "torch"


def test_a_missing_keras_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # what importlib sees when it is not installed
    with pytest.raises(CnnzooError, match=r"pip install 'cnnzoo\[keras\]'"):
        import_keras()
