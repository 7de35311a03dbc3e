"""Keras 3 twins of every zoo model, with the same weights and the same answers (``cnnzoo[keras]``).

    import cnnzoo.keras
    twin = cnnzoo.keras.build_model("lenet5")      # Keras's own initialization
    twin.summary()                                 # 156 / 2,416 / 48,120 / 10,164 / 850 = 61,706
    twin = cnnzoo.keras.from_torch(torch_model)    # a trained PyTorch model, its weights carried over
    torch_model = cnnzoo.keras.to_torch(twin)      # and back, bit for bit

Importing this module imports Keras on its PyTorch backend, unless ``KERAS_BACKEND`` names another
or keras was imported before with another (the backend is fixed at keras's first import). Twins
take channels-last images by default (``data_format="channels_first"`` for PyTorch's order) and
return logits unless built with ``softmax=True``.
"""

from cnnzoo.keras.backend import import_keras

# Chosen now, at `import cnnzoo.keras`: a later `import keras` by the user then gets the same backend.
import_keras()

from cnnzoo.keras.twins import DATA_FORMATS, build_model, from_torch, to_torch

__all__ = ["DATA_FORMATS", "build_model", "from_torch", "import_keras", "to_torch"]
