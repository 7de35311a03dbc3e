"""ResNet-18 in its course (d2l) and torchvision forms."""

import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.models import build_model, count_parameters, get_model_spec


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("resnet18_tv", {}, 11_689_512),
        ("resnet18", {}, 11_174_474),
        ("resnet18", {"conv_bias": True}, 11_178_378),  # d2l's count: a bias on every conv
        (
            "resnet18",
            {"in_channels": 3, "num_classes": 1000, "input_size": 224, "shortcut_norm": True},
            11_689_512,
        ),
    ],
)
def test_parameter_counts_match_spec(meta_model, name, kwargs, expected):
    assert count_parameters(meta_model(name, **kwargs)) == expected


def test_course_resnet18_has_bare_biased_shortcut_convs():
    model = build_model("resnet18")
    shortcut = model.layer2[0].downsample
    assert len(shortcut) == 1 and shortcut[0].bias is not None
    assert model.layer1[0].downsample is None
    # Each shortcut BN adds 2 parameters per channel where the bias it replaces had 1.
    tv_form = build_model("resnet18", shortcut_norm=True)
    assert count_parameters(tv_form) - count_parameters(model) == 128 + 256 + 512


def test_resnet18_conv_bias_is_d2l_form(meta_model):
    model = meta_model("resnet18", conv_bias=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and all(c.bias is not None for c in convs)
    assert all(c.bias is None for c in meta_model("resnet18").modules() if isinstance(c, nn.Conv2d) and c.kernel_size != (1, 1))


def test_resnet18_tv_loads_torchvision_weights_with_identical_logits():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    # Non-trivial running statistics, so eval-mode BN is really compared.
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = build_model("resnet18_tv")
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)  # any size exercises every layer; 64 keeps the test quick
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("resnet18", 28, 3)


@pytest.mark.parametrize("name, bn1d, bn2d", [("resnet18", 0, 17), ("resnet18_tv", 0, 20)])
def test_batch_norm_placement(batch_norm_counts, name, bn1d, bn2d):
    assert batch_norm_counts(name) == (bn1d, bn2d)
    assert get_model_spec(name).uses_norm
