"""Weight initialization schemes, applied after a model is built."""

from torch import nn

from cnnzoo.errors import CnnzooError

INITS = ("default", "xavier", "keras", "kaiming")


def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialize the conv and dense weights of ``model`` in place and return it.

    "default" keeps PyTorch's own initialization. "xavier" is the course's (and d2l's)
    ``init_weights``: Xavier-uniform weights, while the biases keep PyTorch's default
    uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) draw, so a model built and initialized under the
    same seed starts exactly as the course's. "keras" is Keras' default for Conv2D and Dense:
    Glorot-uniform (the same distribution as Xavier-uniform) weights and zero biases.
    "kaiming" is He-normal (fan-in) with zero bias, which keeps ReLU activations from shrinking
    or growing with depth. Batch-norm layers keep their identity start (weight 1, bias 0) in
    every scheme.
    """
    if scheme not in INITS:
        raise CnnzooError(f"Unknown init {scheme!r}; choose one of: {', '.join(INITS)}.")
    if scheme == "default":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme in ("xavier", "keras"):
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None and scheme != "xavier":
                nn.init.zeros_(module.bias)
    return model
