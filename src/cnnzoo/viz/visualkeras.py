"""visualkeras pictures of a model's Keras twin (``cnnzoo draw --style visualkeras``), on Keras 3.

visualkeras 0.2 reads ``layer.output_shape``, which Keras 3 layers no longer have (it fails with
``'Conv2D' object has no attribute 'output_shape'``). Rather than patch the installed package,
:func:`draw_visualkeras` lends each layer that attribute, computed from its symbolic output, for the
duration of the drawing, and takes it away again, so the model is left as it was. visualkeras draws
with PIL, so the picture is a PNG only.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from cnnzoo.atomic import atomic_target
from cnnzoo.errors import CnnzooError
from cnnzoo.keras.backend import import_keras


@contextlib.contextmanager
def keras2_output_shapes(keras_model) -> Iterator[None]:
    """Give every layer (and the model) the Keras 2 ``output_shape`` visualkeras reads, for a while."""
    lent = []
    for layer in [keras_model, *keras_model.layers]:
        if not hasattr(layer, "output_shape"):
            outputs = layer.output if not isinstance(layer.output, (list, tuple)) else layer.output[0]
            layer.output_shape = tuple(outputs.shape)
            lent.append(layer)
    try:
        yield
    finally:
        for layer in lent:
            del layer.output_shape


def _check_png(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CnnzooError(f"visualkeras draws raster images only, so the file name must end in .png, not {path.name}.")
    return path


def draw_twin(model_or_name, path: str | os.PathLike, input_shape=None) -> Path:
    """Draw the Keras twin of a registered model (by name) or of an nn.Module into the PNG ``path``."""
    _check_png(path)  # before building a large twin
    import cnnzoo.keras

    if isinstance(model_or_name, str):
        shape = {} if input_shape is None else {"in_channels": input_shape[0], "input_size": tuple(input_shape[1:])}
        twin = cnnzoo.keras.build_model(model_or_name, **shape)
    else:
        twin = cnnzoo.keras.from_torch(model_or_name, input_shape)
    return draw_visualkeras(twin, path)


def draw_visualkeras(keras_model, path: str | os.PathLike, legend: bool = True) -> Path:
    """Draw ``keras_model`` as visualkeras's layered view into the PNG ``path``."""
    path = _check_png(path)
    import_keras()  # visualkeras imports keras: the backend must be chosen first
    try:
        import visualkeras
    except ImportError:
        raise CnnzooError("visualkeras is not installed; install it with pip install visualkeras "
                          "(or pip install 'cnnzoo[keras]').") from None
    with keras2_output_shapes(keras_model):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # visualkeras warns of its own deprecated defaults
            # "balanced", visualkeras's advice for large models, keeps a 4096-wide dense layer from
            # stretching the picture to ten thousand pixels.
            image = visualkeras.layered_view(keras_model, legend=legend, sizing_mode="balanced")
    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG")
    return path
