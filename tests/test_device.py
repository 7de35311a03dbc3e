"""The one device resolver, shared by the data loaders and the training runtime."""

import pytest
import torch

from cnnzoo.device import resolve_device
from cnnzoo.errors import CnnzooError


def test_auto_and_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["warp-drive", "cuda:-1", None, 3.5])
def test_anything_else_is_one_cnnzoo_error(name):
    # A non-string used to escape as torch's TypeError instead of the one-line user error.
    with pytest.raises(CnnzooError, match="Unknown device"):
        resolve_device(name)


def test_mps_is_refused_even_where_it_exists(monkeypatch):
    # The runtime trains on the CPU or CUDA only, so nothing may be placed on an MPS device.
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(CnnzooError, match="Unsupported device 'mps'"):
        resolve_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu():
    with pytest.raises(CnnzooError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_this_machine_lacks():
    with pytest.raises(CnnzooError, match="There is no cuda:"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
