"""Keras 3, imported on its PyTorch backend unless the user chose another."""

from __future__ import annotations

import os

from cnnzoo.errors import CnnzooError

INSTALL_HINT = "pip install 'cnnzoo[keras]'"


def import_keras():
    """The ``keras`` module; its backend is PyTorch unless ``KERAS_BACKEND`` names another.

    The backend is fixed when keras is first imported, so setting the default here only counts when
    nothing imported keras before; a keras already running on TensorFlow or JAX is used as it is.
    """
    # torch is installed wherever cnnzoo is; TensorFlow, Keras's own default, usually is not.
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise CnnzooError(f"Keras is not installed; install cnnzoo's Keras extra with {INSTALL_HINT}.") from None
    if int(keras.__version__.split(".")[0]) < 3:
        raise CnnzooError(f"cnnzoo's Keras twins need Keras 3, but Keras {keras.__version__} is installed; "
                          f"upgrade it with {INSTALL_HINT}.")
    return keras
