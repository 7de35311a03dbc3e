"""The runtime: which device, precision and fast-path switches a config resolves to, and the CPU
thread setup that the entry points ask for explicitly."""

import os

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train import Runtime, TrainConfig, resolve_device
from cnnzoo.train.runtime import usable_cpu_count


def test_auto_is_cpu_without_a_gpu_and_bad_names_are_one_line_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(CnnzooError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(CnnzooError, match="Unknown device"):
        resolve_device("gpu0")
    with pytest.raises(CnnzooError, match="Unsupported device"):
        resolve_device("meta")


def test_every_fast_path_switch_defaults_off_on_the_cpu_and_can_be_forced():
    auto = Runtime.from_config(TrainConfig(model="lenet_bn", device="cpu"))
    assert (auto.amp_dtype, auto.compile, auto.cuda_graphs, auto.fused_optimizer, auto.cudnn_benchmark) == (
        None, False, False, False, False)
    forced = Runtime.from_config(TrainConfig(model="lenet_bn", device="cpu", precision="bf16", compile="on",
                                             channels_last="on", fused_optimizer="on"))
    assert (forced.amp_dtype, forced.compile, forced.channels_last, forced.fused_optimizer) == (
        torch.bfloat16, True, True, True)
    # CUDA graphs and cuDNN exist only on CUDA: asking for them on the CPU changes nothing.
    cpu_only = Runtime.from_config(TrainConfig(device="cpu", cuda_graphs="on", cudnn_benchmark="on"))
    assert not cpu_only.cuda_graphs and not cpu_only.cudnn_benchmark


def test_explicit_pieces_are_the_ones_set_on():
    runtime = Runtime.from_config(TrainConfig(device="cpu", precision="bf16", compile="on", channels_last="off"))
    assert runtime.forced == {"precision", "compile"}
    assert Runtime.from_config(TrainConfig(device="cpu")).forced == frozenset()


@pytest.fixture
def thread_count():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_resolving_a_runtime_leaves_the_thread_pool_alone(monkeypatch, thread_count):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    runtime = Runtime.from_config(TrainConfig(device="cpu"))
    assert torch.get_num_threads() == 1  # a library call must not change process-wide state
    runtime.configure_threads()
    assert torch.get_num_threads() == usable_cpu_count()


def test_omp_num_threads_set_by_the_user_wins(monkeypatch, thread_count):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    Runtime.from_config(TrainConfig(device="cpu")).configure_threads()
    assert torch.get_num_threads() == 1


def test_thread_setup_works_without_sched_getaffinity(monkeypatch, thread_count):
    # macOS and Windows have no os.sched_getaffinity: a Mac user's CPU run must not fail on it.
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert usable_cpu_count() == os.cpu_count()
    Runtime.from_config(TrainConfig(device="cpu")).configure_threads()
    assert torch.get_num_threads() == os.cpu_count()
