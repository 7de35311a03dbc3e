"""Keras 3 twins of every zoo model, with the same weights and the same answers (``cnnzoo[keras]``).

Entry: ``build_model(name)`` (Keras's own initialization), ``from_torch(model)`` (a trained PyTorch model's
weights carried over) and ``to_torch(twin)`` (back, bit for bit); :mod:`cnnzoo.keras.twins` documents them and
docs/KERAS.md shows them at work (``twin.summary()`` of lenet5: 156 / 2,416 / 48,120 / 10,164 / 850 = 61,706).
"""

from cnnzoo.keras.backend import import_keras

# Chosen now, at `import cnnzoo.keras`: a later `import keras` by the user then gets the same backend. PyTorch's,
# unless KERAS_BACKEND names another or keras was imported before with another (fixed at keras's first import).
import_keras()

from cnnzoo.keras.twins import DATA_FORMATS, build_model, from_torch, to_torch

__all__ = ["DATA_FORMATS", "build_model", "from_torch", "import_keras", "to_torch"]
