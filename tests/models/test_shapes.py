"""Input sizes and feature-map shapes worked out on the meta device, before a model is built."""

import pytest
import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models.shapes import MAX_INPUT_SIDE, as_size, minimum_input_size, output_shape


def _two_convs():
    # 5x5 conv, 2x2 pool, 5x5 conv: a 14x14 input is the smallest that leaves a 1x1 map.
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.Conv2d(4, 8, 5), nn.BatchNorm2d(8))


def test_an_int_is_a_square_and_a_pair_is_height_then_width():
    assert as_size(28) == (28, 28)
    assert as_size((32, 36)) == (32, 36) == as_size([32, 36])
    assert as_size(MAX_INPUT_SIDE) == (MAX_INPUT_SIDE, MAX_INPUT_SIDE)


@pytest.mark.parametrize("bad", [0, -3, (28,), (28, 0), "28", 2.5, (28.0, 28)])
def test_bad_input_size(bad):
    with pytest.raises(CnnzooError, match="input_size must be"):
        as_size(bad)


def test_sizes_beyond_the_largest_side_are_refused():
    with pytest.raises(CnnzooError, match="larger than cnnzoo builds models for"):
        as_size((28, MAX_INPUT_SIDE + 1))


def test_output_shape_is_per_example_and_leaves_the_module_untouched():
    module = _two_convs().train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert output_shape(module, 1, (28, 28), "toy") == torch.Size([8, 8, 8])
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # BN statistics too


def test_too_small_an_input_names_the_minimum():
    module = _two_convs()
    assert minimum_input_size(module, 1) == 14
    with pytest.raises(CnnzooError, match="toy needs inputs of at least 14x14 pixels, got 13x28"):
        output_shape(module, 1, (13, 28), "toy")
