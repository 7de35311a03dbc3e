"""The one device resolver, shared by the data loaders and the training runtime."""

import pytest
import torch

from cnnzoo.device import mps_available, resolve_device
from cnnzoo.errors import CnnzooError


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["warp-drive", "cuda:-1", None, 3.5])
def test_anything_else_is_one_cnnzoo_error(name):
    # A non-string used to escape as torch's TypeError instead of the one-line user error.
    with pytest.raises(CnnzooError, match="Unknown device"):
        resolve_device(name)


def fake_mac(monkeypatch, built: bool = True, available: bool = True) -> None:
    """A machine without CUDA whose torch has (or lacks) Apple's MPS backend."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: built)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: available)


def test_mps_is_accepted_and_auto_picks_it_without_cuda(monkeypatch):
    fake_mac(monkeypatch)
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("mps:0") == torch.device("mps")  # one device, one spelling: data and model agree
    assert resolve_device("auto") == torch.device("mps")


def test_auto_prefers_cuda_over_mps(monkeypatch):
    fake_mac(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("built, why", [(False, "this torch build has no MPS support"),
                                        (True, "this machine has no Apple GPU")])
def test_mps_where_there_is_none_says_why_in_one_sentence(monkeypatch, built, why):
    fake_mac(monkeypatch, built=built, available=False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(CnnzooError, match=f"--device mps was asked for but {why}.*; use --device cpu or auto"):
        resolve_device("mps")


def test_a_second_mps_device_does_not_exist(monkeypatch):
    fake_mac(monkeypatch)
    with pytest.raises(CnnzooError, match="There is no mps:1; a Mac has one MPS device"):
        resolve_device("mps:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu():
    with pytest.raises(CnnzooError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_this_machine_lacks():
    with pytest.raises(CnnzooError, match="There is no cuda:"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
