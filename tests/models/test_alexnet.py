"""AlexNet in its course, ImageNet, batch-norm, torchvision and Keras forms."""

import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.models import build_model, count_parameters, get_model_spec


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("alexnet", {}, 46_764_746),
        ("alexnet_imagenet", {}, 62_378_344),
        ("alexnet_bn_keras", {}, 25_709_350),  # Keras' trainable count
    ],
)
def test_parameter_counts_match_spec(meta_model, name, kwargs, expected):
    assert count_parameters(meta_model(name, **kwargs)) == expected


def test_keras_alexnet_bn_counts_as_keras_does(meta_model):
    model = meta_model("alexnet_bn_keras")
    moving = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert count_parameters(model) + moving == 25_730_506  # Keras' total: moving statistics included
    assert moving == 25_730_506 - 25_709_350
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == 9 and all((m.eps, m.momentum) == (1e-3, 0.01) for m in norms)


def test_keras_alexnet_bn_pads_asymmetrically_as_tensorflow():
    # 'same' at stride 4 on 32 pixels: 8 outputs need 7 pixels of padding, 3 above and 4 below.
    torch.manual_seed(0)
    model = build_model("alexnet_bn_keras").eval()
    x = torch.randn(2, 3, 32, 32)
    pad, conv = model.features[0], model.features[1]
    expected = nn.functional.conv2d(nn.functional.pad(x, (3, 4, 3, 4)), conv.weight, conv.bias, stride=4)
    assert torch.equal(conv(pad(x)), expected)
    shapes = []
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                shapes.append(tuple(x.shape[1:]))
    assert shapes == [(96, 4, 4), (256, 2, 2), (256, 1, 1)]


def test_torchvision_form_loads_torchvision_weights_with_identical_logits(assert_loads_torchvision_weights):
    assert_loads_torchvision_weights("alexnet_tv", torchvision.models.alexnet, 64)


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("alexnet", 112, 1)


def test_too_small_input_names_the_minimum(assert_minimum_input):
    # By hand: AlexNet's last pool needs 3x3, so its first conv must yield 15x15: (s + 2 - 11) // 4 + 1 >= 15.
    assert_minimum_input("alexnet", 65)


@pytest.mark.parametrize("name, bn1d, bn2d", [("alexnet_bn", 2, 5), ("alexnet_bn_keras", 4, 5)])
def test_batch_norm_placement(batch_norm_counts, name, bn1d, bn2d):
    assert batch_norm_counts(name) == (bn1d, bn2d)
    assert get_model_spec(name).uses_norm
