"""DenseNet in d2l's form and torchvision's DenseNet-121."""

import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.models import DenseBlock, TransitionBlock, build_model, count_parameters, get_model_spec


@pytest.mark.parametrize("name, expected", [
    ("densenet", 758_226),  # d2l's own DenseNet code, run once for 1 channel and 10 classes
    ("densenet121_tv", 7_978_856),  # torchvision's densenet121
])
def test_parameter_counts(meta_model, name, expected):
    assert count_parameters(meta_model(name)) == expected


def test_dense_block_appends_growth_rate_channels_per_layer():
    block = DenseBlock(2, 3, 10, nn.BatchNorm2d, conv_bias=True).eval()
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (4, 23, 8, 8) and block.out_channels == 23
        assert torch.equal(y[:, :3], x)  # the input passes through untouched, the layers' outputs follow
        first = block.denselayer1(x)
        assert torch.equal(y[:, 3:13], first)
        assert torch.equal(y[:, 13:], block.denselayer2(torch.cat([x, first], 1)))


def test_transition_block_halves_resolution_and_sets_channels():
    block = TransitionBlock(23, 10, nn.BatchNorm2d)
    assert [type(m) for m in block] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.AvgPool2d]
    assert block(torch.randn(4, 23, 8, 8)).shape == (4, 10, 4, 4)


def test_course_form_is_d2ls(meta_model):
    model = meta_model("densenet")
    blocks = [m for m in model.features if isinstance(m, DenseBlock)]
    assert [len(list(b.children())) for b in blocks] == [4, 4, 4, 4]
    assert [b.out_channels for b in blocks] == [192, 224, 240, 248]
    assert sum(isinstance(m, TransitionBlock) for m in model.features) == 3
    assert all(c.bias is not None for c in model.modules() if isinstance(c, nn.Conv2d))
    assert model.classifier.in_features == 248 and get_model_spec("densenet").uses_norm


def test_densenet121_tv_loads_torchvision_weights_with_identical_logits(assert_loads_torchvision_weights):
    assert_loads_torchvision_weights("densenet121_tv", torchvision.models.densenet121, 64)


def test_densenet121_tv_matches_torchvision_with_running_statistics():
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None)
    for m in reference.modules():  # non-trivial statistics, so eval-mode BN is really compared
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = build_model("densenet121_tv")
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))


def test_minimum_input(assert_minimum_input):
    assert_minimum_input("densenet", 29)


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("densenet", 64, 3)
