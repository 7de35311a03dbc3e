"""The fast path falls back piece by piece when one fails, and the run goes on with the numbers an
eager run of the safer setting has. Failures are injected on the CPU: a torch.compile backend that
raises on a chosen call, a fused-optimizer kernel that raises, a model that refuses a layout or autocast."""

import dataclasses
import importlib.util

import pytest
import torch
from torch import nn

from cnnzoo.data import BatchIterator
from cnnzoo.errors import CnnzooError
from cnnzoo.train import TrainConfig, evaluate
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.fastpath import FastPath, compile_mode, first_line, missing_compile_toolchain, runtime_after
from cnnzoo.train.optim import build_optimizer
from cnnzoo.workflows.run import data_for, model_for

INJECTED = "injected failure for the test\nits second line"


def failing_backend(fail_on):
    """A torch.compile backend running dynamo's graph as is, that raises on the calls `fail_on(n, batch)`
    picks: `n` counts the graphs compiled (1-based), `batch` is the graph's input batch size."""
    calls = []

    def backend(graph_module, example_inputs):
        images = max((t for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 4), key=torch.numel)
        batch = images.shape[0]  # the largest 4-d input is the batch, not a convolution's weight
        calls.append(batch)
        if fail_on(len(calls), batch):
            raise RuntimeError(INJECTED)
        return graph_module.forward

    backend.calls = calls
    return backend


def refuse(error, when=lambda module: True):
    """A model change for `_train`: a forward pre-hook that raises `error` when `when(model)`."""
    def prepare(net):
        def hook(module, inputs):
            if when(module):
                raise error
        net.register_forward_pre_hook(hook)
    return prepare


def _train(data_root, *, model="lenet5", optimizer="sgd", limit_train=200, prepare=None, **runtime_changes):
    """Train one epoch through FastPath exactly as fit does and evaluate; returns (losses, accuracy, fast path)."""
    config = TrainConfig(model=model, epochs=1, batch_size=64, optimizer=optimizer, lr=0.05, momentum=0.9,
                         limit_train=limit_train, limit_test=100, device="cpu", data_dir=str(data_root))
    data = data_for(config, torch.device("cpu"))
    net = model_for(config, len(data.train.classes))
    if prepare is not None:
        prepare(net)
    runtime = dataclasses.replace(Runtime.from_config(config), **runtime_changes)
    net.to(memory_format=runtime.memory_format)
    opt = build_optimizer(net, config, fused=runtime.fused_optimizer)
    fast = FastPath(net, opt, runtime, loss_fn=nn.CrossEntropyLoss())
    normalize = (data.info.mean, data.info.std)
    batches = BatchIterator(data.train, 64, seed=0, normalize=normalize, channels_last=runtime.channels_last)
    torch.manual_seed(1)
    losses = [fast.train_step(x, y, epoch=0, step=i)[0].item() for i, (x, y) in enumerate(batches)]
    accuracy = fast.evaluate(lambda m, rt: evaluate(m, data.test, normalize=normalize, batch_size=64, runtime=rt),
                             epoch=0).accuracy
    return losses, accuracy, fast


@pytest.fixture(scope="module")
def eager(data_root):
    """The reference: the same seed with every fast-path piece off."""
    losses, accuracy, fast = _train(data_root, channels_last=False)
    assert fast.fallbacks == [] and len(losses) == 4
    return losses, accuracy


def test_compile_failing_at_the_first_step_falls_back_to_eager_with_the_eager_numbers(data_root, eager, capsys):
    backend = failing_backend(lambda n, batch: True)
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, compile_backend=backend)
    assert (losses, accuracy) == eager
    assert [f["piece"] for f in fast.fallbacks] == ["compile"] and backend.calls == [64]
    assert fast.fallbacks[0]["where"] == "at epoch 1, step 1"
    # Dynamo wraps the backend's error; the line names both.
    assert fast.fallbacks[0]["error"] == "BackendCompilerFailed: RuntimeError: injected failure for the test"
    message = capsys.readouterr().err.strip()
    assert message == ("cnnzoo: torch.compile failed at epoch 1, step 1 (BackendCompilerFailed: RuntimeError: "
                       "injected failure for the test); continuing from there with it off.")
    assert fast.describe()["compile"] is False and fast.describe()["compile_mode"] is None


