"""The training step: compiled whole it trains as the eager step does; captured → compiled → eager, it
falls back piece by piece when one fails, and the run goes on with the numbers an eager run of the
safer setting has. Failures are injected on the CPU: a torch.compile backend that raises on a chosen
graph, a fused-optimizer kernel that raises, a model that refuses a layout or autocast, and the CPU
itself, which cannot capture a CUDA graph."""

import dataclasses

import pytest
import torch
from torch import nn

from cnnzoo.data import BatchIterator
from cnnzoo.errors import CnnzooError
from cnnzoo.train import TrainConfig, evaluate
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.fastpath import TrainStep, compile_mode
from cnnzoo.train.optim import build_optimizer
from cnnzoo.workflows.run import data_for, model_for

INJECTED = "injected failure for the test\nits second line"


def failing_backend(fail_on):
    """A torch.compile backend running dynamo's graph as is, that raises on the graphs `fail_on(n, batch)`
    picks: `n` counts the graphs holding a batch (1-based), `batch` is its size. The training step's
    graph takes the batch's sample indices (1-d int64), evaluation's the images; the step's other
    graphs (the update after backward) hold no batch and are compiled as they come."""
    calls = []

    def backend(graph_module, example_inputs):
        tensors = [t for t in example_inputs if isinstance(t, torch.Tensor)]
        indices = [t for t in tensors if t.dtype == torch.int64 and t.dim() == 1]
        images = [t for t in tensors if t.is_floating_point() and t.dim() == 4 and t.shape[-1] >= 28]
        if not indices and not images:
            return graph_module.forward
        batch = len(indices[0]) if indices else images[0].shape[0]
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


def _step(net, config, runtime, batches, **options):
    return TrainStep(net, build_optimizer(net, config, fused=runtime.fused_optimizer), runtime, batches,
                     loss_fn=nn.CrossEntropyLoss(), **options)


def _epoch(step, lr=0.05):
    losses, correct = step.begin_epoch(0, [lr] * len(step.sizes))
    for b in range(len(step.sizes)):
        step(b, lr)
    return losses, correct


def _train(data_root, *, model="lenet5", optimizer="sgd", limit_train=200, prepare=None, **runtime_changes):
    """Train one epoch through TrainStep exactly as fit does and evaluate; returns (losses, accuracy, step)."""
    config = TrainConfig(model=model, epochs=1, batch_size=64, optimizer=optimizer, lr=0.05, momentum=0.9,
                         limit_train=limit_train, limit_test=100, device="cpu", data_dir=str(data_root))
    data = data_for(config, torch.device("cpu"))
    net = model_for(config, len(data.train.classes))
    if prepare is not None:
        prepare(net)
    runtime = dataclasses.replace(Runtime.from_config(config), **runtime_changes)
    net.to(memory_format=runtime.memory_format)
    normalize = (data.info.mean, data.info.std)
    batches = BatchIterator(data.train, 64, seed=0, normalize=normalize, channels_last=runtime.channels_last)
    fast = _step(net, config, runtime, batches)
    torch.manual_seed(1)
    losses = _epoch(fast)[0].tolist()
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
    assert (losses, accuracy) == eager  # the eager step after the fallback: bit for bit
    assert [f["piece"] for f in fast.fallbacks] == ["compile"] and backend.calls == [64]
    assert fast.fallbacks[0]["where"] == "at epoch 1, step 1"
    # Dynamo wraps the backend's error; the line names both.
    assert fast.fallbacks[0]["error"] == "BackendCompilerFailed: RuntimeError: injected failure for the test"
    message = capsys.readouterr().err.strip()
    assert message == ("cnnzoo: torch.compile failed at epoch 1, step 1 (BackendCompilerFailed: RuntimeError: "
                       "injected failure for the test); continuing from there with it off.")
    assert fast.describe()["compile"] is False and fast.describe()["compile_mode"] is None


