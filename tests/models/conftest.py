"""Helpers shared by the architecture tests (test_lenet, test_alexnet, test_vgg, test_resnet, test_registry)."""

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, count_parameters


def _meta_model(name, **kwargs):
    # Parameter counts need shapes only: building on the meta device skips the 100M+ weights.
    with torch.device("meta"):
        return build_model(name, **kwargs)


@pytest.fixture
def meta_model():
    """``meta_model(name, **options)``: the model built on the meta device, shapes without weights."""
    return _meta_model


@pytest.fixture
def assert_loads_torchvision_weights():
    """``check(name, builder, size)``: the model takes torchvision's state_dict as is and gives identical logits."""

    def check(name, builder, size):
        torch.manual_seed(0)
        reference = builder(weights=None).double().eval()
        model = _meta_model(name).eval()  # weights come from the reference: no second 138M-weight init
        assert count_parameters(model) == count_parameters(reference)
        assert list(model.state_dict()) == list(reference.state_dict())
        model.load_state_dict(reference.state_dict(), strict=True, assign=True)
        x = torch.randn(2, 3, size, size, dtype=torch.float64)  # the adaptive pool takes small inputs
        with torch.no_grad():
            assert torch.equal(model(x), reference(x))

    return check


@pytest.fixture
def assert_minimum_input():
    """``check(name, minimum)``: one pixel less is refused naming the minimum; the minimum itself runs."""

    def check(name, minimum):
        with pytest.raises(CnnzooError, match=f"at least {minimum}x{minimum}"):
            build_model(name, input_size=minimum - 1)
        model = _meta_model(name, input_size=minimum)
        with torch.no_grad():
            assert model(torch.empty(2, 1, minimum, minimum, device="meta")).shape == (2, 10)

    return check


@pytest.fixture
def assert_other_input():
    """``check(name, size, channels)``: the model builds for that input and 7 classes and runs it."""

    def check(name, size, channels):
        model = build_model(name, input_size=size, in_channels=channels, num_classes=7).eval()
        h, w = (size, size) if isinstance(size, int) else size
        with torch.no_grad():
            assert model(torch.randn(2, channels, h, w)).shape == (2, 7)

    return check


@pytest.fixture
def batch_norm_counts():
    """``counts(name)``: how many BatchNorm1d and BatchNorm2d layers the model has."""

    def counts(name):
        kinds = [type(m) for m in _meta_model(name).modules()]
        return kinds.count(torch.nn.BatchNorm1d), kinds.count(torch.nn.BatchNorm2d)

    return counts
