import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, count_parameters, get_model_spec, list_models


def meta_model(name, **kwargs):
    # Parameter counts need shapes only: building on the meta device skips the 100M+ weights.
    with torch.device("meta"):
        return build_model(name, **kwargs)


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


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("lenet5", {}, 61_706),
        ("lenet5_classic", {}, 61_706),
        ("lenet_bn", {}, 44_878),
        ("alexnet", {}, 46_764_746),
        ("alexnet_imagenet", {}, 62_378_344),
        ("vgg11", {}, 128_806_154),
        ("vgg11_small", {}, 43_093_322),
        ("vgg16", {}, 138_357_544),
        ("resnet18_tv", {}, 11_689_512),
        ("resnet18", {}, 11_174_474),
        ("resnet18", {"conv_bias": True}, 11_178_378),  # d2l's count: a bias on every conv
        ("alexnet_bn_keras", {}, 25_709_350),  # Keras' trainable count
        (
            "resnet18",
            {"in_channels": 3, "num_classes": 1000, "input_size": 224, "shortcut_norm": True},
            11_689_512,
        ),
    ],
)
def test_parameter_counts_match_spec(name, kwargs, expected):
    assert count_parameters(meta_model(name, **kwargs)) == expected


def test_vgg16_has_torchvision_parameter_count():
    with torch.device("meta"):
        reference = torchvision.models.vgg16(weights=None)
    assert count_parameters(meta_model("vgg16")) == count_parameters(reference)


def test_course_resnet18_has_bare_biased_shortcut_convs():
    model = build_model("resnet18")
    shortcut = model.layer2[0].downsample
    assert len(shortcut) == 1 and shortcut[0].bias is not None
    assert model.layer1[0].downsample is None
    # Each shortcut BN adds 2 parameters per channel where the bias it replaces had 1.
    tv_form = build_model("resnet18", shortcut_norm=True)
    assert count_parameters(tv_form) - count_parameters(model) == 128 + 256 + 512


def test_keras_alexnet_bn_counts_as_keras_does():
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


@pytest.mark.parametrize(
    "name, builder, size",
    [
        ("alexnet_tv", torchvision.models.alexnet, 64),
        ("vgg11_tv", torchvision.models.vgg11, 32),
        ("vgg16_tv", torchvision.models.vgg16, 32),
    ],
)
def test_torchvision_forms_load_torchvision_weights_with_identical_logits(name, builder, size):
    torch.manual_seed(0)
    reference = builder(weights=None).double().eval()
    model = meta_model(name).eval()  # weights come from the reference: no second 138M-weight init
    assert count_parameters(model) == count_parameters(reference)
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)  # the adaptive pool takes small inputs
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_resnet18_conv_bias_is_d2l_form():
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


@pytest.mark.parametrize(
    "name, size, channels",
    [
        ("alexnet", 112, 1),
        ("lenet5", 32, 1),
        ("vgg11_small", 64, 1),
        ("lenet5", (28, 40), 1),
        ("resnet18", 28, 3),
        ("lenet_bn", 64, 3),
    ],
)
def test_other_resolutions_and_channels(name, size, channels):
    model = build_model(name, input_size=size, in_channels=channels, num_classes=7).eval()
    h, w = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        assert model(torch.randn(2, channels, h, w)).shape == (2, 7)


# By hand: lenet5's second pool needs a 2x2 map; VGG halves five times; AlexNet's last pool
# needs 3x3, so its first conv must yield 15x15: (s + 2 - 11) // 4 + 1 >= 15.
@pytest.mark.parametrize("name, minimum", [("lenet5", 12), ("vgg11", 32), ("alexnet", 65)])
def test_too_small_input_names_the_minimum(name, minimum):
    with pytest.raises(CnnzooError, match=f"at least {minimum}x{minimum}"):
        build_model(name, input_size=minimum - 1)
    model = meta_model(name, input_size=minimum)  # the minimum itself is accepted
    with torch.no_grad():
        assert model(torch.empty(2, 1, minimum, minimum, device="meta")).shape == (2, 10)


def test_minimum_applies_to_each_side():
    with pytest.raises(CnnzooError, match="at least 32x32 pixels, got 224x16"):
        meta_model("vgg11", input_size=(224, 16))


def test_lenet5_classic_activation_option():
    acts = {type(m) for m in build_model("lenet5_classic", activation="relu").modules()}
    assert nn.ReLU in acts and nn.Tanh not in acts
    assert "activation=relu" in get_model_spec("lenet5_classic").description  # the material's form
    assert nn.Tanh in {type(m) for m in build_model("lenet5_classic").modules()}
    with pytest.raises(CnnzooError, match="Unknown activation 'swish'"):
        build_model("lenet5_classic", activation="swish")


@pytest.mark.parametrize(
    "name, bn1d, bn2d",
    [
        ("lenet_bn", 2, 2),
        ("alexnet_bn", 2, 5),
        ("vgg11_bn", 0, 8),
        ("resnet18", 0, 17),
        ("resnet18_tv", 0, 20),
        ("alexnet_bn_keras", 4, 5),
    ],
)
def test_batch_norm_placement(name, bn1d, bn2d):
    kinds = [type(m) for m in meta_model(name).modules()]
    assert kinds.count(nn.BatchNorm1d) == bn1d
    assert kinds.count(nn.BatchNorm2d) == bn2d
    assert get_model_spec(name).uses_norm


def test_models_without_batch_norm_say_so():
    for name in ("lenet5", "lenet5_classic", "alexnet", "alexnet_tv", "vgg11", "vgg16", "vgg11_tv", "vgg16_tv"):
        assert not get_model_spec(name).uses_norm