def test_the_captured_step_goes_first_and_the_compiled_step_continues(data_root, eager, capsys):
    # The CPU cannot capture a CUDA graph: the first step's capture fails, and the whole step, compiled,
    # runs from there (its tensor learning rate rounds as the float one may not: within float tolerance).
    backend = failing_backend(lambda n, batch: False)
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, cuda_graphs=True,
                                    compile_backend=backend)
    assert [f["piece"] for f in fast.fallbacks] == ["cuda_graphs"] and fast.compile_mode == "default"
    # Per batch shape two graphs (forward, and the update after backward, which counts the correct
    # labels), then evaluation's two batches.
    assert backend.calls == [64, 64, 8, 8, 64, 36]
    assert losses == pytest.approx(eager[0], rel=1e-5) and accuracy == eager[1]
    assert "the captured step (CUDA graph) failed at epoch 1, step 1" in capsys.readouterr().err


def test_compile_failing_on_the_last_partial_batch_continues_from_that_step(data_root, eager, capsys):
    # 200 images in batches of 64: the fourth batch (8 images) is a new shape and compiles again.
    backend = failing_backend(lambda n, batch: batch == 8)
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, compile_backend=backend)
    assert backend.calls == [64, 64, 8]  # steps 1-3 ran compiled; evaluation runs eagerly after the fallback
    assert fast.fallbacks[0]["where"] == "at epoch 1, step 4"
    assert losses == pytest.approx(eager[0], rel=1e-5) and accuracy == eager[1]
    assert "step 4" in capsys.readouterr().err


def test_compile_failing_at_evaluation_evaluates_eagerly(data_root, eager, capsys):
    backend = failing_backend(lambda n, batch: n == 5)  # two graphs each for 64 and 8, then evaluation's first
    losses, accuracy, fast = _train(data_root, channels_last=False, compile=True, compile_backend=backend)
    assert [f["where"] for f in fast.fallbacks] == ["at epoch 1, evaluation"]
    assert losses == pytest.approx(eager[0], rel=1e-5) and accuracy == eager[1]
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


def test_bf16_autocast_failing_falls_back_to_fp32(data_root, eager, capsys):
    refuse_autocast = refuse(RuntimeError("bf16 kernel missing"), _autocast_on)
    losses, accuracy, fast = _train(data_root, channels_last=False, amp_dtype=torch.bfloat16, prepare=refuse_autocast)
    assert [f["piece"] for f in fast.fallbacks] == ["precision"] and fast.describe()["precision"] == "fp32"
    assert (losses, accuracy) == eager
    assert "bf16 autocast failed at epoch 1, step 1" in capsys.readouterr().err


def test_the_fallback_line_names_the_precision_that_ran(data_root, eager, capsys):
    refuse_autocast = refuse(RuntimeError("fp16 kernel missing"), _autocast_on)
    _, _, fast = _train(data_root, channels_last=False, amp_dtype=torch.float16, prepare=refuse_autocast)
    assert [f["piece"] for f in fast.fallbacks] == ["precision"] and fast.describe()["precision"] == "fp32"
    assert capsys.readouterr().err.startswith("cnnzoo: fp16 autocast failed at epoch 1, step 1")


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
    config = config.replace(limit_train=8, data_dir=str(data_root))
    net = model_for(config, 10)
    runtime = dataclasses.replace(Runtime.from_config(config), compile=True,
                                  compile_backend=failing_backend(lambda n, batch: True))
    data = data_for(config, torch.device("cpu"))
    fast = _step(net, config, runtime, BatchIterator(data.train, 4), distributed=True)
    with pytest.raises(Exception, match="injected failure"):
        _epoch(fast)
    assert fast.fallbacks == []


