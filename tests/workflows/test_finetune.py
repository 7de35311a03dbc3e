"""Fine-tuning from torchvision's ResNet-18 layout and from zoo runs, on real data, small enough for the CPU."""

import json
import pickle
import urllib.error

import pytest
import torch
import torchvision

from cnnzoo.cli import main
from cnnzoo.data import DATASETS
from cnnzoo.errors import CnnzooError
from cnnzoo.train import (
    Callback,
    TrainConfig,
    evaluate,
    load_checkpoint,
)
from cnnzoo.workflows import load_trained, resume_run, train_run
from cnnzoo.workflows.finetune import (
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    finetune_config,
    finetune_run,
    head_only,
    param_groups,
    pretrained_model,
)
from cnnzoo.workflows.run import data_for

TINY = {"input_size": 32, "batch_size": 32, "limit_train": 32, "limit_test": 32, "device": "cpu"}


def _config(data_root, **changes):
    return finetune_config("torchvision:resnet18", data_dir=str(data_root), **{**TINY, **changes})


def test_gray_stem_equals_rgb_network_on_the_replicated_image(tv_weights, data_root):
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(torch.load(tv_weights, weights_only=True))
    model = pretrained_model(_config(data_root), 1000, weights=tv_weights, keep_head=True)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_new_head_and_discriminative_learning_rates(tv_weights, data_root):
    model = pretrained_model(_config(data_root), 10, weights=tv_weights)
    assert model.fc.weight.shape == (10, 512)
    source = torch.load(tv_weights, weights_only=True)
    assert torch.equal(model.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    groups = param_groups(model)
    assert [round(g["lr_scale"], 3) for g in groups] == [0.1, 0.158, 0.251, 0.398, 0.631, 1.0]
    assert groups[0]["params"] == [model.conv1.weight, model.bn1.weight, model.bn1.bias]  # the stem with its BN
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_head_only_freezes_the_body_and_keeps_its_batch_norm_in_eval_mode(tv_weights, data_root):
    model = pretrained_model(_config(data_root), 10, weights=tv_weights)
    with head_only(model):
        model.train()
        assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
        assert not model.bn1.training and not model.layer3[0].downsample[1].training and model.fc.training
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and model.bn1.training


class _Stop(Exception):
    pass


def test_finetune_run_is_complete_trains_only_the_head_first_and_resumes_exactly(tmp_path, tv_weights, data_root):
    config = _config(data_root, epochs=2, head_epochs=1)
    start = pretrained_model(config, 10, weights=tv_weights).state_dict()
    after_head = {}

    class Snapshot(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 0:  # the last checkpoint is written before the user's callbacks run
                after_head.update(load_checkpoint(tmp_path / "full").model_state)

    run_dir, history = finetune_run(config, weights=tv_weights, out=tmp_path, name="full", quiet=True,
                                    callbacks=[Snapshot()])
    body = [k for k in start if not k.startswith("fc.")]
    assert all(torch.equal(after_head[k], start[k]) for k in body)  # BN running statistics included
    assert not torch.equal(after_head["fc.weight"], start["fc.weight"])
    final = load_checkpoint(run_dir.last_checkpoint)
    assert not torch.equal(final.model_state["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])
    assert [round(g["lr_scale"], 3) for g in final.meta["optimizer"]["param_groups"]][::5] == [0.1, 1.0]

    for name in ("config.json", "metrics.csv", "batch_loss.csv", "evaluation.json", "loss.png", "accuracy.png",
                 "checkpoints/last.safetensors"):
        assert (run_dir.path / name).is_file(), name
    assert [row["epoch"] for row in history.epochs] == [1, 2]
    saved = json.loads((run_dir.path / "config.json").read_text())
    assert saved["finetune_from"] == "torchvision:resnet18" and saved["head_epochs"] == 1
    trained = load_trained(run_dir.path, which="last")
    assert trained.input_spec.normalize == (IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD) and trained.input_spec.input_size == (32, 32)
    # What `cnnzoo evaluate` rebuilds from the run gives the numbers the run itself wrote.
    evaluation = json.loads((run_dir.path / "evaluation.json").read_text())
    result = evaluate(trained.model, data_for(config, torch.device("cpu")).test, **trained.input_spec.kwargs())
    assert result.loss == pytest.approx(evaluation["loss"], rel=1e-5)

    class Crash(Callback):
        def on_epoch_end(self, state):
            raise _Stop

    with pytest.raises(_Stop):  # stopped right after the head phase: the resumed run switches optimizers
        finetune_run(config, weights=tv_weights, out=tmp_path, name="cut", quiet=True, callbacks=[Crash()])
    resume_run(tmp_path / "cut", quiet=True)
    cut = load_checkpoint(tmp_path / "cut").model_state
    assert all(torch.equal(final.model_state[k], cut[k]) for k in cut)


class _CreatesFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.path),))


def test_malicious_weights_pickle_is_refused(tmp_path, data_root):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"conv1.weight": _CreatesFile(tmp_path / "pwned")}, f)
    with open(evil, "rb") as f:  # the payload is live: plain unpickling runs it
        pickle.load(f)
    assert (tmp_path / "pwned").is_dir()
    (tmp_path / "pwned").rmdir()

    with pytest.raises(CnnzooError, match="refuses pickles"):
        finetune_run(_config(data_root), weights=evil, out=tmp_path, name="ft", quiet=True)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "ft").exists()


