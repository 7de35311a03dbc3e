"""Models by name: builders register themselves, ``build_model`` fills in the defaults."""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models.init import init_weights
from cnnzoo.models.shapes import as_size
from cnnzoo.nn import norm_layers

# Every builder takes these; anything else in its signature is a model-specific option.
_COMMON = ("in_channels", "num_classes", "input_size")
# Sanity bounds, far above any real use (1 or 3 channels, 10 classes), that keep an absurd request
# from dying in a multi-GB allocation.
MAX_CHANNELS = 64
MAX_CLASSES = 100_000
# Filled in from ``norm``, never passed by callers: a builder that takes ``norm_layer`` has
# batch norm, and ``norm_layer_1d`` as well when its dense layers are normalized too.
_NORM_PARAMS = ("norm_layer", "norm_layer_1d")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (C, H, W) the model is defined on
    num_classes: int
    description: str
    uses_norm: bool

    @property
    def options(self) -> tuple[str, ...]:
        """Model-specific keyword options ``build_model`` accepts for this model."""
        params = inspect.signature(self.builder).parameters
        return tuple(p for p in params if p not in _COMMON + _NORM_PARAMS)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, description: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated builder under ``name`` with its default input and classes."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        params = inspect.signature(builder).parameters
        missing = [p for p in _COMMON if p not in params]
        if missing:
            raise TypeError(f"builder for {name!r} lacks parameters {missing}")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            description=description,
            uses_norm="norm_layer" in params,
        )
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CnnzooError(
            f"Unknown model {name!r}; choose one of: {', '.join(list_models())}."
        ) from None


def build_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | Sequence[int] | None = None,
    norm: str = "torch",
    init: str = "default",
    **options,
) -> nn.Module:
    """Build model ``name``; unset arguments take the registered defaults.

    ``norm`` ("torch" or "scratch") picks the batch-norm implementation; models without batch
    norm accept and ignore it, so one training config can drive every model. ``init`` is a
    scheme of :func:`cnnzoo.models.init.init_weights`. ``options`` are model-specific
    (``ModelSpec.options``), e.g. ``activation`` for lenet5_classic.
    """
    spec = get_model_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) if spec.options else "none"
        raise CnnzooError(
            f"Model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {valid}."
        )
    bn1d, bn2d = norm_layers(norm)  # resolved even when unused, so a bad name never passes
    params = inspect.signature(spec.builder).parameters
    if "norm_layer" in params:
        options["norm_layer"] = bn2d
    if "norm_layer_1d" in params:
        options["norm_layer_1d"] = bn1d
    default_channels, *default_size = spec.input_shape
    in_channels = default_channels if in_channels is None else in_channels
    num_classes = spec.num_classes if num_classes is None else num_classes
    for arg, value, largest in (("in_channels", in_channels, MAX_CHANNELS), ("num_classes", num_classes, MAX_CLASSES)):
        if not isinstance(value, int) or value < 1:
            raise CnnzooError(f"{arg} must be a positive integer, got {value!r}.")
        if value > largest:
            raise CnnzooError(f"{arg}={value} is more than cnnzoo builds models for (at most {largest}); "
                              "choose a smaller number.")
    model = spec.builder(
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=as_size(default_size if input_size is None else input_size),
        **options,
    )
    init_weights(model, init)
    # What the model was built as, for code that only holds the module (cnnzoo.keras.from_torch).
    model.zoo_name, model.input_shape = name, (in_channels, *as_size(default_size if input_size is None else input_size))
    return model