def test_cuda_graphs_go_first_and_compiling_again_without_them_continues(data_root, eager):
    # The mode decides CUDA graphs; with a test backend the mode is only a label, but the chain is the
    # same: the first failure turns graphs off and compiles again, and the second compile succeeds.
    backend = failing_backend(lambda n, batch: n == 1)
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, cuda_graphs=True,
                                    compile_backend=backend)
    assert [f["piece"] for f in fast.fallbacks] == ["cuda_graphs"] and fast.compile_mode == "default"
    assert backend.calls == [64, 64, 8, 64, 36]  # failed, compiled again, the last batch, evaluation's two
    assert (losses, accuracy) == eager


def test_compile_failing_on_the_last_partial_batch_continues_from_that_step(data_root, eager, capsys):
    # 200 images in batches of 64: the fourth batch (8 images) is a new shape and compiles again.
    backend = failing_backend(lambda n, batch: batch == 8)
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, compile_backend=backend)
    assert backend.calls == [64, 8]  # steps 1-3 ran compiled; evaluation runs eagerly after the fallback
    assert fast.fallbacks[0]["where"] == "at epoch 1, step 4"
    assert (losses, accuracy) == eager
    assert "step 4" in capsys.readouterr().err


def test_compile_failing_at_evaluation_evaluates_eagerly(data_root, eager, capsys):
    backend = failing_backend(lambda n, batch: n == 3)  # 64 and 8 in training, then the first evaluation batch
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, compile_backend=backend)
    assert [f["where"] for f in fast.fallbacks] == ["at epoch 1, evaluation"]
    assert (losses, accuracy) == eager
    assert "evaluation" in capsys.readouterr().err


def test_a_fused_optimizer_failing_after_forward_and_backward_leaves_no_trace(data_root, monkeypatch, capsys):
    # lenet_bn's forward updates batch norm's running statistics and AdamW creates its state before the
    # fused kernel is called: the step is retried from the state before it, so nothing counts twice.
    plain, plain_accuracy, _ = _train(data_root, model="lenet_bn", optimizer="adamw", fused_optimizer=False)

    def broken_kernel(*args, **kwargs):
        raise RuntimeError("fused kernel unavailable")

    monkeypatch.setattr(torch, "_fused_adamw_", broken_kernel)
    losses, accuracy, fast = _train(data_root, model="lenet_bn", optimizer="adamw", fused_optimizer=True)
    assert [f["piece"] for f in fast.fallbacks] == ["fused_optimizer"]
    assert (losses, accuracy) == (plain, plain_accuracy)
    assert all(state["step"].item() == 4 for state in fast.optimizer.state.values())
    norms = [m for m in fast.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.num_batches_tracked.item() == 4 for m in norms)
    message = "the fused optimizer failed at epoch 1, step 1 (RuntimeError: fused kernel unavailable)"
    assert message in capsys.readouterr().err


def test_channels_last_failing_falls_back_to_the_contiguous_layout(data_root, eager, capsys):
    def channels_last_weights(net):
        return any(p.dim() == 4 and not p.is_contiguous() for p in net.parameters())

    refuse_channels_last = refuse(RuntimeError("no kernel for this layout"), channels_last_weights)
    losses, accuracy, fast = _train(data_root, channels_last=True, prepare=refuse_channels_last)
    assert [f["piece"] for f in fast.fallbacks] == ["channels_last"]
    assert all(p.is_contiguous() for p in fast.model.parameters())
    assert (losses, accuracy) == eager
    assert "channels_last failed at epoch 1, step 1" in capsys.readouterr().err


def _autocast_on(module):
    return torch.is_autocast_enabled("cpu")


def test_bf16_autocast_failing_falls_back_to_fp32(data_root, eager):
    refuse_autocast = refuse(RuntimeError("bf16 kernel missing"), _autocast_on)
    losses, accuracy, fast = _train(data_root, channels_last=False, amp_dtype=torch.bfloat16, prepare=refuse_autocast)
    assert [f["piece"] for f in fast.fallbacks] == ["precision"] and fast.describe()["precision"] == "fp32"
    assert (losses, accuracy) == eager


