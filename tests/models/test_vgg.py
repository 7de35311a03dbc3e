"""VGG-11/16 in their course, small, batch-norm and torchvision forms."""

import pytest
import torch
import torchvision

from cnnzoo.errors import CnnzooError
from cnnzoo.models import count_parameters, get_model_spec


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("vgg11", {}, 128_806_154),
        ("vgg11_small", {}, 43_093_322),
        ("vgg16", {}, 138_357_544),
    ],
)
def test_parameter_counts_match_spec(meta_model, name, kwargs, expected):
    assert count_parameters(meta_model(name, **kwargs)) == expected


def test_vgg16_has_torchvision_parameter_count(meta_model):
    with torch.device("meta"):
        reference = torchvision.models.vgg16(weights=None)
    assert count_parameters(meta_model("vgg16")) == count_parameters(reference)


@pytest.mark.parametrize(
    "name, builder, size",
    [
        ("vgg11_tv", torchvision.models.vgg11, 32),
        ("vgg16_tv", torchvision.models.vgg16, 32),
    ],
)
def test_torchvision_forms_load_torchvision_weights_with_identical_logits(
        assert_loads_torchvision_weights, name, builder, size):
    assert_loads_torchvision_weights(name, builder, size)


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("vgg11_small", 64, 1)


def test_too_small_input_names_the_minimum(assert_minimum_input):
    # By hand: VGG halves five times.
    assert_minimum_input("vgg11", 32)


def test_minimum_applies_to_each_side(meta_model):
    with pytest.raises(CnnzooError, match="at least 32x32 pixels, got 224x16"):
        meta_model("vgg11", input_size=(224, 16))


def test_batch_norm_placement(batch_norm_counts):
    assert batch_norm_counts("vgg11_bn") == (0, 8)
    assert get_model_spec("vgg11_bn").uses_norm
