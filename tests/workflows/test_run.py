"""train_run: a run directory that is complete, refuses to overwrite, and names its mistakes."""

import csv
import json

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.workflows import train_run


def test_run_directory_is_complete_and_parses(tmp_path, quick_config):
    run_dir, history = train_run(quick_config.replace(val_split=0.2), out=tmp_path, name="run", quiet=True)
    for name in ("config.json", "metrics.csv", "batch_loss.csv", "evaluation.json", "loss.png", "accuracy.png",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (run_dir.path / name).is_file(), name
    config = json.loads((run_dir.path / "config.json").read_text())
    assert config["model"] == "lenet5" and config["versions"]["torch"] == torch.__version__
    assert config["runtime"]["device"] == "cpu"
    # What was chosen, and why (train/runtime.py), for whoever reads the run later.
    assert config["runtime"]["precision"] == "fp32" and config["runtime"]["grad_scaler"] is False
    assert config["runtime"]["reasons"]["precision"].startswith("auto on the CPU: fp32")
    rows = list(csv.DictReader(open(run_dir.path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_acc"]) <= 1 and 0 <= float(r["test_acc"]) <= 1 for r in rows)
    batches = list(csv.DictReader(open(run_dir.path / "batch_loss.csv")))
    assert len(batches) == len(history.batch_loss) == 2 * 13  # 819 train images after the 20% split, batch 64
    evaluation = json.loads((run_dir.path / "evaluation.json").read_text())
    assert sum(map(sum, evaluation["confusion"])) == 256
    assert evaluation["accuracy"] == pytest.approx(float(rows[-1]["test_acc"]))


def test_existing_run_name_is_refused_unless_overwrite(tmp_path, quick_config):
    config = quick_config.replace(epochs=1, limit_train=128, limit_test=64)
    train_run(config, out=tmp_path, name="same", quiet=True)
    with pytest.raises(CnnzooError, match="already exists.*--overwrite"):
        train_run(config, out=tmp_path, name="same", quiet=True)
    train_run(config, out=tmp_path, name="same", quiet=True, overwrite=True)


def test_mistakes_name_images_of_the_official_test_file_when_a_subset_was_evaluated(tmp_path, quick_config):
    from cnnzoo.data import load_data, load_split
    from cnnzoo.viz.plots import misclassified_images

    config = quick_config.replace(epochs=1, limit_train=256, limit_test=200)
    run_dir, _ = train_run(config, out=tmp_path, name="subset", quiet=True)
    evaluation = json.loads((run_dir.path / "evaluation.json").read_text())
    evaluated = load_data("fashion-mnist", root=config.data_dir, limit_test=200, seed=config.seed).test
    full = load_split("fashion-mnist", "test", root=config.data_dir)
    mistakes = evaluation["misclassified"]
    assert mistakes and all(full.labels[m["index"]] == m["true"] for m in mistakes)
    shown = misclassified_images(run_dir.path, evaluation)
    positions = evaluated.source_indices().tolist()
    assert all(torch.equal(shown[k], evaluated.images[positions.index(m["index"])]) for k, m in enumerate(mistakes))


def test_prepare_run_gives_the_runtime_the_data_and_a_seeded_model(quick_config):
    from cnnzoo.workflows.run import prepare_run

    runtime, data, model = prepare_run(quick_config)
    assert runtime.device.type == "cpu" and len(data.train) == quick_config.limit_train
    again = prepare_run(quick_config).model  # the config's seed: the same initial weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    built = prepare_run(quick_config, build_model=lambda config, num_classes: torch.nn.Linear(1, num_classes)).model
    assert built.out_features == len(data.train.classes)


def test_prepare_run_says_what_the_device_changed_unless_told_not(quick_config, monkeypatch):
    # bench and lr-find once set up silently: an emulated bf16 or an eager old card went unsaid there.
    from cnnzoo.train.runtime import Runtime
    from cnnzoo.workflows.run import prepare_run

    said = []
    monkeypatch.setattr(Runtime, "announce", lambda self: said.append(self.device.type))
    prepare_run(quick_config)
    prepare_run(quick_config, announce=False)  # a torchrun rank other than the main one
    assert said == ["cpu"]
