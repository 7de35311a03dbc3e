"""Keras 3 twins of the zoo's models: the same layers, the same weights, the same answers.

Entry: :func:`build_model` (a fresh twin), :func:`from_torch` (a PyTorch model's weights into a twin) and
:func:`to_torch` (back). The layers come from :mod:`cnnzoo.keras.plan`; :func:`_twin` assembles them and
:func:`_layer` spells out each one; docs/KERAS.md lists the traps between the frameworks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.keras import layouts
from cnnzoo.keras.backend import import_keras
from cnnzoo.keras.plan import Plan, Step, plan
from cnnzoo.models import build_model as build_torch_model
from cnnzoo.models import list_models

DATA_FORMATS = ("channels_last", "channels_first")
SOFTMAX_LAYER = "softmax"


def build_model(name: str, *, num_classes: int | None = None, in_channels: int | None = None,
                input_size=None, data_format: str = "channels_last", softmax: bool = False, **options):
    """The Keras twin of zoo model ``name``, freshly initialized by Keras's own initializers.

    Arguments are :func:`cnnzoo.build_model`'s (``options`` such as ``activation="relu"``); the
    twin of ``build_model("lenet5")`` has LeNet-5's 61,706 parameters in the same layers. Keras's
    conventions are kept where they are Keras's business: the twin takes channels-last images by default
    (``data_format="channels_first"`` for PyTorch's order) and holds (kh, kw, in, out) kernels. It returns
    logits like cnnzoo's models; ``softmax=True`` appends the softmax the material's Keras models end in.
    """
    model = build_torch_model(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                              **options)
    return _twin(plan(model, model.input_shape), name, data_format, softmax)


def from_torch(model: nn.Module, input_shape: tuple[int, int, int] | None = None, *,
               data_format: str = "channels_last", softmax: bool = False, name: str | None = None):
    """A Keras twin of ``model`` holding its weights and batch-norm statistics.

    ``input_shape`` (C, H, W) defaults to the shape the zoo built ``model`` for; ``name`` (the Keras
    model's) defaults to the zoo model's name, which lets :func:`to_torch` rebuild it.
    """
    if not isinstance(model, nn.Module) or isinstance(model, import_keras().Layer):  # Keras-on-torch layers are Modules
        raise CnnzooError(f"from_torch takes a PyTorch nn.Module, not a {type(model).__name__}; "
                          "for a Keras model use to_torch.")
    input_shape = _input_shape_of(model, input_shape)
    steps = plan(model, input_shape)
    twin = _twin(steps, name or getattr(model, "zoo_name", None) or type(model).__name__.lower(), data_format,
                 softmax)
    for step in steps.weighted():
        twin.get_layer(step.name).set_weights(_keras_weights(step, model.get_submodule(step.module)))
    return twin


def to_torch(keras_model, model: nn.Module | None = None, **options) -> nn.Module:
    """The PyTorch model with the weights of ``keras_model``, a twin made by this module.

    ``model`` is filled in place and returned; without one, the zoo model the twin is named after is
    built for the twin's input shape and classes (``options``: the model's own options, e.g.
    ``activation="relu"``, as the twin was built with).
    """
    keras = import_keras()
    if not isinstance(keras_model, keras.Model) or not keras_model.built or not keras_model.inputs:
        raise CnnzooError(f"to_torch takes a built Keras model (a twin from cnnzoo.keras), not a "
                          f"{type(keras_model).__name__}; for a PyTorch model use from_torch.")
    data_format = _data_format_of(keras_model)
    input_shape = _torch_input_shape(keras_model, data_format)
    if model is None:
        if keras_model.name not in list_models():
            raise CnnzooError(f"The Keras model is named {keras_model.name!r}, not after a zoo model, so cnnzoo cannot "
                              "tell which PyTorch model to build; pass the PyTorch model to fill as to_torch's model.")
        fixed = sorted(set(options) & {"num_classes", "in_channels", "input_size"})
        if fixed:
            raise CnnzooError(f"to_torch reads {', '.join(fixed)} from the twin's own input and output shapes; "
                              "leave them out and pass only the model's options (such as activation).")
        model = build_torch_model(keras_model.name, in_channels=input_shape[0], input_size=input_shape[1:],
                                  num_classes=int(keras_model.outputs[0].shape[-1]), **options)
    steps = plan(model, input_shape)
    _check_structure(keras, keras_model, steps, data_format, type(model).__name__)
    with torch.no_grad():
        for step in steps.weighted():
            try:
                layer = keras_model.get_layer(step.name)
            except ValueError:
                raise CnnzooError(f"The Keras model has no layer {step.name!r}, which {type(model).__name__}'s "
                                  f"{step.module} needs; convert a twin of the same zoo model and options.") from None
            # convert_to_numpy shares the memory of a CPU torch-backend variable: no copy of VGG's 400 MB.
            weights = [np.asarray(keras.ops.convert_to_numpy(variable.value)) for variable in layer.weights]
            _load_torch(model.get_submodule(step.module), step, weights)
    return model


# What a layer's config may differ in between a twin and the plan without changing what it computes.
_CONFIG_NOISE = ("name", "dtype", "trainable", "seed")


def _computation(layer) -> dict:
    return {key: value for key, value in layer.get_config().items()
            if key not in _CONFIG_NOISE and not key.endswith(("_initializer", "_regularizer", "_constraint"))}


def _check_structure(keras, keras_model, steps: Plan, data_format: str, model_name: str) -> None:
    """The Keras model computes what the plan says, layer by layer: the same layers in the same order,
    each with the same activation, strides, padding, rates and so on. Weights alone would not show a
    twin built with other options (a ReLU LeNet loaded into the tanh one gives wrong answers)."""
    layers = [layer for layer in keras_model.layers
              if type(layer).__name__ != "InputLayer" and layer.name != SOFTMAX_LAYER]
    expected = [step.name for step in steps.steps]
    names = [layer.name for layer in layers]
    # A functional model lists its layers in its own topological order, which may interleave branches.
    if (names if steps.is_chain else sorted(names)) != (expected if steps.is_chain else sorted(expected)):
        raise CnnzooError(f"The Keras model's layers ({', '.join(layer.name for layer in layers)}) are not "
                          f"{model_name}'s ({', '.join(expected)}); convert a twin of the same zoo model and options.")
    for step in steps.steps:
        layer, reference = keras_model.get_layer(step.name), _layer(keras, step, data_format)
        if type(layer) is not type(reference) or _computation(layer) != _computation(reference):
            differs = sorted(key for key in {**_computation(layer), **_computation(reference)}
                             if _computation(layer).get(key) != _computation(reference).get(key))
            raise CnnzooError(f"The Keras layer {step.name} differs from {model_name}'s in {', '.join(differs) or 'type'}; "
                              "pass to_torch the options the twin was built with (such as activation='relu').")


def _twin(steps: Plan, name: str, data_format: str, softmax: bool):
    """The plan as Keras course code writes it: a ``Sequential`` where the network is a chain, the
    functional API where it has skips (ResNet), every layer named (conv1, pool1, dense1, ...)."""
    if data_format not in DATA_FORMATS:
        raise CnnzooError(f"Unknown data_format {data_format!r}; choose one of: {', '.join(DATA_FORMATS)}.")
    keras = import_keras()
    channels, height, width = steps.input_shape
    shape = (height, width, channels) if data_format == "channels_last" else (channels, height, width)
    inputs = keras.Input(shape=shape, name="input")
    layers = [_layer(keras, step, data_format) for step in steps.steps]
    if softmax:
        layers.append(keras.layers.Activation("softmax", name=SOFTMAX_LAYER))
    if steps.is_chain:
        return keras.Sequential([inputs, *layers], name=name)
    tensors = {"input": inputs}
    for step, layer in zip(steps.steps, layers):
        arguments = [tensors[source] for source in step.inputs]
        tensors[step.name] = layer(arguments if step.kind in ("add", "concat") else arguments[0])
    outputs = tensors[steps.output]
    if softmax:
        outputs = layers[-1](outputs)
    return keras.Model(inputs, outputs, name=name)


def _layer(keras, step: Step, data_format: str):
    """The Keras layer of one step, with every option that differs from PyTorch spelled out."""
    o, k, name = step.options, keras.layers, step.name
    if step.kind == "conv":
        return k.Conv2D(o["filters"], o["kernel_size"], strides=o["strides"], padding=o["padding"],
                        activation=o["activation"], use_bias=o["use_bias"], data_format=data_format, name=name)
    if step.kind == "dense":
        return k.Dense(o["units"], activation=o["activation"], use_bias=o["use_bias"], name=name)
    if step.kind == "bn":
        # PyTorch's hyperparameters, translated: Keras's momentum is the fraction of the old estimate kept
        # (PyTorch's 0.1 is Keras's 0.9), and epsilon is PyTorch's (1e-5; Keras's own default is 1e-3).
        # One difference cannot be configured away: Keras updates the moving variance with the biased batch
        # variance, PyTorch with the unbiased one, so when a twin trains in Keras the batch's share of each
        # update is (n - 1) / n of what PyTorch would add; converted weights and statistics are exact either way.
        axis = -1 if data_format == "channels_last" or not o["spatial"] else 1
        return k.BatchNormalization(axis=axis, momentum=1.0 - o["momentum"], epsilon=o["epsilon"],
                                    center=o["affine"], scale=o["affine"], name=name)
    if step.kind == "activation":
        return k.Activation(o["activation"], name=name)
    if step.kind in ("maxpool", "avgpool"):
        pool = k.MaxPooling2D if step.kind == "maxpool" else k.AveragePooling2D
        return pool(o["pool_size"], strides=o["strides"], padding=o["padding"], data_format=data_format, name=name)
    if step.kind == "gap":
        return k.GlobalAveragePooling2D(data_format=data_format, keepdims=o["keepdims"], name=name)
    if step.kind == "pad":
        return k.ZeroPadding2D(o["padding"], data_format=data_format, name=name)
    if step.kind == "flatten":
        # Keras flattens in (H, W, C) order for either data format; dense_kernel_to_keras reorders to match.
        return k.Flatten(data_format=data_format, name=name)
    if step.kind == "dropout":
        return k.Dropout(o["rate"], name=name)
    if step.kind == "add":
        return k.Add(name=name)
    if step.kind == "concat":
        axis = -1 if data_format == "channels_last" or not o["spatial"] else 1
        return k.Concatenate(axis=axis, name=name)
    raise AssertionError(f"plan step of unknown kind {step.kind!r}")


def _torch_tensors(step: Step, module: nn.Module) -> list[torch.Tensor]:
    """The module's tensors that the step's Keras layer holds, in Keras's order."""
    if step.kind in ("conv", "dense"):
        return [module.weight] + ([module.bias] if module.bias is not None else [])
    return layouts.batch_norm_tensors(module)


def _keras_shape(step: Step, tensor: torch.Tensor, index: int) -> tuple[int, ...]:
    if index == 0 and step.kind == "conv":
        out, inp, kh, kw = tensor.shape
        return kh, kw, inp, out
    if index == 0 and step.kind == "dense":
        return tuple(reversed(tensor.shape))
    return tuple(tensor.shape)


def _keras_weights(step: Step, module: nn.Module) -> list[np.ndarray]:
    tensors = _torch_tensors(step, module)
    if any(t.dtype != torch.float32 for t in tensors):
        raise CnnzooError(f"{step.module} holds {tensors[0].dtype} weights, but a Keras twin holds float32 (Keras's "
                          "torch backend computes dense layers in float32 even under float64); convert a model.float() copy.")
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise CnnzooError(f"The PyTorch weights of {step.module} hold NaN or infinite values; "
                          "a twin is made of finite weights only, so convert a model that trained without diverging.")
    if step.kind == "conv":
        return [layouts.conv_kernel_to_keras(tensors[0]), *map(layouts.to_numpy, tensors[1:])]
    if step.kind == "dense":
        return [layouts.dense_kernel_to_keras(tensors[0], step.flatten_from),
                *map(layouts.to_numpy, tensors[1:])]
    return list(map(layouts.to_numpy, tensors))


def _load_torch(module: nn.Module, step: Step, weights: list[np.ndarray]) -> None:
    targets = _torch_tensors(step, module)
    expected = [_keras_shape(step, t, i) for i, t in enumerate(targets)]
    if [np.shape(w) for w in weights] != expected:
        raise CnnzooError(f"The Keras layer {step.name} holds weights of shapes {[np.shape(w) for w in weights]}, but "
                          f"{step.module} needs {expected}; convert a twin of the same zoo model and options.")
    if step.kind == "conv":
        tensors = [layouts.conv_kernel_to_torch(weights[0]), *map(torch.from_numpy, weights[1:])]
    elif step.kind == "dense":
        tensors = [layouts.dense_kernel_to_torch(weights[0], step.flatten_from), *map(torch.from_numpy, weights[1:])]
    else:
        tensors = list(map(torch.from_numpy, weights))
    for tensor in tensors:
        if not bool(torch.isfinite(tensor).all()):
            raise CnnzooError(f"The Keras layer {step.name} holds NaN or infinite weights; "
                              "convert a model that trained without diverging.")
    for target, tensor in zip(targets, tensors):
        if target.dtype != tensor.dtype:
            raise CnnzooError(f"The Keras layer {step.name} holds {tensor.dtype} weights, but {step.module} is "
                              f"{target.dtype}; convert the model to {tensor.dtype} first.")
        target.copy_(tensor)
    if step.kind == "bn":
        # Keras keeps no count of batches seen; with a momentum set, PyTorch uses it for nothing.
        module.num_batches_tracked.zero_()


def _input_shape_of(model: nn.Module, input_shape) -> tuple[int, int, int]:
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise CnnzooError(f"{type(model).__name__} was not built by cnnzoo.build_model, so its input shape is unknown; "
                          "pass input_shape=(C, H, W).")
    if len(tuple(shape)) != 3:
        raise CnnzooError(f"input_shape must be (channels, height, width), got {shape!r}.")
    return tuple(int(n) for n in shape)


def _data_format_of(keras_model) -> str:
    formats = {layer.data_format for layer in keras_model.layers if getattr(layer, "data_format", None)}
    if len(formats) > 1:
        raise CnnzooError(f"The Keras model {keras_model.name!r} mixes data formats {sorted(formats)}; "
                          "a twin uses one throughout.")
    return formats.pop() if formats else "channels_last"


def _torch_input_shape(keras_model, data_format: str) -> tuple[int, int, int]:
    shape = tuple(keras_model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise CnnzooError(f"The Keras model {keras_model.name!r} takes inputs of shape {shape}, not a fixed image; "
                          "a twin takes (H, W, C) or (C, H, W) images.")
    if data_format == "channels_last":
        height, width, channels = shape
        return channels, height, width
    return shape
