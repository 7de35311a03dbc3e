"""GoogLeNet in d2l's and torchvision's forms."""

from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import InceptionBlock, build_model, count_parameters, get_model_spec
from cnnzoo.models.googlenet import ConvUnit


@pytest.mark.parametrize("name, expected", [
    ("googlenet", 5_977_530),  # d2l's own GoogLeNet code, run once for 1 channel and 10 classes
    ("googlenet_tv", 6_624_904),  # torchvision's googlenet(aux_logits=False)
])
def test_parameter_counts(meta_model, name, expected):
    assert count_parameters(meta_model(name)) == expected


def test_inception_block_concatenates_four_same_size_paths():
    block = InceptionBlock(192, 64, (96, 128), (16, 32), 32, unit=ConvUnit)
    x = torch.randn(2, 192, 12, 12)
    with torch.no_grad():
        paths = [block.branch1(x), block.branch2(x), block.branch3(x), block.branch4(x)]
        assert [p.shape[1] for p in paths] == [64, 128, 32, 32]
        assert torch.equal(block(x), torch.cat(paths, 1))
    assert block.out_channels == 256 and block.branch3[1].conv.kernel_size == (5, 5)


def test_the_two_forms_differ_where_torchvision_differs(meta_model):
    course, tv = meta_model("googlenet"), meta_model("googlenet_tv")
    assert course.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's known deviation, kept for its weights
    assert course.conv1.bn is None and course.conv1.conv.bias is not None
    assert tv.conv1.conv.bias is None and tv.conv1.bn.eps == 0.001
    assert course.dropout is None and tv.dropout.p == 0.2
    assert not get_model_spec("googlenet").uses_norm and get_model_spec("googlenet_tv").uses_norm


def test_googlenet_tv_loads_torchvision_weights_with_identical_logits(assert_loads_torchvision_weights):
    reference = partial(torchvision.models.googlenet, aux_logits=False, init_weights=False)
    assert_loads_torchvision_weights("googlenet_tv", reference, 64)


def test_googlenet_tv_matches_torchvision_with_running_statistics():
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    for m in reference.modules():  # non-trivial statistics, so eval-mode BN is really compared
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = build_model("googlenet_tv")
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 75, 75)  # odd sizes exercise the ceil-mode pools' partial windows
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))
    assert list(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).state_dict()) \
        == list(build_model("googlenet_tv").state_dict())


def test_course_form_takes_any_size():
    # Every pool of d2l's form is padded, so even one pixel reaches the global average.
    model = build_model("googlenet", input_size=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 1, 1)).shape == (2, 10)


def test_torchvision_form_names_its_minimum_input(meta_model):
    with pytest.raises(CnnzooError, match="at least 15x15"):
        build_model("googlenet_tv", input_size=14)
    with torch.no_grad():
        assert meta_model("googlenet_tv", input_size=15)(torch.empty(2, 3, 15, 15, device="meta")).shape == (2, 1000)


def test_other_resolutions_and_channels(assert_other_input):
    assert_other_input("googlenet", 28, 3)
