"""fit/evaluate on real data: determinism, divergence, and the accuracy floors (resume equality:
tests/workflows/test_resume.py)."""

import json
import os
import signal

import pytest
import torch

from cnnzoo.train import (
    Callback,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    fit,
    load_checkpoint,
)
from cnnzoo.workflows import load_trained, train_run


def _metrics(history):
    return [{k: v for k, v in row.items() if k not in ("time_s", "images_per_s")} for row in history.epochs]


def test_same_seed_twice_gives_identical_numbers(tmp_path, quick_config):
    _, first = train_run(quick_config, out=tmp_path, name="a", quiet=True)
    _, second = train_run(quick_config, out=tmp_path, name="b", quiet=True)
    assert _metrics(first) == _metrics(second)
    assert first.batch_loss == second.batch_loss
    a = load_checkpoint(tmp_path / "a").model_state
    b = load_checkpoint(tmp_path / "b").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, other = train_run(quick_config.replace(seed=1), out=tmp_path, name="c", quiet=True)
    assert other.batch_loss != first.batch_loss


def test_absurd_learning_rate_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, quick_config):
    # ReLU, unlike sigmoid, lets the activations blow up, so the loss reaches inf/NaN quickly.
    config = quick_config.replace(model="lenet5_classic", model_options={"activation": "relu"}, optimizer="sgd",
                                  lr=1e6, momentum=0.0, epochs=2)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+.*learning rate"):
        train_run(config, out=tmp_path, name="nan", quiet=True)
    checkpoint = load_checkpoint(tmp_path / "nan")
    assert checkpoint.meta["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())


@pytest.mark.slow
def test_lenet_bn_one_epoch_full_fashion_mnist_reaches_80_percent(tmp_path, data_root):
    config = TrainConfig(model="lenet_bn", dataset="fashion-mnist", epochs=1, batch_size=128, optimizer="adamw",
                         lr=3e-3, data_dir=str(data_root), device="cpu")
    _, history = train_run(config, out=tmp_path, name="bn", quiet=True)
    assert history.final["test_acc"] >= 0.80


@pytest.mark.slow
def test_lenet5_one_epoch_full_mnist_reaches_90_percent(tmp_path, data_root):
    config = TrainConfig(model="lenet5", dataset="mnist", epochs=1, batch_size=128, optimizer="adamw", lr=3e-3,
                         init="xavier", data_dir=str(data_root), device="cpu")
    _, history = train_run(config, out=tmp_path, name="mnist", quiet=True)
    assert history.final["test_acc"] >= 0.90


def test_compiled_model_trains_on_the_cpu_and_reports_compile_time_apart(tmp_path, quick_config):
    # The GPU fast path compiles too; this exercises the same branch where CI can run it.
    config = quick_config.replace(epochs=1, limit_train=256, limit_test=128, compile="on")
    _, compiled = train_run(config, out=tmp_path, name="compiled", quiet=True)
    _, eager = train_run(config.replace(compile="off"), out=tmp_path, name="eager", quiet=True)
    assert compiled.compile_s > 0 and eager.compile_s == 0
    assert (compiled.compile_mode, eager.compile_mode) == ("default", None)
    assert compiled.batch_loss == pytest.approx(eager.batch_loss, rel=1e-3, abs=1e-4)


def test_fused_optimizer_switch_trains_like_the_plain_optimizer(tmp_path, quick_config):
    config = quick_config.replace(epochs=1, limit_train=512, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True)
    _, fused = train_run(config.replace(fused_optimizer="on"), out=tmp_path, name="fused", quiet=True)
    _, plain = train_run(config.replace(fused_optimizer="off"), out=tmp_path, name="plain", quiet=True)
    assert json.loads((tmp_path / "fused" / "config.json").read_text())["runtime"]["fused_optimizer"] is True
    assert fused.batch_loss == pytest.approx(plain.batch_loss, rel=1e-4, abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_takes_data_loaded_on_the_cpu(data_root):
    # The README's API example: load_data's default device is the CPU, the run's is the GPU.
    from cnnzoo.data import load_data
    from cnnzoo.models import build_model
    from cnnzoo.train import evaluate, fit

    data = load_data("fashion-mnist", root=data_root, limit_train=4096, limit_test=1024)
    model = build_model("lenet_bn")
    history = fit(model, data, TrainConfig(model="lenet_bn", epochs=2, optimizer="adamw", lr=3e-3, device="cuda",
                                           tta=True), quiet=True)
    assert next(model.parameters()).is_cuda and history.final["test_acc"] > 0.6
    assert evaluate(model, data.test, normalize=(data.info.mean, data.info.std)).accuracy > 0.6


def test_data_bundle_to_its_own_device_is_the_same_data(data_root):
    from cnnzoo.data import load_data

    data = load_data("fashion-mnist", root=data_root, limit_train=64, limit_test=64, val_split=0.25)
    moved = data.to("cpu")
    assert (moved.train, moved.val, moved.test, moved.info) == (data.train, data.val, data.test, data.info)


def test_course_training_accuracy_is_the_whole_train_set_in_eval_mode(tmp_path, quick_config, data_root):
    from cnnzoo.train import evaluate
    from cnnzoo.workflows.run import data_for

    config = quick_config.replace(model="lenet_bn", epochs=1, limit_train=512, train_acc="eval")
    run_dir, history = train_run(config, out=tmp_path, name="eval", quiet=True)
    _, running = train_run(config.replace(train_acc="running"), out=tmp_path, name="running", quiet=True)
    assert history.batch_loss == running.batch_loss  # the re-evaluation changes nothing it trains
    trained = load_trained(run_dir.path, which="last")
    data = data_for(config, torch.device("cpu"))
    expected = evaluate(trained.model, data.train, **trained.input_spec.kwargs()).accuracy
    assert history.epochs[0]["train_acc"] == expected != running.epochs[0]["train_acc"]
    assert json.loads((run_dir.path / "config.json").read_text())["train_acc"] == "eval"  # what it reports


def test_course_data_settings_reach_the_batches(tmp_path, quick_config):
    # Keras' split: the validation images are the last 20% of the (limited) training images.
    config = quick_config.replace(epochs=1, limit_train=500, val_split=0.2, val_holdout="last",
                                  resize_mode="pil", input_size=32)
    run_dir, history = train_run(config, out=tmp_path, name="keras", quiet=True)
    assert len(history.batch_loss) == 7  # 400 training images in batches of 64
    assert history.epochs[0]["val_acc"] is not None


class _Signals(Callback):
    """Sends this process `count` SIGINTs after the first step, as Ctrl-C pressed `count` times would."""

    def __init__(self, count):
        self.count, self.steps = count, 0

    def on_step_end(self, state):
        self.steps += 1
        if self.steps == 1:
            for _ in range(self.count):
                os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("count,error", [(1, TrainingInterrupted), (2, KeyboardInterrupt)])
def test_first_signal_stops_after_the_step_and_a_second_exits_at_once(quick_config, data_root, count, error):
    from cnnzoo.data import load_data
    from cnnzoo.models import build_model

    data = load_data("fashion-mnist", root=data_root, limit_train=256, limit_test=64)
    signals = _Signals(count)
    with pytest.raises(error):
        fit(build_model("lenet5"), data, quick_config, callbacks=[signals], quiet=True)
    assert signals.steps == 1  # the step that was running finished, and no other began
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit put the handlers back


def test_metrics_csv_says_how_many_images_each_accuracy_counts(tmp_path, quick_config):
    config = quick_config.replace(epochs=1, limit_train=512, limit_test=200, val_split=0.25)
    run_dir, history = train_run(config, out=tmp_path, name="counts", quiet=True)
    (row,) = run_dir.read_metrics()
    assert (row["train_images"], row["val_images"], row["test_images"]) == (384, 128, 200)  # read back checked and typed
    assert history.epochs[0]["test_images"] == 200
    _, plain = train_run(config.replace(val_split=0.0), out=tmp_path, name="no-val", quiet=True)
    assert plain.epochs[0]["val_images"] is None and plain.epochs[0]["train_images"] == 512


def _reference_fit(config, data, model):
    """The training loop as cnnzoo ran it before the step became one function (main at cca7844), op for
    op: the eager CPU path must keep giving exactly these numbers for the same seed."""
    from torch import nn

    from cnnzoo.data import BatchIterator, InputSpec
    from cnnzoo.data.batches import Augment
    from cnnzoo.train.optim import LRSchedule, build_optimizer, set_lr

    batches = BatchIterator(data.train, config.batch_size, shuffle=True, seed=config.seed,
                            augment=Augment(crop_padding=config.crop_padding, hflip=config.hflip),
                            **InputSpec.from_config(config, data.info).kwargs())
    optimizer = build_optimizer(model, config)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    schedule = LRSchedule.from_config(config, len(batches))
    batch_losses = []
    for epoch in range(config.epochs):
        model.train()
        batches.set_epoch(epoch)
        losses = torch.zeros(len(batches))
        for step, (x, y) in enumerate(batches):
            set_lr(optimizer, schedule(epoch * len(batches) + step))
            logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses[step] = loss.detach()
        batch_losses += losses.tolist()
    return batch_losses


@pytest.mark.parametrize("settings", [
    {"model": "lenet5", "optimizer": "adamw", "lr": 3e-3},
    {"model": "lenet_bn", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "crop_padding": 2, "hflip": True,
     "grad_clip": 1.0, "label_smoothing": 0.1, "schedule": "cosine", "warmup_epochs": 0.5},
])
def test_the_eager_cpu_step_gives_bit_for_bit_the_numbers_it_always_gave(data_root, settings):
    from cnnzoo.workflows.run import data_for, model_for

    config = TrainConfig(dataset="fashion-mnist", epochs=2, batch_size=64, limit_train=200, limit_test=100,
                         data_dir=str(data_root), device="cpu", seed=3, channels_last="off", **settings)
    data = data_for(config, torch.device("cpu"))
    trained, reference = model_for(config, 10), model_for(config, 10)
    history = fit(trained, data, config, quiet=True)
    assert history.batch_loss == _reference_fit(config, data, reference)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), reference.state_dict().values()))