def test_cuda_graphs_only_for_small_models_in_one_process():
    graphs = Runtime(device=torch.device("cpu"), amp_dtype=None, channels_last=False, compile=True, cuda_graphs=True,
                     fused_optimizer=False, cudnn_benchmark=False)
    assert compile_mode(graphs, 61_706, distributed=False) == "cuda-graph"
    assert compile_mode(graphs, 46_764_746, distributed=False) == "default"  # kernels, not launches, dominate
    assert compile_mode(graphs, 61_706, distributed=True) == "default"  # DDP hooks split the graph
    fp16 = dataclasses.replace(graphs, amp_dtype=torch.float16)
    assert compile_mode(fp16, 61_706, distributed=False) == "default"  # the scaler reads its inf check on the host
    assert compile_mode(dataclasses.replace(graphs, compile=False), 61_706, distributed=False) is None


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
    normalize = (data.info.mean, data.info.std)
    batches = BatchIterator(data.train, 64, seed=0, normalize=normalize, channels_last=runtime.channels_last)
    fast = _step(net, config, runtime, batches)
    losses = _epoch(fast, lr=3e-3)[0]
    accuracy = fast.evaluate(lambda m, rt: evaluate(m, data.test, normalize=normalize, batch_size=64, runtime=rt),
                             epoch=0).accuracy
    assert fast.fallbacks == [], fast.fallbacks
    assert fast.compile_mode == "cuda-graph" and torch.isfinite(losses).all() and 0 <= accuracy <= 1


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
    assert history.batch_loss == pytest.approx(eager.batch_loss, rel=1e-5)
    assert [row["test_acc"] for row in history.epochs] == pytest.approx([row["test_acc"] for row in eager.epochs], abs=0.02)
    assert history.compile_mode is None and [f["where"] for f in history.fallbacks] == ["at epoch 1, step 4"]
    recorded = run_dir.read_json("config.json")["runtime"]
    assert recorded["compile"] is False and recorded["fallbacks"] == history.fallbacks
    assert load_checkpoint(run_dir.last_checkpoint).meta["history"]["fallbacks"] == history.fallbacks
    assert capsys.readouterr().err.count("torch.compile failed at epoch 1, step 4") == 1


def _cuda_pair(data_root, *, compile_on: bool, lrs=None):
    """lenet5 one epoch on CUDA: the captured whole step when `compile_on`, the eager fp32 step otherwise;
    returns (losses, weights, step)."""
    config = TrainConfig(model="lenet5", epochs=1, batch_size=64, optimizer="adamw", lr=3e-3, limit_train=64 * 12 + 8,
                         limit_test=100, device="cuda", data_dir=str(data_root), precision="fp32")
    data = data_for(config, torch.device("cuda"))
    net = model_for(config, 10).cuda()
    runtime = dataclasses.replace(Runtime.from_config(config), compile=compile_on, cuda_graphs=compile_on,
                                  channels_last=False, fused_optimizer=False, cudnn_benchmark=False)
    torch.backends.cudnn.deterministic = True
    step = _step(net, config, runtime, BatchIterator(data.train, 64, seed=0, normalize=(data.info.mean, data.info.std)))
    lrs = lrs or [3e-3] * len(step.sizes)
    losses, _ = step.begin_epoch(0, lrs)
    for b, lr in enumerate(lrs):
        step(b, lr)
    return losses.cpu(), [p.detach().cpu() for p in net.parameters()], step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_captured_step_trains_as_the_eager_step(data_root):
    captured_losses, captured_weights, step = _cuda_pair(data_root, compile_on=True)
    eager_losses, eager_weights, _ = _cuda_pair(data_root, compile_on=False)
    assert step.fallbacks == [] and step.compile_mode == "cuda-graph" and step.graph is not None
    torch.testing.assert_close(captured_losses, eager_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(captured_weights, eager_weights):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_captured_step_follows_a_per_step_schedule_without_recapturing(data_root):
    # A learning rate that changes every step is read from the device by the one captured graph.
    schedule = [3e-3 * (0.7 ** b) for b in range(13)]
    captured_losses, captured_weights, step = _cuda_pair(data_root, compile_on=True, lrs=schedule)
    eager_losses, eager_weights, _ = _cuda_pair(data_root, compile_on=False, lrs=schedule)
    assert step.fallbacks == [] and step.graph is not None
    torch.testing.assert_close(captured_losses, eager_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(captured_weights, eager_weights):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
