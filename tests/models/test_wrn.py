"""Wide residual networks: the paper's parameter counts and its pre-activation block."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import WideBasicBlock, WideResNet, build_model, count_parameters, get_model_spec


def wrn_parameter_count(depth, widen, in_channels, num_classes):
    """WRN-depth-widen's parameters from the paper's definition, without building it: bias-free
    3x3 convs, BN (2 per channel) before each, 1x1 shortcut convs where the shape changes."""
    n = (depth - 4) // 6
    total = in_channels * 16 * 9  # stem
    channels = 16
    for width in (16 * widen, 32 * widen, 64 * widen):
        for block in range(n):
            total += 2 * channels + channels * width * 9 + 2 * width + width * width * 9
            if block == 0:  # stage entry: width (and, past the first stage, resolution) changes
                total += channels * width
            channels = width
    return total + 2 * channels + channels * num_classes + num_classes


@pytest.mark.parametrize("name, depth, widen, paper_millions",
                         [("wrn16_8", 16, 8, 11.0), ("wrn28_10", 28, 10, 36.5), ("wrn40_4", 40, 4, 8.9)])
def test_parameter_counts_match_the_formula_and_the_paper(meta_model, name, depth, widen, paper_millions):
    rgb = count_parameters(meta_model(name, in_channels=3))
    assert rgb == wrn_parameter_count(depth, widen, 3, 10)
    assert round(rgb / 1e6, 1) == paper_millions  # Zagoruyko & Komodakis, Table (CIFAR, 3 channels)
    # Fashion-MNIST's one channel saves only the stem's 2 x 16 x 9 weights.
    assert count_parameters(meta_model(name)) == wrn_parameter_count(depth, widen, 1, 10) == rgb - 2 * 16 * 9


def test_wrn16_4_count_matches_the_formula(meta_model):
    assert count_parameters(meta_model("wrn16_4", in_channels=3)) == wrn_parameter_count(16, 4, 3, 10) == 2_748_890


def test_block_is_pre_activation_with_a_projection_of_the_activated_input():
    torch.manual_seed(0)
    block = WideBasicBlock(4, 8, stride=2).eval()
    for bn in (block.bn1, block.bn2):  # non-trivial running statistics, so eval-mode BN is really compared
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    block.double()

    def bn_relu(t, bn):
        return F.relu(F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))

    activated = bn_relu(x, block.bn1)
    residual = F.conv2d(bn_relu(F.conv2d(activated, block.conv1.weight, stride=2, padding=1), block.bn2),
                        block.conv2.weight, padding=1)
    expected = residual + F.conv2d(activated, block.shortcut.weight, stride=2)
    with torch.no_grad():
        assert torch.allclose(block(x), expected, rtol=0, atol=1e-12)
    assert block(x).shape == (2, 8, 5, 5)


def test_layout_stem_stages_and_head():
    model = build_model("wrn16_8")
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.stride) == (1, 16, (1, 1))
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [2, 2, 2]
    assert [stage[0].conv1.stride for stage in (model.layer1, model.layer2, model.layer3)] == [(1, 1), (2, 2), (2, 2)]
    assert [stage[0].conv2.out_channels for stage in (model.layer1, model.layer2, model.layer3)] == [128, 256, 512]
    # Only each stage's first block changes shape; the rest add their input as is.
    stages = (model.layer1, model.layer2, model.layer3)
    assert all(stage[0].shortcut is not None and stage[1].shortcut is None for stage in stages)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.Dropout)) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.fc.in_features == 512 and get_model_spec("wrn16_8").uses_norm


def test_dropout_sits_between_the_convs_and_only_in_training():
    model = build_model("wrn16_8", dropout=0.3)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 6 and all(d.p == 0.3 for d in drops)
    x = torch.randn(2, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("wrn16_8", 32, 3)
    assert_other_input("wrn40_4", (20, 24), 1)


def test_scratch_norm_builds_cnnzoo_batch_norm():
    from cnnzoo.nn import BatchNorm2d as ScratchBatchNorm2d

    model = build_model("wrn16_8", norm="scratch")
    assert sum(isinstance(m, ScratchBatchNorm2d) for m in model.modules()) == 13  # 2 per block x 6, and the head's


@pytest.mark.parametrize("depth, dropout", [(18, 0.0), (4, 0.0), (16, 1.0), (16, -0.1)])
def test_bad_depth_or_dropout_is_one_sentence(depth, dropout):
    with pytest.raises(CnnzooError, match="6n \\+ 4|dropout must be"):
        WideResNet(depth, 2, 1, 10, dropout=dropout)
