"""fit/evaluate on real data: determinism, resume equality, divergence, and the accuracy floors."""

import csv
import json

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train import (
    Callback,
    TrainConfig,
    TrainingDiverged,
    load_checkpoint,
)
from cnnzoo.workflows import load_trained, resume_run, train_run
from cnnzoo.train.checkpoint import load_model_state


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


class _StopAfter(Exception):
    pass


@pytest.mark.parametrize("model,fused", [("lenet5", "off"), ("lenet5", "on"), ("alexnet_bn", "off")])
def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path, quick_config, model, fused):
    # alexnet_bn has dropout and BN running statistics: RNG state and buffers must both survive resume.
    # Fused kernels read optimizer state with the parameter's strides, which are channels_last here.
    config = quick_config.replace(model=model, epochs=3, schedule="cosine", warmup_epochs=1, hflip=True,
                                  crop_padding=2, limit_train=256 if model != "lenet5" else 1024,
                                  limit_test=64 if model != "lenet5" else 256, input_size=None if model == "lenet5" else 72,
                                  fused_optimizer=fused, channels_last="on")
    _, full = train_run(config, out=tmp_path, name="full", quiet=True)

    class CrashAfterFirst(Callback):  # a crash, not a clean stop: the run must resume from its checkpoint
        def on_epoch_end(self, state):
            if state.epoch == 0:
                raise _StopAfter

    with pytest.raises(_StopAfter):
        train_run(config, out=tmp_path, name="cut", quiet=True, callbacks=[CrashAfterFirst()])
    assert load_checkpoint(tmp_path / "cut").meta["epoch"] == 1
    _, resumed = resume_run(tmp_path / "cut", quiet=True)
    assert _metrics(resumed) == _metrics(full)
    assert resumed.batch_loss == full.batch_loss
    a = load_checkpoint(tmp_path / "full").model_state
    b = load_checkpoint(tmp_path / "cut").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_is_complete_and_parses(tmp_path, quick_config):
    run_dir, history = train_run(quick_config.replace(val_split=0.2), out=tmp_path, name="run", quiet=True)
    for name in ("config.json", "metrics.csv", "batch_loss.csv", "evaluation.json", "loss.png", "accuracy.png",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (run_dir.path / name).is_file(), name
    config = json.loads((run_dir.path / "config.json").read_text())
    assert config["model"] == "lenet5" and config["versions"]["torch"] == torch.__version__
    assert config["runtime"]["device"] == "cpu"
    rows = list(csv.DictReader(open(run_dir.path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_acc"]) <= 1 and 0 <= float(r["test_acc"]) <= 1 for r in rows)
    batches = list(csv.DictReader(open(run_dir.path / "batch_loss.csv")))
    assert len(batches) == len(history.batch_loss) == 2 * 13  # 819 train images after the 20% split, batch 64
    evaluation = json.loads((run_dir.path / "evaluation.json").read_text())
    assert sum(map(sum, evaluation["confusion"])) == 256
    assert evaluation["accuracy"] == pytest.approx(float(rows[-1]["test_acc"]))


def test_absurd_learning_rate_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, quick_config):
    # ReLU, unlike sigmoid, lets the activations blow up, so the loss reaches inf/NaN quickly.
    config = quick_config.replace(model="lenet5_classic", model_options={"activation": "relu"}, optimizer="sgd",
                                  lr=1e6, momentum=0.0, epochs=2)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+.*learning rate"):
        train_run(config, out=tmp_path, name="nan", quiet=True)
    checkpoint = load_checkpoint(tmp_path / "nan")
    assert checkpoint.meta["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())


def test_existing_run_name_is_refused_unless_overwrite(tmp_path, quick_config):
    config = quick_config.replace(epochs=1, limit_train=128, limit_test=64)
    train_run(config, out=tmp_path, name="same", quiet=True)
    with pytest.raises(CnnzooError, match="already exists.*--overwrite"):
        train_run(config, out=tmp_path, name="same", quiet=True)
    train_run(config, out=tmp_path, name="same", quiet=True, overwrite=True)


def test_load_trained_restores_the_model(tmp_path, quick_config):
    run_dir, history = train_run(quick_config.replace(epochs=1), out=tmp_path, name="r", quiet=True)
    trained = load_trained(run_dir.path, which="last")
    assert trained.classes[0] == "T-shirt/top"
    with pytest.raises(CnnzooError, match="does not fit"):
        from cnnzoo.models import build_model

        load_model_state(build_model("lenet5", num_classes=7), trained.model.state_dict())


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


def test_tta_averages_the_logits_of_each_image_and_its_mirror(data_root):
    from cnnzoo.data import load_data, preprocess
    from cnnzoo.models import build_model
    from cnnzoo.train import evaluate

    data = load_data("fashion-mnist", root=data_root, limit_train=64, limit_test=300)
    torch.manual_seed(0)
    model = build_model("lenet_bn").eval()  # eval mode: no batch statistics, so batching cannot matter
    normalize = (data.info.mean, data.info.std)
    x = preprocess(data.test.images, normalize=normalize)
    with torch.inference_mode():
        logits = (model(x) + model(torch.flip(x, dims=(3,)))) / 2
    result = evaluate(model, data.test, normalize=normalize, batch_size=128, tta=True)
    assert torch.equal(result.predictions, logits.argmax(1))
    torch.testing.assert_close(result.confidences, logits.softmax(1).max(1).values)
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, data.test.labels).item(), rel=1e-5)
    plain = evaluate(model, data.test, normalize=normalize, batch_size=128)
    assert not torch.equal(plain.confidences, result.confidences)  # the mirror really took part


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


def test_mistakes_name_images_of_the_official_test_file_when_a_subset_was_evaluated(tmp_path, quick_config):
    from cnnzoo.data import load_data, load_split
    from cnnzoo.viz.plots import _misclassified_images

    config = quick_config.replace(epochs=1, limit_train=256, limit_test=200)
    run_dir, _ = train_run(config, out=tmp_path, name="subset", quiet=True)
    evaluation = json.loads((run_dir.path / "evaluation.json").read_text())
    evaluated = load_data("fashion-mnist", root=config.data_dir, limit_test=200, seed=config.seed).test
    full = load_split("fashion-mnist", "test", root=config.data_dir)
    mistakes = evaluation["misclassified"]
    assert mistakes and all(full.labels[m["index"]] == m["true"] for m in mistakes)
    shown = _misclassified_images(run_dir.path, evaluation)
    positions = evaluated.source_indices().tolist()
    assert all(torch.equal(shown[k], evaluated.images[positions.index(m["index"])]) for k, m in enumerate(mistakes))


def test_course_training_accuracy_is_the_whole_train_set_in_eval_mode(tmp_path, quick_config, data_root):
    from cnnzoo.train.loop import evaluate
    from cnnzoo.workflows.run import data_for

    config = quick_config.replace(model="lenet_bn", epochs=1, limit_train=512, train_acc="eval")
    run_dir, history = train_run(config, out=tmp_path, name="eval", quiet=True)
    _, running = train_run(config.replace(train_acc="running"), out=tmp_path, name="running", quiet=True)
    assert history.batch_loss == running.batch_loss  # the re-evaluation changes nothing it trains
    trained = load_trained(run_dir.path, which="last")
    data = data_for(config, torch.device("cpu"))
    expected = evaluate(trained.model, data.train, input_size=trained.input_size, normalize=trained.normalize).accuracy
    assert history.epochs[0]["train_acc"] == expected != running.epochs[0]["train_acc"]
    assert json.loads((run_dir.path / "config.json").read_text())["train_acc"] == "eval"  # what it reports


def test_course_data_settings_reach_the_batches(tmp_path, quick_config):
    # Keras' split: the validation images are the last 20% of the (limited) training images.
    config = quick_config.replace(epochs=1, limit_train=500, val_split=0.2, val_holdout="last",
                                  resize_mode="pil", input_size=32)
    run_dir, history = train_run(config, out=tmp_path, name="keras", quiet=True)
    assert len(history.batch_loss) == 7  # 400 training images in batches of 64
    assert history.epochs[0]["val_acc"] is not None