class _EveryStep(Callback):
    def __init__(self):
        self.seen = []

    def on_step_end(self, state):
        self.seen.append((state.step, state.loss.item()))


class _EveryThird(_EveryStep):
    step_every = 3


def test_a_callback_hears_the_steps_it_listens_to_and_the_epochs_last(quick_config):
    config = quick_config.replace(epochs=1, limit_train=448)  # 7 steps of 64
    every, third = _EveryStep(), _EveryThird()
    from cnnzoo.workflows.run import data_for, model_for

    history = fit(model_for(config, 10), data_for(config, torch.device("cpu")), config, quiet=True,
                  callbacks=[every, third])
    assert [step for step, _ in every.seen] == list(range(7))
    assert [step for step, _ in third.seen] == [2, 5, 6]
    assert [loss for _, loss in every.seen] == history.batch_loss  # state.loss: this step's, read when asked


def _fp16(config):
    import dataclasses

    from cnnzoo.train.runtime import Runtime

    return dataclasses.replace(Runtime.from_config(config), amp_dtype=torch.float16, channels_last=False)


def test_fp16_with_a_grad_scaler_trains_as_pytorchs_amp_recipe(data_root):
    # The recipe, written out: autocast forward, scale the loss, unscale before clipping, scaler.step, update.
    from torch import nn

    from cnnzoo.data import BatchIterator, InputSpec
    from cnnzoo.train.optim import build_optimizer, set_lr
    from cnnzoo.workflows.run import data_for, model_for

    config = TrainConfig(model="lenet5", epochs=1, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9,
                         grad_clip=1.0, limit_train=256, limit_test=64, data_dir=str(data_root), device="cpu")
    data = data_for(config, torch.device("cpu"))
    trained, reference = model_for(config, 10), model_for(config, 10)
    history = fit(trained, data, config, runtime=_fp16(config), quiet=True)

    optimizer, scaler = build_optimizer(reference, config), torch.amp.GradScaler("cpu")
    batches = BatchIterator(data.train, 64, seed=config.seed, **InputSpec.from_config(config, data.info).kwargs())
    losses = []
    for x, y in batches:
        set_lr(optimizer, config.lr)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            logits = reference(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(reference.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert history.batch_loss == losses
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), reference.state_dict().values()))


