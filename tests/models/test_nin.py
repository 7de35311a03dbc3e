"""Network in Network in d2l's form."""

import torch
from torch import nn

from cnnzoo.models import NiNBlock, build_model, count_parameters, get_model_spec


def test_parameter_count_is_the_books(meta_model):
    # d2l's own nin code, run once for 1 channel and 10 classes, gives 1,992,166 parameters.
    assert count_parameters(meta_model("nin")) == 1_992_166


def test_nin_block_is_one_spatial_conv_then_two_1x1_convs():
    block = NiNBlock(1, 96, 11, 4, 0)
    convs = [m for m in block if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(11, 11), (1, 1), (1, 1)]
    assert convs[0].stride == (4, 4) and all(c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.ReLU) for m in block) == 3
    assert block(torch.zeros(1, 1, 224, 224)).shape == (1, 96, 54, 54)


def test_no_dense_layer_and_logits_are_class_channels_averaged(meta_model):
    model = meta_model("nin")
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert model.features[-1][0].out_channels == 10
    assert not get_model_spec("nin").uses_norm


def test_logits_are_global_averages_of_the_last_block():
    torch.manual_seed(0)
    model = build_model("nin", input_size=96).eval()
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), model.features(x).mean((2, 3)))


def test_minimum_input(assert_minimum_input):
    assert_minimum_input("nin", 67)


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("nin", 96, 3)
