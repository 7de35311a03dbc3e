"""The runtime: which device, precision and fast-path switches a config resolves to, and the CPU
thread setup that the entry points ask for explicitly."""

import os

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train import Runtime, TrainConfig, resolve_device
from cnnzoo.train.config import FAST_PATH
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


# ------------------------------------------------ what each device class runs, decided on the CPU
# (capability, card) -> (precision, gradient scaler, compile, CUDA graphs)
CARDS = [
    ((6, 1), "NVIDIA GeForce GTX 1080", torch.float32, False, False, False),
    ((6, 0), "Tesla P100-PCIE-16GB", torch.float32, False, False, False),
    ((7, 0), "Tesla V100-SXM2-16GB", torch.float16, True, True, False),  # fp16: no capture
    ((7, 5), "Tesla T4", torch.float16, True, True, False),
    ((8, 0), "NVIDIA A100-SXM4-40GB", torch.bfloat16, False, True, True),
    ((8, 6), "NVIDIA GeForce RTX 3090", torch.bfloat16, False, True, True),
    ((8, 9), "NVIDIA L4", torch.bfloat16, False, True, True),
    ((9, 0), "NVIDIA H200", torch.bfloat16, False, True, True),
    ((10, 0), "NVIDIA B200", torch.bfloat16, False, True, True),
    ((12, 0), "NVIDIA GeForce RTX 5090", torch.bfloat16, False, True, True),
]


