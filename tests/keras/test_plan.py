"""The plan: which Keras layer stands for which PyTorch operation, and why the traps are handled."""

import pytest
import torch
from torch import nn

import cnnzoo.keras as ck
from cnnzoo.errors import CnnzooError
from cnnzoo.keras.plan import plan
from cnnzoo.models import build_model
from cnnzoo.nn import BatchNorm2d as ScratchBatchNorm2d
from cnnzoo.nn.same_padding import SamePadding2d

keras = ck.import_keras()


def _kinds(steps):
    return [(step.kind, step.options.get("padding")) for step in steps.steps]


def test_lenet5_plan_folds_activations_and_marks_the_flatten():
    steps = plan(build_model("lenet5"), (1, 28, 28))
    assert [s.name for s in steps.steps] == ["conv1", "pool1", "conv2", "pool2", "flatten", "dense1", "dense2", "dense3"]
    assert steps.steps[0].options["activation"] == "sigmoid" and steps.steps[0].options["padding"] == "same"
    assert steps.steps[-1].options["activation"] is None  # logits
    assert steps.steps[5].flatten_from == (16, 5, 5) and steps.steps[6].flatten_from is None
    assert steps.is_chain


def test_stride_two_padding_is_explicit_not_same():
    # ResNet's stem: 7x7 stride 2 with PyTorch's symmetric 3 pixels. TF 'same' would pad 2 above and 3 below
    # on an even input, which shifts every output pixel; the plan writes ZeroPadding2D(3) + 'valid' instead.
    steps = plan(build_model("resnet18"), (1, 96, 96))
    assert _kinds(steps)[:2] == [("pad", ((3, 3), (3, 3))), ("conv", "valid")]
    assert not steps.is_chain


def _stem_logits(padding: str):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 7, stride=2, padding=3, bias=False)
    x = torch.randn(1, 1, 96, 96)
    layer = keras.layers.Conv2D(2, 7, strides=2, padding=padding, use_bias=False)
    layer.build((None, 96 + (6 if padding == "valid" else 0), 96 + (6 if padding == "valid" else 0), 1))
    layer.set_weights([conv.weight.detach().permute(2, 3, 1, 0).numpy()])
    inputs = x.permute(0, 2, 3, 1)
    if padding == "valid":
        inputs = torch.nn.functional.pad(inputs.permute(0, 3, 1, 2), (3, 3, 3, 3)).permute(0, 2, 3, 1)
    got = torch.from_numpy(keras.ops.convert_to_numpy(layer(inputs.numpy()))).permute(0, 3, 1, 2)
    return got, conv(x).detach()


def test_same_padding_at_stride_two_really_differs_from_pytorchs():
    # The negative control for the test above: Keras 'same' at stride 2 is not PyTorch's padding=3.
    same, expected = _stem_logits("same")
    assert (same - expected).abs().max() > 1e-2
    explicit, expected = _stem_logits("valid")
    torch.testing.assert_close(explicit, expected, rtol=1e-5, atol=1e-5)


def test_tf_same_padding_folds_into_the_keras_layers():
    steps = plan(build_model("alexnet_bn_keras"), (3, 32, 32))
    convs = [s for s in steps.steps if s.kind == "conv"]
    pools = [s for s in steps.steps if s.kind == "maxpool"]
    assert convs[0].options["strides"] == (4, 4) and convs[0].options["padding"] == "same"
    assert all(p.options["padding"] == "same" for p in pools)
    assert not any(s.kind == "pad" for s in steps.steps)


def test_a_padded_max_pool_needs_a_non_negative_input():
    after_relu = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    assert [s.kind for s in plan(after_relu, (1, 12, 12)).steps] == ["conv", "pad", "maxpool"]
    raw = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, 2, 1))
    with pytest.raises(CnnzooError, match="padded max pool 1 on an input that may be negative"):
        plan(raw, (1, 12, 12))


class _TwoPaths(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Conv2d(1, 2, 1), nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.left(x), self.right(x)], 1)


class _FlatConcat(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], 0)


def test_channel_concatenation_becomes_one_concat_step():
    steps = plan(_TwoPaths(), (1, 6, 6))
    assert [(s.name, s.kind, s.inputs) for s in steps.steps] == [
        ("conv1", "conv", ("input",)), ("conv2", "conv", ("input",)), ("concat", "concat", ("conv1", "conv2"))]
    assert steps.steps[-1].options == {"spatial": True} and not steps.is_chain
    with pytest.raises(CnnzooError, match="concatenation along axis 0"):
        plan(_FlatConcat(), (1, 6, 6))


