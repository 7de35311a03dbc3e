import dataclasses

import pytest
import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, get_model_spec, list_models, register_model

EXPECTED = {
    "lenet5": ((1, 28, 28), 10),
    "lenet5_classic": ((1, 32, 32), 10),
    "lenet_bn": ((1, 28, 28), 10),
    "alexnet": ((1, 224, 224), 10),
    "alexnet_imagenet": ((3, 227, 227), 1000),
    "alexnet_bn": ((1, 224, 224), 10),
    "vgg11": ((1, 224, 224), 10),
    "vgg11_small": ((1, 224, 224), 10),
    "vgg11_bn": ((1, 224, 224), 10),
    "vgg16": ((3, 224, 224), 1000),
    "resnet18": ((1, 96, 96), 10),
    "resnet18_tv": ((3, 224, 224), 1000),
    "alexnet_tv": ((3, 224, 224), 1000),
    "alexnet_bn_keras": ((3, 32, 32), 10),
    "vgg11_tv": ((3, 224, 224), 1000),
    "vgg16_tv": ((3, 224, 224), 1000),
    "wrn16_4": ((1, 28, 28), 10),
    "wrn16_8": ((1, 28, 28), 10),
    "wrn28_10": ((1, 28, 28), 10),
    "wrn40_4": ((1, 28, 28), 10),
}


def test_registered_models_and_defaults():
    assert list_models() == sorted(EXPECTED)
    for name, (shape, classes) in EXPECTED.items():
        spec = get_model_spec(name)
        assert (spec.name, spec.input_shape, spec.num_classes) == (name, shape, classes)
        assert spec.description


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_at_default_input(name):
    spec = get_model_spec(name)
    torch.manual_seed(0)
    model = build_model(name).train()
    x = torch.randn(2, *spec.input_shape)
    out = model(x)
    assert out.shape == (2, spec.num_classes)
    nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


def test_models_without_batch_norm_say_so():
    for name in ("lenet5", "lenet5_classic", "alexnet", "alexnet_tv", "vgg11", "vgg16", "vgg11_tv", "vgg16_tv"):
        assert not get_model_spec(name).uses_norm


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model_spec("lenet5").num_classes = 3


def test_unknown_model_lists_valid_names():
    with pytest.raises(CnnzooError, match="Unknown model 'lenet6'; choose one of: alexnet, ") as e:
        build_model("lenet6")
    assert all(name in str(e.value) for name in list_models())


def test_unknown_option_names_it_and_the_valid_ones():
    with pytest.raises(CnnzooError, match="no option 'activaton'; its options are: activation"):
        build_model("lenet5_classic", activaton="relu")
    with pytest.raises(CnnzooError, match="no option 'dropout'; its options are: none"):
        build_model("lenet5", dropout=0.1)
    # norm layers come from `norm`, never as options
    with pytest.raises(CnnzooError, match="no option 'norm_layer'"):
        build_model("lenet_bn", norm_layer=nn.BatchNorm2d)


def test_options_listed_on_spec():
    assert get_model_spec("resnet18").options == ("shortcut_norm", "conv_bias")
    assert get_model_spec("vgg11_bn").options == ("dropout",)
    assert get_model_spec("lenet5").options == ()


def test_norm_is_validated_and_ignored_without_batch_norm():
    build_model("lenet5", norm="torch")
    with pytest.raises(CnnzooError, match="Unknown norm 'cudnn'"):
        build_model("lenet5", norm="cudnn")


@pytest.mark.parametrize("arg", ["num_classes", "in_channels"])
def test_bad_counts(arg):
    with pytest.raises(CnnzooError, match=f"{arg} must be a positive integer"):
        build_model("lenet5", **{arg: 0})


def test_overrides_reach_the_model():
    model = build_model("lenet5", num_classes=3, in_channels=3, input_size=(32, 36))
    assert model.features[0].in_channels == 3
    assert model.classifier[-1].out_features == 3
    assert model.classifier[1].in_features == 16 * 6 * 7


def test_register_rejects_duplicates_and_incomplete_builders():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("lenet5", (1, 28, 28), 10, "again")(lambda **kw: None)
    with pytest.raises(TypeError, match="lacks parameters"):

        @register_model("broken", (1, 28, 28), 10, "no input_size")
        def broken(*, in_channels, num_classes):
            return nn.Identity()

    assert "broken" not in list_models()


def test_absurd_sizes_are_refused_before_anything_is_allocated():
    from cnnzoo.cli import main

    with pytest.raises(CnnzooError, match="larger than cnnzoo builds models for"):
        build_model("vgg11", input_size=100_000)
    with pytest.raises(CnnzooError, match="num_classes=1000000000 is more than"):
        build_model("lenet5", num_classes=10**9)
    with pytest.raises(CnnzooError, match="in_channels=100000 is more than"):
        build_model("lenet5", in_channels=100_000)
    assert main(["summary", "lenet5", "--input", "1x100000x100000"]) == 2
