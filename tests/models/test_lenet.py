"""LeNet-5 (modern and classic) and LeNet-BN: parameter counts, input sizes, activation, batch norm."""

import pytest
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, count_parameters, get_model_spec


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("lenet5", {}, 61_706),
        ("lenet5_classic", {}, 61_706),
        ("lenet_bn", {}, 44_878),
    ],
)
def test_parameter_counts_match_spec(meta_model, name, kwargs, expected):
    assert count_parameters(meta_model(name, **kwargs)) == expected


@pytest.mark.parametrize(
    "name, size, channels",
    [
        ("lenet5", 32, 1),
        ("lenet5", (28, 40), 1),
        ("lenet_bn", 64, 3),
    ],
)
def test_other_resolutions_and_channels(assert_other_input, name, size, channels):
    assert_other_input(name, size, channels)


def test_too_small_input_names_the_minimum(assert_minimum_input):
    # By hand: lenet5's second pool needs a 2x2 map.
    assert_minimum_input("lenet5", 12)


def test_lenet5_classic_activation_option():
    acts = {type(m) for m in build_model("lenet5_classic", activation="relu").modules()}
    assert nn.ReLU in acts and nn.Tanh not in acts
    assert "activation=relu" in get_model_spec("lenet5_classic").description  # the material's form
    assert nn.Tanh in {type(m) for m in build_model("lenet5_classic").modules()}
    with pytest.raises(CnnzooError, match="Unknown activation 'swish'"):
        build_model("lenet5_classic", activation="swish")


def test_batch_norm_placement(batch_norm_counts):
    assert batch_norm_counts("lenet_bn") == (2, 2)
    assert get_model_spec("lenet_bn").uses_norm
