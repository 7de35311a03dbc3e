"""The fallback chain's parts that stand alone: finding a missing compiler before the first step,
the one-line error, and the runtime a run's fallbacks leave (the chain itself, driven through the
step: tests/train/test_fastpath.py)."""

import dataclasses
import importlib.util
from types import SimpleNamespace

import pytest
import torch

from cnnzoo.data import BatchIterator
from cnnzoo.errors import CnnzooError
from cnnzoo.train import TrainConfig
from cnnzoo.train import config as train_config
from cnnzoo.train import fallback
from cnnzoo.train.config import FAST_PATH, FastPathPiece
from cnnzoo.train.fallback import FallbackChain, first_line, missing_compile_toolchain, runtime_after, without
from cnnzoo.train.fastpath import TrainStep
from cnnzoo.train.optim import build_optimizer
from cnnzoo.train.runtime import Runtime
from cnnzoo.workflows.run import data_for, model_for


def _step(net, config, runtime, batches):
    return TrainStep(net, build_optimizer(net, config), runtime, batches, loss_fn=torch.nn.CrossEntropyLoss())


def _passthrough(graph_module, example_inputs):
    return graph_module.forward


def test_missing_compiler_is_found_before_the_first_step(monkeypatch, tmp_path, capsys, data_root):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no compiler anywhere
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert "no C++ compiler" in missing_compile_toolchain(torch.device("cpu"))
    gpu = missing_compile_toolchain(torch.device("cuda"))
    assert ("no C compiler" if importlib.util.find_spec("triton") else "Triton is not installed") in gpu
    assert missing_compile_toolchain(torch.device("cpu"), backend=_passthrough) is None

    config = TrainConfig(model="lenet5", device="cpu", compile="on", data_dir=str(data_root))
    net = model_for(config, 10)
    batches = BatchIterator(data_for(config.replace(limit_train=8), torch.device("cpu")).train, 4)
    with pytest.raises(CnnzooError, match="--compile on was asked for but no C\\+\\+ compiler"):
        _step(net, config, Runtime.from_config(config), batches)
    auto = dataclasses.replace(Runtime.from_config(config.replace(compile="auto")), compile=True)
    fast = _step(net, config, auto, batches)
    assert fast.compile_mode is None and fast.fallbacks[0]["where"] == "before the first step"
    assert capsys.readouterr().err.startswith("cnnzoo: torch.compile is off for this run: no C++ compiler")


def test_the_runtime_after_a_run_drops_what_fell_back():
    runtime = Runtime(device=torch.device("cpu"), amp_dtype=torch.bfloat16, channels_last=True, compile=True,
                      cuda_graphs=True, fused_optimizer=True, cudnn_benchmark=False)
    after = runtime_after(runtime, [{"piece": "compile"}, {"piece": "precision"}])
    assert (after.compile, after.cuda_graphs, after.amp_dtype, after.channels_last) == (False, False, None, True)


def test_first_line_skips_dynamos_header():
    wrapped = RuntimeError("backend='inductor' raised:\nCalledProcessError: Command 'gcc' returned 1\n\nmore")
    assert first_line(wrapped) == "RuntimeError: CalledProcessError: Command 'gcc' returned 1"
    assert first_line(KeyError()) == "KeyError"
    assert len(first_line(RuntimeError("x" * 500))) < 230


_ALL_ON = Runtime(device=torch.device("cpu"), amp_dtype=torch.bfloat16, channels_last=True, compile=True,
                  cuda_graphs=True, fused_optimizer=True, cudnn_benchmark=True)


def _chain(runtime, compile_mode="cuda-graph", fused=True):
    chain = FallbackChain()
    chain.runtime, chain.compile_mode = runtime, compile_mode
    chain.optimizer = SimpleNamespace(param_groups=[{"fused": fused}])
    return chain


def test_every_fast_path_piece_counts_as_running_until_it_is_turned_off():
    assert _chain(_ALL_ON)._enabled_pieces() == [piece.name for piece in FAST_PATH]
    for piece in FAST_PATH:
        assert piece.name not in _chain(without(_ALL_ON, piece.name))._enabled_pieces(), piece.name


def test_a_piece_the_runtime_asks_for_but_the_step_does_not_run_is_not_running():
    assert "cuda_graphs" not in _chain(_ALL_ON, compile_mode="default")._enabled_pieces()  # a model too big to capture
    assert "fused_optimizer" not in _chain(_ALL_ON, fused=False)._enabled_pieces()  # an optimizer without fused kernels


def test_a_new_fast_path_piece_is_seen_by_the_fallback_without_another_edit(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Wider(Runtime):
        new_trick: bool = True

    piece = FastPathPiece("new_trick", "the new trick", "a trick", "on", {"new_trick": False})
    monkeypatch.setattr(fallback, "FAST_PATH", (*FAST_PATH, piece))
    monkeypatch.setitem(train_config.FAST_PATH_PIECES, piece.name, piece)
    runtime = Wider(**{f.name: getattr(_ALL_ON, f.name) for f in dataclasses.fields(Runtime)})
    assert _chain(runtime)._enabled_pieces()[-1] == "new_trick"
    assert "new_trick" not in _chain(without(runtime, "new_trick"))._enabled_pieces()