def _overflowing_scaler(monkeypatch, init_scale):
    """fit's GradScaler starting at `init_scale`: far too high, so the first steps' fp16 gradients overflow
    and the scaler skips them, halving its scale each time."""
    import functools

    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=init_scale))


def test_steps_the_scaler_skips_are_not_divergence(data_root, monkeypatch):
    _overflowing_scaler(monkeypatch, 2.0 ** 60)
    from cnnzoo.workflows.run import data_for, model_for

    config = TrainConfig(model="lenet5", epochs=1, batch_size=64, optimizer="sgd", lr=0.05, limit_train=256,
                         limit_test=64, data_dir=str(data_root), device="cpu")
    model = model_for(config, 10)
    before = [t.clone() for t in model.state_dict().values()]
    history = fit(model, data_for(config, torch.device("cpu")), config, runtime=_fp16(config), quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))  # every step skipped
    assert len(history.batch_loss) == 4 and all(torch.isfinite(torch.tensor(history.batch_loss)))


def test_a_resumed_fp16_run_continues_the_loss_scale_exactly(data_root, monkeypatch, tmp_path):
    # Starting at 2**24 the scaler skips the first steps and halves its scale each time, so a resume
    # that lost the scale would skip different steps than the uninterrupted run.
    _overflowing_scaler(monkeypatch, 2.0 ** 24)
    from cnnzoo.train import RunDir
    from cnnzoo.workflows.run import data_for, model_for

    config = TrainConfig(model="lenet5", epochs=2, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9,
                         limit_train=256, limit_test=64, data_dir=str(data_root), device="cpu")
    data = data_for(config, torch.device("cpu"))
    full_model = model_for(config, 10)
    full = fit(full_model, data, config, runtime=_fp16(config), quiet=True)

    class StopAfterFirst(Callback):
        def on_epoch_end(self, state):
            state.stop_training = True

    cut_dir = RunDir.create(tmp_path, "cut")
    fit(model_for(config, 10), data, config, runtime=_fp16(config), run_dir=cut_dir, quiet=True,
        callbacks=[StopAfterFirst()])
    checkpoint = load_checkpoint(cut_dir.path)
    assert checkpoint.meta["grad_scaler"]["scale"] < 2.0 ** 24  # it did skip and back off
    resumed_model = model_for(config, 10)
    resumed = fit(resumed_model, data, config, runtime=_fp16(config), resume=checkpoint, quiet=True)
    assert resumed.batch_loss == full.batch_loss
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()))