def test_the_chain_turns_pieces_off_one_at_a_time_until_the_step_runs(data_root, eager, capsys):
    # Autocast and compile both on, and the model refuses autocast: compile goes first, then bf16.
    refuse_autocast = refuse(RuntimeError("bf16 kernel missing"), _autocast_on)
    backend = failing_backend(lambda n, batch: False)
    losses, accuracy, fast = _train(data_root, channels_last=False, amp_dtype=torch.bfloat16, compile=True,
                                    compile_backend=backend, prepare=refuse_autocast)
    assert [f["piece"] for f in fast.fallbacks] == ["compile", "precision"]
    assert (losses, accuracy) == eager
    assert len(capsys.readouterr().err.strip().splitlines()) == 2  # one line per piece turned off


def test_an_explicit_on_fails_loudly(data_root):
    backend = failing_backend(lambda n, batch: True)
    message = r"step 1 with torch.compile on as asked \(BackendCompilerFailed: RuntimeError: injected"
    with pytest.raises(CnnzooError, match=message):
        _train(data_root, channels_last=False, compile=True, compile_backend=backend, forced=frozenset({"compile"}))


def test_a_failure_with_nothing_left_to_turn_off_is_the_original_error(data_root):
    with pytest.raises(ValueError, match="a bug in the model"):
        _train(data_root, channels_last=False, prepare=refuse(ValueError("a bug in the model")))


def test_nothing_falls_back_under_several_processes(data_root):
    config = TrainConfig(model="lenet5", device="cpu")
    net = model_for(config, 10)
    runtime = dataclasses.replace(Runtime.from_config(config), compile=True,
                                  compile_backend=failing_backend(lambda n, batch: True))
    fast = FastPath(net, build_optimizer(net, config), runtime, loss_fn=nn.CrossEntropyLoss(), distributed=True)
    with pytest.raises(Exception, match="injected failure"):
        fast.train_step(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), epoch=0, step=0)
    assert fast.fallbacks == []