@pytest.mark.parametrize("capability, name, dtype, scaler, compiled, graphs", CARDS, ids=[c[1] for c in CARDS])
def test_auto_runs_what_each_card_class_can(fake_cuda_card, monkeypatch, capability, name, dtype, scaler, compiled, graphs):
    fake_cuda_card(capability, name)
    runtime = Runtime.from_config(TrainConfig(device="cuda"))
    assert (runtime.amp_dtype or torch.float32, runtime.grad_scaler, runtime.compile, runtime.cuda_graphs) == (
        dtype, scaler, compiled, graphs)
    # The rest of the fast path is the same on every card; nothing auto chose is forced.
    assert runtime.channels_last and runtime.fused_optimizer and runtime.cudnn_benchmark
    assert runtime.forced == frozenset()
    described = runtime.describe()
    assert described["precision"] == {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    assert described["compute_capability"] == f"{capability[0]}.{capability[1]}"
    assert described["grad_scaler"] is scaler
    reasons = described["reasons"]
    assert name in reasons["precision"] and f"compute capability {capability[0]}.{capability[1]}" in reasons["precision"]
    assert ("gradient scaler" in reasons["precision"]) is scaler


def test_the_h200_path_is_unchanged(fake_cuda_card, monkeypatch):
    fake_cuda_card((9, 0), "NVIDIA H200")
    runtime = Runtime.from_config(TrainConfig(device="cuda"))
    assert (runtime.amp_dtype, runtime.compile, runtime.cuda_graphs, runtime.channels_last, runtime.fused_optimizer,
            runtime.cudnn_benchmark, runtime.notices) == (torch.bfloat16, True, True, True, True, True, ())


def test_cuda_graphs_are_reported_off_where_nothing_would_be_captured(fake_cuda_card, monkeypatch):
    # fastpath.compile_mode captures only the compiled step, and never under fp16's host-side scaler check.
    fake_cuda_card((9, 0), "NVIDIA H200")
    eager = Runtime.from_config(TrainConfig(device="cuda", compile="off"))
    assert not eager.cuda_graphs and eager.reasons["cuda_graphs"].startswith("off: --compile is off")
    fp16 = Runtime.from_config(TrainConfig(device="cuda", precision="fp16"))
    assert fp16.compile and not fp16.cuda_graphs and "gradient scaler" in fp16.reasons["cuda_graphs"]


def test_a_card_triton_cannot_serve_runs_eagerly_from_the_start_with_one_line(fake_cuda_card, monkeypatch, capsys):
    fake_cuda_card((6, 1), "NVIDIA GeForce GTX 1080", arch_list=("sm_61", "sm_75"))
    runtime = Runtime.from_config(TrainConfig(device="cuda"))
    assert not runtime.compile and not runtime.cuda_graphs
    assert "older than Triton" in runtime.reasons["compile"]
    runtime.announce()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["cnnzoo: torch.compile is off for this run: NVIDIA GeForce GTX 1080 (compute capability 6.1) is "
                     "older than Triton (torch.compile's GPU compiler) supports (7.0)."]
    # Asked for explicitly, compile would fail at the first step: refused before anything loads.
    with pytest.raises(CnnzooError, match="--compile on cannot run on NVIDIA GeForce GTX 1080 .*needs compute "
                                          "capability 7.0 or newer; use --compile auto or off"):
        Runtime.from_config(TrainConfig(device="cuda", compile="on"))
    # --compile off there is the user's own choice: said as such, and nothing printed.
    off = Runtime.from_config(TrainConfig(device="cuda", compile="off"))
    assert off.notices == () and off.reasons["compile"] == "--compile off was asked for"


def test_bf16_forced_on_a_t4_is_honoured_with_a_warning_line(fake_cuda_card, monkeypatch, capsys):
    fake_cuda_card((7, 5), "Tesla T4")
    runtime = Runtime.from_config(TrainConfig(device="cuda", precision="bf16"))
    assert runtime.amp_dtype == torch.bfloat16 and not runtime.grad_scaler and "precision" in runtime.forced
    runtime.announce()
    assert capsys.readouterr().err == ("cnnzoo: --precision bf16 on Tesla T4 (compute capability 7.5), which has no "
                                       "bf16 tensor cores: it runs emulated, slower than --precision fp16 (what auto "
                                       "picks there).\n")


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", None)])
def test_an_explicit_precision_is_honoured_on_a_modern_card_without_a_word(fake_cuda_card, monkeypatch, precision, dtype):
    fake_cuda_card((8, 9), "NVIDIA L4")
    runtime = Runtime.from_config(TrainConfig(device="cuda", precision=precision))
    assert runtime.amp_dtype == dtype and runtime.grad_scaler == (precision == "fp16") and runtime.notices == ()
    assert runtime.reasons["precision"] == f"--precision {precision} was asked for"
    assert ("precision" in runtime.forced) == (precision != "fp32")


def test_a_card_this_torch_build_has_no_kernels_for_is_named(fake_cuda_card, monkeypatch, capsys):
    # CUDA 13's wheels carry sm_75 and newer: a V100 (7.0) gets no kernel at all, which torch itself
    # reports only at the first kernel launch.
    fake_cuda_card((7, 0), "Tesla V100-SXM2-16GB", arch_list=("sm_75", "sm_80", "sm_90", "sm_100", "sm_120"))
    runtime = Runtime.from_config(TrainConfig(device="cuda"))
    assert "no kernels for compute capability 7.0" in runtime.reasons["device"]
    runtime.announce()
    assert "this torch build has no kernels for compute capability 7.0" in capsys.readouterr().err
    # Binary compatibility within a major version, and PTX, are enough.
    fake_cuda_card((8, 6), "NVIDIA GeForce RTX 3090", arch_list=("sm_80",))
    assert Runtime.from_config(TrainConfig(device="cuda")).notices == ()
    fake_cuda_card((8, 9), "NVIDIA L4", arch_list=("sm_75", "compute_80"))
    assert Runtime.from_config(TrainConfig(device="cuda")).notices == ()


@pytest.fixture
def fake_mac(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


def test_mps_runs_fp32_eagerly_without_the_cuda_only_pieces(fake_mac):
    for model in ("lenet5", "lenet_bn"):
        runtime = Runtime.from_config(TrainConfig(model=model))  # auto picks MPS on a Mac without CUDA
        assert runtime.device == torch.device("mps")
        assert (runtime.amp_dtype, runtime.grad_scaler, runtime.compile, runtime.cuda_graphs, runtime.channels_last,
                runtime.fused_optimizer, runtime.cudnn_benchmark, runtime.notices) == (
            None, False, False, False, False, False, False, ())
        assert runtime.reasons["precision"].startswith("auto on MPS: fp32")
        assert runtime.reasons["compile"].startswith("auto on MPS: eager")
    described = Runtime.from_config(TrainConfig(device="mps")).describe()
    assert (described["device"], described["device_name"], described["compute_capability"]) == (
        "mps", "Apple GPU (MPS)", None)


def test_mps_honours_what_is_asked_for_but_never_cuda_graphs_or_cudnn(fake_mac):
    runtime = Runtime.from_config(TrainConfig(device="mps", precision="fp16", compile="on", channels_last="on",
                                              fused_optimizer="on", cuda_graphs="on", cudnn_benchmark="on"))
    assert (runtime.amp_dtype, runtime.grad_scaler, runtime.compile, runtime.channels_last, runtime.fused_optimizer) == (
        torch.float16, True, True, True, True)
    assert not runtime.cuda_graphs and not runtime.cudnn_benchmark


def test_the_cpu_says_why_it_runs_fp32_and_eagerly():
    runtime = Runtime.from_config(TrainConfig(device="cpu"))
    assert runtime.reasons["precision"].startswith("auto on the CPU: fp32")
    assert runtime.reasons["compile"] == "auto on the CPU: eager"
    fp16 = Runtime.from_config(TrainConfig(device="cpu", precision="fp16"))
    assert fp16.amp_dtype == torch.float16 and fp16.grad_scaler and fp16.describe()["precision"] == "fp16"


def test_every_fast_path_piece_has_its_reason():
    runtime = Runtime.from_config(TrainConfig(device="cpu", channels_last="off"))
    assert {piece.name for piece in FAST_PATH} <= set(runtime.reasons)
    assert runtime.reasons["channels_last"] == "--channels-last off on the CPU"