def test_concatenated_relu_outputs_stay_non_negative_for_a_padded_pool():
    # GoogLeNet's pools read concatenations of ReLU outputs: zero padding must still be allowed.
    steps = plan(build_model("googlenet"), (1, 96, 96))
    pools = [s for s in steps.steps if s.kind == "maxpool"]
    assert sum(s.kind == "concat" for s in steps.steps) == 9 and len(pools) == 4 + 9


def test_a_ceil_mode_max_pool_pads_its_last_window_only_when_it_adds_an_output():
    ceil = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True))
    steps = plan(ceil, (1, 12, 12))  # 10x10 -> ceil(3.5) + 1 = 5 outputs, the last window one pixel short
    assert _kinds(steps) == [("conv", "valid"), ("pad", ((0, 1), (0, 1))), ("maxpool", "valid")]
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        expected = ceil(x)
    twin = ck.from_torch(ceil, (1, 12, 12))
    actual = torch.from_numpy(keras.ops.convert_to_numpy(twin(x.permute(0, 2, 3, 1).numpy()))).permute(0, 3, 1, 2)
    assert torch.allclose(actual, expected, atol=1e-6)
    exact = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 1, 1, ceil_mode=True))
    assert _kinds(plan(exact, (1, 12, 12))) == [("conv", "valid"), ("maxpool", "same")]
    with pytest.raises(CnnzooError, match="ceil-mode max pool 1 on an input that may be negative"):
        plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, 2, ceil_mode=True)), (1, 12, 12))
    with pytest.raises(CnnzooError, match="ceil-mode average pool 1"):
        plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, 2, ceil_mode=True)), (1, 12, 12))


def test_an_unpaired_same_padding_becomes_zero_padding():
    model = nn.Sequential(SamePadding2d(3, 2), nn.AvgPool2d(3, 2))
    steps = plan(model, (1, 9, 10))
    assert _kinds(steps) == [("pad", ((1, 1), (0, 1))), ("avgpool", "valid")]


def test_adaptive_pools_become_global_or_nothing():
    resnet = plan(build_model("resnet18"), (1, 96, 96))
    assert resnet.steps[-2].kind == "gap" and resnet.steps[-1].kind == "dense"
    tv = plan(build_model("alexnet_tv"), (3, 224, 224))
    assert "gap" not in [s.kind for s in tv.steps]  # 6x6 -> 6x6 is no layer at all
    with pytest.raises(CnnzooError, match="adaptive pool avgpool from 3x3 to 6x6"):
        plan(build_model("alexnet_tv", input_size=128), (3, 128, 128))


def test_what_keras_cannot_express_is_one_sentence():
    with pytest.raises(CnnzooError, match=r"cannot write the module 0 \(LayerNorm\) of Sequential"):
        plan(nn.Sequential(nn.LayerNorm([1, 4, 4]), nn.Flatten(), nn.Linear(16, 2)), (1, 4, 4))
    with pytest.raises(CnnzooError, match="grouped, dilated"):
        plan(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), (2, 8, 8))
    scratch = build_model("lenet_bn", norm="scratch")
    scratch.features[1].denominator = "std_plus_eps"
    with pytest.raises(CnnzooError, match="std \\+ eps"):
        plan(scratch, (1, 28, 28))


class _AddsWithAlpha(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return torch.add(self.conv(x), x, alpha=3)


class _Branches(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_what_would_be_translated_wrongly_is_refused():
    with pytest.raises(CnnzooError, match="cannot write the operation call_function add"):
        plan(_AddsWithAlpha(), (1, 4, 4))  # a + 3b is not Keras's Add
    with pytest.raises(CnnzooError, match="cannot trace _Branches"):
        plan(_Branches(), (1, 4, 4))
    shift_only = nn.Sequential(nn.Conv2d(1, 2, 3), ScratchBatchNorm2d(2, bias=False))
    with pytest.raises(CnnzooError, match="scale but no shift"):
        plan(shift_only, (1, 6, 6))


def test_scratch_batch_norm_has_the_same_plan_as_torchs():
    torch_plan = plan(build_model("lenet_bn"), (1, 28, 28))
    scratch_plan = plan(build_model("lenet_bn", norm="scratch"), (1, 28, 28))
    assert [(s.name, s.kind, s.options) for s in torch_plan.steps] == [(s.name, s.kind, s.options) for s in scratch_plan.steps]


def test_planning_leaves_the_model_in_its_mode():
    model = build_model("lenet_bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan(model, (1, 28, 28))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