def test_a_compiled_run_resumes_exactly(tmp_path, quick_config):
    # The compiled step keeps its learning rates as tensors; the checkpoint holds floats, and a resumed
    # run builds its step after loading them. A passthrough backend: the step's compiled code path
    # without inductor's minutes of compiling.
    import dataclasses

    from cnnzoo.train import RunDir
    from cnnzoo.train.runtime import Runtime
    from cnnzoo.workflows.run import data_for, model_for

    config = quick_config.replace(epochs=2, limit_train=256, limit_test=64, schedule="cosine")
    runtime = dataclasses.replace(Runtime.from_config(config), compile=True,
                                  compile_backend=lambda graph_module, example_inputs: graph_module.forward)
    data = data_for(config, torch.device("cpu"))
    full_model = model_for(config, 10)
    full = fit(full_model, data, config, runtime=runtime, quiet=True)

    class StopAfterFirst(Callback):
        def on_epoch_end(self, state):
            state.stop_training = True

    cut = RunDir.create(tmp_path, "cut")
    fit(model_for(config, 10), data, config, runtime=runtime, run_dir=cut, quiet=True, callbacks=[StopAfterFirst()])
    resumed_model = model_for(config, 10)
    resumed = fit(resumed_model, data, config, runtime=runtime, resume=load_checkpoint(cut.path), quiet=True)
    assert full.compile_mode == resumed.compile_mode == "default"
    assert resumed.batch_loss == full.batch_loss
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()))


def test_epoch_times_wait_for_an_apple_gpu_as_for_a_cuda_one(monkeypatch):
    # No MPS here: what matters is that its queue is drained before the clock is read.
    from cnnzoo.train.loop import synchronize

    calls = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    synchronize(torch.device("mps"))
    synchronize(torch.device("cpu"))
    assert calls == ["mps"]
