"""AsyncReadout: a device tensor's value for a display, never a per-step sync."""

import pytest
import torch

from cnnzoo.train.readout import AsyncReadout


def test_on_the_cpu_the_value_is_the_tensor_now_with_its_tag():
    readout = AsyncReadout(torch.device("cpu"))
    losses = torch.tensor([2.0, 1.5, 0.0])
    shown = readout(losses, tag=2)
    assert shown.tolist() == [2.0, 1.5, 0.0] and readout.tag == 2
    losses[2] = 1.0  # a copy: later steps do not change what was shown
    assert shown.tolist() == [2.0, 1.5, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the asynchronous path exists only on CUDA")
def test_on_cuda_the_value_lands_later_without_a_synchronize():
    readout = AsyncReadout(torch.device("cuda"))
    losses = torch.arange(4.0, device="cuda")
    assert readout(losses, tag=1) is None  # the copy has only been started
    torch.cuda.synchronize()
    assert readout(losses * 2, tag=2).tolist() == [0.0, 1.0, 2.0, 3.0] and readout.tag == 1
