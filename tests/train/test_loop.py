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
    assert (row["train_images"], row["val_images"], row["test_images"]) == ("384", "128", "200")
    assert history.epochs[0]["test_images"] == 200
    _, plain = train_run(config.replace(val_split=0.0), out=tmp_path, name="no-val", quiet=True)
    assert plain.epochs[0]["val_images"] is None and plain.epochs[0]["train_images"] == 512
