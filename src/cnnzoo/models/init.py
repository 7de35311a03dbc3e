"""Weight initialization schemes, applied after a model is built."""

from torch import nn

from cnnzoo.errors import CnnzooError

INITS = ("default", "xavier", "kaiming")


def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialize the conv and dense weights of ``model`` in place and return it.

    "default" keeps PyTorch's own initialization. "xavier" is Xavier-uniform with zero bias,
    the course's choice, which suits its sigmoid LeNet. "kaiming" is He-normal (fan-in) with
    zero bias, which keeps ReLU activations from shrinking or growing with depth. Batch-norm
    layers keep their identity start (weight 1, bias 0) in every scheme.
    """
    if scheme not in INITS:
        raise CnnzooError(f"Unknown init {scheme!r}; choose one of: {', '.join(INITS)}.")
    if scheme == "default":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
