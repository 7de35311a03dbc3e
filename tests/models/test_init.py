import math

import pytest
import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, init_weights


def weighted(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def fans(layer):
    w = layer.weight
    receptive = w[0][0].numel()
    return w.shape[1] * receptive, w.shape[0] * receptive


def test_xavier_reinitializes_only_weights_as_the_course_does():
    torch.manual_seed(0)
    default = build_model("lenet5")
    torch.manual_seed(0)
    xavier = build_model("lenet5", init="xavier")
    for d, x in zip(weighted(default), weighted(xavier)):
        fan_in, fan_out = fans(x)
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert x.weight.abs().max() <= bound
        assert not torch.equal(d.weight, x.weight)
        # The biases are PyTorch's default draw, bounded by 1/sqrt(fan_in) and untouched: the
        # same seed gives the same biases with or without the scheme.
        assert torch.equal(x.bias, d.bias)
        assert torch.count_nonzero(x.bias) == x.bias.numel()
        assert x.bias.abs().max() <= 1 / math.sqrt(fan_in)
    # The dense 400->120 layer has 48,000 weights: their spread is Xavier's, not PyTorch's.
    layer = xavier.classifier[1]
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (400 + 120)), rel=0.03)
    assert default.classifier[1].weight.abs().max() <= 1 / math.sqrt(400)
    # Uniform on +-1/sqrt(fan_in): the 120 biases spread with std bound/sqrt(3).
    assert layer.bias.std().item() == pytest.approx(1 / math.sqrt(400) / math.sqrt(3), rel=0.2)


def test_xavier_matches_the_course_init_weights_on_the_same_seed():
    def init_weights(m):  # the course's (and d2l's) function, verbatim in behaviour
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)

    torch.manual_seed(3)
    course = build_model("lenet5")
    course.apply(init_weights)
    torch.manual_seed(3)
    ours = build_model("lenet5", init="xavier")
    for (name, a), b in zip(course.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def test_keras_init_is_glorot_uniform_with_zero_bias():
    torch.manual_seed(0)
    model = build_model("lenet5", init="keras")
    for layer in weighted(model):
        fan_in, fan_out = fans(layer)
        assert layer.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        assert torch.count_nonzero(layer.bias) == 0
    assert model.classifier[1].weight.std().item() == pytest.approx(math.sqrt(2 / (400 + 120)), rel=0.03)


def test_kaiming_spread_and_zero_bias():
    torch.manual_seed(0)
    model = build_model("alexnet", init="kaiming", input_size=65)
    layer = model.features[6]  # conv 256->384, 3x3
    fan_in, _ = fans(layer)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    assert all(torch.count_nonzero(m.bias) == 0 for m in weighted(model))


def test_init_leaves_batch_norm_at_identity():
    model = build_model("lenet_bn", init="xavier")
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_unknown_init():
    with pytest.raises(CnnzooError, match="Unknown init 'he'; choose one of: default, xavier, keras, kaiming"):
        init_weights(nn.Linear(2, 2), "he")