def test_failed_download_says_to_pass_weights(monkeypatch, data_root, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(CnnzooError, match="pass --weights PATH"):
        finetune_run(_config(data_root), out=tmp_path, quiet=True)


@pytest.mark.parametrize("source, error", [("torchvision:vgg99", "Unknown pretrained model"),
                                           ("no/such/run", "does not exist")])
def test_unknown_sources_are_clear_errors(source, error):
    with pytest.raises(CnnzooError, match=error):
        finetune_config(source)


def test_keep_head_needs_the_same_class_count(tv_weights, data_root):
    with pytest.raises(CnnzooError, match="--keep-head"):
        pretrained_model(_config(data_root), 10, weights=tv_weights, keep_head=True)


def test_from_a_zoo_run_mnist_to_fashion_mnist(tmp_path, data_root):
    source = TrainConfig(model="lenet5", dataset="mnist", epochs=1, batch_size=64, optimizer="adamw", lr=3e-3,
                         limit_train=512, limit_test=64, data_dir=str(data_root), device="cpu")
    source_dir, _ = train_run(source, out=tmp_path, name="mnist", quiet=True)
    config = finetune_config(str(source_dir.path), dataset="fashion-mnist", data_dir=str(data_root), epochs=2,
                             head_epochs=1, batch_size=64, limit_train=256, limit_test=64, device="cpu")
    assert config.model == "lenet5" and config.normalize_mean == DATASETS["mnist"].mean
    src = load_checkpoint(source_dir.last_checkpoint).model_state
    new = pretrained_model(config, 10).state_dict()
    head = {"classifier.5.weight", "classifier.5.bias"}
    assert head <= set(new) and not torch.equal(new["classifier.5.weight"], src["classifier.5.weight"])
    assert all(torch.equal(new[k], src[k]) for k in new if k not in head)
    kept = pretrained_model(config, 10, keep_head=True).state_dict()
    assert all(torch.equal(kept[k], src[k]) for k in kept)

    with pytest.raises(CnnzooError, match="--weights applies only"):
        finetune_run(config, weights=tmp_path / "x.pth", out=tmp_path, quiet=True)
    assert main(["finetune", "--from", str(source_dir.path), "--dataset", "fashion-mnist", "--epochs", "2",
                 "--limit-train", "256", "--limit-test", "64", "--batch-size", "64", "--device", "cpu",
                 "--data-dir", str(data_root), "--out", str(tmp_path), "--name", "ft", "--quiet"]) == 0
    trained = load_trained(tmp_path / "ft")
    assert trained.config.finetune_from == str(source_dir.last_checkpoint.resolve())
    assert trained.input_spec.normalize == DATASETS["mnist"].normalize
    assert len(load_trained(tmp_path / "ft", which="last").meta["history"]["epochs"]) == 2

    # The train command's early stopping and loggers work for fine-tuning too.
    assert main(["finetune", "--from", str(source_dir.path), "--dataset", "fashion-mnist", "--epochs", "3",
                 "--limit-train", "256", "--limit-test", "64", "--batch-size", "64", "--device", "cpu",
                 "--data-dir", str(data_root), "--out", str(tmp_path), "--name", "ft-logged", "--quiet",
                 "--val-split", "0.25", "--early-stop", "1", "--tensorboard"]) == 0
    logged = load_trained(tmp_path / "ft-logged")
    assert logged.config.early_stop == 1 and logged.config.val_split == 0.25
    assert list((tmp_path / "ft-logged" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("content", [b"hello\n", b"root:x:0:0:root:/root:/bin/bash\n", b"\x80\x02" + b"\x00" * 64])
def test_weights_that_are_not_a_torch_file_get_one_clear_error(tmp_path, content):
    from cnnzoo.workflows.finetune import load_torchvision_weights

    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(content)
    with pytest.raises(CnnzooError, match="Cannot load .* as a state_dict"):
        load_torchvision_weights("torchvision:resnet18", garbage)


def test_weights_errors_never_suggest_weights_only_false_nor_carry_colour_codes(tmp_path):
    from fractions import Fraction

    from cnnzoo.workflows.finetune import load_torchvision_weights

    pickled = tmp_path / "objects.pt"
    torch.save({"conv1.weight": Fraction(1, 3)}, pickled)  # not on weights_only's list of safe types
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(3)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(pickle.dumps([1, 2]) + b"\x00junk")
    for path in (pickled, truncated, garbage, tmp_path):
        with pytest.raises(CnnzooError) as caught:
            load_torchvision_weights("torchvision:resnet18", path)
        message = str(caught.value)
        assert "weights_only" not in message and "\x1b" not in message and "\n" not in message, message
