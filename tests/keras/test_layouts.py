"""Weight layouts: OIHW <-> HWIO, and the dense rows after Keras's (H, W, C) flatten, both ways, bit for bit."""

import numpy as np
import pytest
import torch

import cnnzoo.keras as ck
from cnnzoo.keras import layouts

keras = ck.import_keras()


def test_conv_kernels_go_to_hwio_and_back_exactly():
    weight = torch.randn(6, 3, 5, 4)
    kernel = layouts.conv_kernel_to_keras(weight)
    assert kernel.shape == (5, 4, 3, 6)
    assert kernel[2, 1, 0, 4] == weight[4, 0, 2, 1].item()
    assert torch.equal(layouts.conv_kernel_to_torch(kernel), weight)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_flatten_order_is_what_keras_flatten_does(data_format):
    # The trap itself: Keras flattens (H, W, C) even with data_format='channels_first'.
    channels, height, width = 3, 2, 4
    x = torch.arange(channels * height * width, dtype=torch.float32).reshape(1, channels, height, width)
    inputs = x.permute(0, 2, 3, 1).numpy() if data_format == "channels_last" else x.numpy()
    flat = keras.ops.convert_to_numpy(keras.layers.Flatten(data_format=data_format)(inputs))[0]
    order = layouts.flatten_order((channels, height, width))
    assert np.array_equal(flat, x.flatten().numpy()[order.numpy()])


def test_dense_rows_are_reordered_and_restored_exactly():
    shape = (16, 5, 5)
    weight = torch.randn(120, 400, dtype=torch.float64)  # float64: the sums agree to rounding, not by luck
    kernel = layouts.dense_kernel_to_keras(weight, shape)
    assert kernel.shape == (400, 120)
    x = torch.randn(2, *shape, dtype=torch.float64)
    keras_order = x.permute(0, 2, 3, 1).reshape(2, -1)  # what Keras's Flatten hands the dense layer
    torch.testing.assert_close(keras_order @ torch.from_numpy(kernel), x.flatten(1) @ weight.t())
    assert torch.equal(layouts.dense_kernel_to_torch(kernel, shape), weight)
    # Without the reorder the rows are a different permutation: the product differs.
    unordered = layouts.dense_kernel_to_keras(weight, None)
    assert not torch.allclose(keras_order @ torch.from_numpy(unordered), x.flatten(1) @ weight.t())