def test_missing_compiler_is_found_before_the_first_step(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no compiler anywhere
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert "no C++ compiler" in missing_compile_toolchain(torch.device("cpu"))
    gpu = missing_compile_toolchain(torch.device("cuda"))
    assert ("no C compiler" if importlib.util.find_spec("triton") else "Triton is not installed") in gpu
    assert missing_compile_toolchain(torch.device("cpu"), backend=failing_backend(lambda n, b: False)) is None

    config = TrainConfig(model="lenet5", device="cpu", compile="on")
    net = model_for(config, 10)
    with pytest.raises(CnnzooError, match="--compile on was asked for but no C\\+\\+ compiler"):
        FastPath(net, build_optimizer(net, config), Runtime.from_config(config), loss_fn=nn.CrossEntropyLoss())
    auto = dataclasses.replace(Runtime.from_config(config.replace(compile="auto")), compile=True)
    fast = FastPath(net, build_optimizer(net, config), auto, loss_fn=nn.CrossEntropyLoss())
    assert fast.compile_mode is None and fast.fallbacks[0]["where"] == "before the first step"
    assert capsys.readouterr().err.startswith("cnnzoo: torch.compile is off for this run: no C++ compiler")


def test_the_runtime_after_a_run_drops_what_fell_back():
    runtime = Runtime(device=torch.device("cpu"), amp_dtype=torch.bfloat16, channels_last=True, compile=True,
                      cuda_graphs=True, fused_optimizer=True, cudnn_benchmark=False)
    after = runtime_after(runtime, [{"piece": "compile"}, {"piece": "precision"}])
    assert (after.compile, after.cuda_graphs, after.amp_dtype, after.channels_last) == (False, False, None, True)


def test_cuda_graphs_only_for_small_models_in_one_process():
    graphs = Runtime(device=torch.device("cpu"), amp_dtype=None, channels_last=False, compile=True, cuda_graphs=True,
                     fused_optimizer=False, cudnn_benchmark=False)
    assert compile_mode(graphs, 61_706, distributed=False) == "reduce-overhead"
    assert compile_mode(graphs, 46_764_746, distributed=False) == "default"  # kernels, not launches, dominate
    assert compile_mode(graphs, 61_706, distributed=True) == "default"  # DDP hooks split the graph
    assert compile_mode(dataclasses.replace(graphs, compile=False), 61_706, distributed=False) is None


def test_first_line_skips_dynamos_header():
    wrapped = RuntimeError("backend='inductor' raised:\nCalledProcessError: Command 'gcc' returned 1\n\nmore")
    assert first_line(wrapped) == "RuntimeError: CalledProcessError: Command 'gcc' returned 1"
    assert first_line(KeyError()) == "KeyError"
    assert len(first_line(RuntimeError("x" * 500))) < 230


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["lenet5", "lenet_bn"])
def test_cuda_fast_path_runs_every_shape_without_falling_back(data_root, model):
    # The real thing: inductor with CUDA graphs, bf16, channels_last, fused optimizer, cudnn.benchmark,
    # through full batches, the partial last batch and evaluation. A fallback here is a bug to look at.
    config = TrainConfig(model=model, epochs=1, batch_size=64, optimizer="adamw", lr=3e-3, limit_train=200,
                         limit_test=100, device="cuda", data_dir=str(data_root))
    data = data_for(config, torch.device("cuda"))
    net = model_for(config, 10)
    runtime = Runtime.from_config(config)
    runtime.apply_backend_settings()
    net.to(runtime.device, memory_format=runtime.memory_format)
    fast = FastPath(net, build_optimizer(net, config, fused=runtime.fused_optimizer), runtime,
                    loss_fn=nn.CrossEntropyLoss())
    normalize = (data.info.mean, data.info.std)
    batches = BatchIterator(data.train, 64, seed=0, normalize=normalize, channels_last=runtime.channels_last)
    losses = torch.stack([fast.train_step(x, y, epoch=0, step=i)[0] for i, (x, y) in enumerate(batches)])
    accuracy = fast.evaluate(lambda m, rt: evaluate(m, data.test, normalize=normalize, batch_size=64, runtime=rt),
                             epoch=0).accuracy
    assert fast.fallbacks == [], fast.fallbacks
    assert fast.compile_mode == "reduce-overhead" and torch.isfinite(losses).all() and 0 <= accuracy <= 1


def test_fit_records_what_ran_in_config_json_and_the_checkpoint(data_root, tmp_path, capsys):
    # Through fit, as `cnnzoo train` runs it: compiling fails on the last partial batch of epoch 1.
    from cnnzoo.train import RunDir, fit, load_checkpoint
    from cnnzoo.workflows.run import write_run_config

    config = TrainConfig(model="lenet_bn", epochs=2, batch_size=64, optimizer="sgd", lr=0.05, limit_train=200,
                         limit_test=100, device="cpu", data_dir=str(data_root))
    data = data_for(config, torch.device("cpu"))
    eager = fit(model_for(config, 10), data, config, quiet=True)
    runtime = dataclasses.replace(Runtime.from_config(config), compile=True,
                                  compile_backend=failing_backend(lambda n, batch: batch == 8))
    run_dir = RunDir.create(tmp_path, "run")
    model = model_for(config, 10)
    write_run_config(run_dir, config, data, model, runtime)
    history = fit(model, data, config, run_dir=run_dir, runtime=runtime, quiet=True)
    assert history.batch_loss == eager.batch_loss
    assert [row["test_acc"] for row in history.epochs] == [row["test_acc"] for row in eager.epochs]
    assert history.compile_mode is None and [f["where"] for f in history.fallbacks] == ["at epoch 1, step 4"]
    recorded = run_dir.read_json("config.json")["runtime"]
    assert recorded["compile"] is False and recorded["fallbacks"] == history.fallbacks
    assert load_checkpoint(run_dir.last_checkpoint).meta["history"]["fallbacks"] == history.fallbacks
    assert capsys.readouterr().err.count("torch.compile failed at epoch 1, step 4") == 1
