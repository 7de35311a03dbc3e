"""`cnnzoo train`, `lr-find` and `bench` end to end (cli/commands.py), and every bad input answered with
one line and exit status 2."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import LONG_NAME, QUICK, assert_one_line_error, run_cli
from cnnzoo.cli import main
from hold_for_interrupt import HOLDING


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.json", "metrics.csv", "batch_loss.csv", "evaluation.json", "loss.png", "accuracy.png",
                 "checkpoints/last.safetensors"):
        assert (trained_run / name).stat().st_size > 0, name
    assert not (trained_run / "checkpoints" / "best.safetensors").exists()  # no validation split, no "best"
    config = json.loads((trained_run / "config.json").read_text())
    assert config["epochs"] == 1 and config["optimizer"] == "adamw" and config["recipe"] == "lenet_bn-fashion-mnist"
    rows = list(csv.DictReader(open(trained_run / "metrics.csv")))
    assert len(rows) == 1 and float(rows[0]["test_acc"]) > 0.5
    assert len(list(csv.DictReader(open(trained_run / "batch_loss.csv")))) == 64


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], ["--epochs"]),
    (["--epochs", "-2"], ["--epochs"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--lr", "0"], ["--lr"]),
    (["--lr", "-0.1"], ["--lr"]),
    (["--model", "alexnet", "--resize", "32"], ["at least 65x65"]),
    (["--model", "nonet"], ["Unknown model"]),
    (["--dataset", "cifar10"], ["cifar10"]),
    (["--recipe", "nope"], ["Unknown recipe"]),
    (["--weight-decay", "nan"], ["--weight-decay"]),
    (["--weight-decay", "inf"], ["--weight-decay"]),
    (["--model", "lenet5", "--norm", "scratch"], ["no batch norm", "--norm scratch"]),
])
def test_train_bad_flags(capsys, tmp_path, data_root, args, words):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "x", *QUICK, *args)
    assert_one_line_error(code, err, *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")
def test_train_on_cuda_without_gpu(capsys, tmp_path, data_root):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "x", *QUICK, "--device", "cuda")
    assert_one_line_error(code, err, "no CUDA GPU")


def test_existing_run_name_and_unwritable_out(capsys, tmp_path, trained_run):
    code, _, err = run_cli(capsys, "train", "--out", trained_run.parent, "--name", trained_run.name, *QUICK)
    assert_one_line_error(code, err, "already exists", "--resume", "--overwrite")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "train", "--out", blocker / "runs", "--name", "x", *QUICK)
    assert_one_line_error(code, err, "Cannot write the run directory")


def test_out_of_memory_names_the_batch_size(capsys, tmp_path, data_root, monkeypatch):
    from cnnzoo.train.fastpath import TrainStep

    def oom_step(self, b, lr):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(TrainStep, "__call__", oom_step)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "x", *QUICK, "--batch-size", "512")
    assert_one_line_error(code, err, "batch size 512", "--batch-size 256")


_HOLD_IN_EPOCH_2 = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import cnnzoo.workflows as workflows
from cnnzoo.cli import main
from hold_for_interrupt import HoldForInterrupt

train_run = workflows.train_run  # what cmd_train calls
workflows.train_run = lambda *a, callbacks=(), **k: train_run(*a, callbacks=[*callbacks, HoldForInterrupt()], **k)
sys.exit(main(sys.argv[1:]))
"""


def test_sigint_checkpoints_and_resume_matches_uninterrupted_run(tmp_path, data_root):
    args = ["--model", "lenet5", "--epochs", "3", "--batch-size", "32", "--limit-train", "3072",
            "--limit-test", "256", "--device", "cpu", "--optimizer", "adamw", "--lr", "0.003", "--out", str(tmp_path)]
    env = {**os.environ, "CNNZOO_DATA": str(data_root)}
    assert main(["train", *args, "--name", "full", "--quiet"]) == 0

    # The child is `cnnzoo train` with one callback added, which says when it holds the run in epoch 2:
    # the interrupt is sent on that line, never on a guess of how long an epoch takes.
    process = subprocess.Popen([sys.executable, "-c", _HOLD_IN_EPOCH_2, "train", *args, "--name", "cut", "--quiet"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = []
    for line in process.stdout:
        before.append(line)
        if line.startswith(HOLDING):
            break
    assert process.poll() is None, before  # held, not finished
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 130, (out, err)
    assert "--resume" in err and "Traceback" not in err
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0

    def numbers(run):
        rows = list(csv.DictReader(open(tmp_path / run / "metrics.csv")))
        return [{k: v for k, v in r.items() if k not in ("time_s", "images_per_s")} for r in rows]

    assert numbers("cut") == numbers("full")
    from cnnzoo.train import load_checkpoint

    a, b = load_checkpoint(tmp_path / "full").model_state, load_checkpoint(tmp_path / "cut").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["/tmp/elsewhere", ".", "..", "a/b"])
def test_run_names_cannot_reach_outside_out(capsys, tmp_path, name):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", name, *QUICK)
    assert_one_line_error(code, err, "--name must be a plain folder name")


@pytest.mark.parametrize("name", ["", "two\nlines"])
def test_train_refuses_an_empty_or_multi_line_name(tmp_path, capsys, name):
    assert main(["train", "--model", "lenet5", "--epochs", "1", "--device", "cpu", "--limit-train", "64",
                 "--out", str(tmp_path), "--name", name, "--quiet"]) == 2
    assert "--name must be a plain folder name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(capsys, tmp_path):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "thesis.txt").write_text("precious")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "notes", "--overwrite", *QUICK)
    assert_one_line_error(code, err, "not a cnnzoo run directory", "will not delete it")
    assert (keep / "thesis.txt").read_text() == "precious"
    (tmp_path / "a-file").write_text("")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "a-file", "--overwrite", *QUICK)
    assert_one_line_error(code, err, "is not a folder")


def test_a_bad_flag_leaves_the_run_it_would_overwrite_intact(capsys, trained_run):
    before = sorted(p.name for p in trained_run.iterdir())
    code, _, err = run_cli(capsys, "train", "--out", trained_run.parent, "--name", trained_run.name, "--overwrite",
                           *QUICK, "--weight-decay", "nan")
    assert_one_line_error(code, err, "--weight-decay")
    assert sorted(p.name for p in trained_run.iterdir()) == before


def test_resume_refuses_flags_it_would_ignore(capsys, trained_run):
    code, _, err = run_cli(capsys, "train", "--resume", trained_run, "--epochs", "2", "--lr", "5", "--batch-size", "32")
    assert_one_line_error(code, err, "--batch-size, --lr", "only --epochs, --device, --data-dir")


def test_resume_names_a_refused_flag_as_it_is_spelled(capsys, trained_run):
    code, _, err = run_cli(capsys, "train", "--resume", trained_run, "--resize", "32")
    assert_one_line_error(code, err, "so --resize cannot be given",
                          "only --epochs, --device, --data-dir, --quiet, --tensorboard, --mlflow, --nproc and "
                          "--dry-run can.")


def test_resume_to_more_epochs_on_another_device_setting_updates_config_json(capsys, tmp_path, trained_run, data_root):
    import shutil

    run = tmp_path / "longer"
    shutil.copytree(trained_run, run)
    code, out, _ = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--device", "cpu",
                           "--data-dir", data_root, "--quiet")
    assert code == 0 and "done: test accuracy" in out
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    assert len(list(csv.DictReader((run / "metrics.csv").open()))) == 2


def test_bench_refuses_a_zero_batch_size(capsys):
    code, _, err = run_cli(capsys, "bench", "--device", "cpu", "--model", "lenet5", "--batch-size", "0")
    assert_one_line_error(code, err, "--batch-size")


def test_run_files_are_readable_by_others_under_a_usual_umask(trained_run):
    # Runs are often kept in a shared folder; mkstemp's private 0600 must not leak into them.
    for name in ("config.json", "metrics.csv", "batch_loss.csv", "evaluation.json", "checkpoints/last.safetensors",
                 "loss.png", "report.html"):
        mode = (trained_run / name).stat().st_mode & 0o777
        umask = os.umask(0)
        os.umask(umask)
        assert mode == 0o666 & ~umask, (name, oct(mode))


def _snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_dry_run_of_a_recipe_resolves_everything_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing_data = tmp_path / "no-data-here"
    code, out, _ = run_cli(capsys, "train", "--recipe", "lenet5-fashion-mnist", "--epochs", "3", "--device", "cpu",
                           "--data-dir", missing_data, "--dry-run")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["epochs"] == ["3", "flag"] and rows["optimizer"] == ["adamw", "recipe"]
    assert rows["lr"] == ["0.003", "recipe"] and rows["label_smoothing"] == ["0.0", "default"]
    assert "recipe lenet5-fashion-mnist" in out and "device cpu" in out and "compile off" in out
    assert "channels_last on" in out  # LeNet-5 has no batch norm: NHWC on the CPU
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, no data folder


def test_dry_run_without_a_recipe_names_the_fallback_settings(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "train", "--model", "vgg11_small", "--dataset", "mnist", "--lr", "0.05",
                           "--device", "cpu", "--dry-run")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert "no recipe vgg11_small-mnist" in out and "optimizer sgd, lr 0.1, epochs 10, batch_size 256" in out
    assert rows["lr"] == ["0.05", "flag"] and rows["batch_size"] == ["256", "fallback"]
    assert rows["recipe"] == ["None", "default"]
    assert list(tmp_path.iterdir()) == []


def test_dry_run_of_a_resume_shows_the_runs_settings_and_changes_nothing(capsys, trained_run):
    before = _snapshot(trained_run)
    code, out, _ = run_cli(capsys, "train", "--resume", trained_run, "--epochs", "4", "--dry-run")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert f"resume {trained_run} after epoch 1 of 4" in out
    assert rows["epochs"] == ["4", "flag"] and rows["model"] == ["lenet_bn", "run"]
    assert _snapshot(trained_run) == before


def test_training_without_a_recipe_says_which_fallback_settings_it_uses(capsys, tmp_path, data_root):
    code, out, _ = run_cli(capsys, "train", "--model", "lenet_bn", "--dataset", "mnist", "--out", tmp_path,
                           "--name", "x", *QUICK[:-1])
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("no recipe lenet_bn-mnist ships, so the fallback settings apply: optimizer sgd, lr 0.1, "
                            "epochs 10, batch_size 256"), first
    assert "loading PyTorch, the mnist images and lenet_bn" in out
    assert re.search(r"^epoch 1/1  loss \S+  train \S+% of 512  test \S+% of 256  ", out, flags=re.M), out
    evaluation = json.loads((tmp_path / "x" / "evaluation.json").read_text())
    assert evaluation["images"] == 256 and evaluation["train_images"] == 512 and "val_images" not in evaluation
    done = out.strip().splitlines()[-1]
    assert done == f"done: test accuracy {done.split()[3]} on 256 test images; report {tmp_path / 'x' / 'report.html'}"


def test_lr_find_prints_a_suggestion_and_writes_only_its_plot(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "lr-find", "--model", "lenet5", "--limit-train", "512", "--batch-size", "32",
                           "--steps", "40", "--start-lr", "1e-5", "--end-lr", "1", "--device", "cpu")
    assert code == 0, out
    suggestion = float(out.split("suggested learning rate: ")[1].split()[0])
    assert 1e-5 <= suggestion <= 1
    assert f"--lr {suggestion:.1e}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr-find-lenet5-fashion-mnist.png"]


@pytest.mark.parametrize("args, words", [
    (["--start-lr", "1", "--end-lr", "0.1"], ["--start-lr < --end-lr"]),
    (["--steps", "5"], ["--steps must be"]),
    (["-o", "sweep.txt"], [".png"]),
])
def test_lr_find_refuses_bad_sweeps_before_loading_data(capsys, tmp_path, args, words):
    code, _, err = run_cli(capsys, "lr-find", "--data-dir", tmp_path / "nothing-here", *args)
    assert_one_line_error(code, err, *words)


def test_early_stopping_and_both_loggers_from_the_command_line(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "--model", "lenet5", "--out", tmp_path, "--name", "es", *QUICK[:-1],
                           "--epochs", "4", "--val-split", "0.25", "--early-stop", "1",
                           "--early-stop-min-delta", "0.99", "--tensorboard", "--mlflow")
    assert code == 0, out
    run = tmp_path / "es"
    record = json.loads((run / "early_stopping.json").read_text())
    assert record["stopped_epoch"] == 2 and record["patience"] == 1 and record["min_delta"] == 0.99
    assert "early stopping: validation accuracy has not improved" in out
    assert len(list(csv.DictReader(open(run / "metrics.csv")))) == 2
    assert json.loads((run / "config.json").read_text())["early_stop"] == 1
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "mlflow.json").read_text())["run_id"]


@pytest.mark.parametrize("args, words", [
    (["--early-stop", "3"], ["--early-stop", "--val-split"]),
    (["--early-stop-min-delta", "0.01"], ["only with --early-stop"]),
])
def test_early_stopping_flags_are_checked_before_anything_is_loaded(capsys, tmp_path, args, words):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "x", "--data-dir", tmp_path / "none", *args)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag, package", [("--tensorboard", "tensorboard"), ("--mlflow", "mlflow")])
def test_a_logger_without_its_package_fails_before_training(capsys, tmp_path, monkeypatch, flag, package):
    monkeypatch.setitem(sys.modules, package, None)  # what importlib sees when it is not installed
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--name", "x", "--data-dir", tmp_path / "none", flag)
    assert_one_line_error(code, err, flag, f"cnnzoo[{package}]")
    assert not (tmp_path / "x").exists()


def test_dry_run_says_why_on_a_t4(capsys, tmp_path, monkeypatch, fake_cuda_card):
    fake_cuda_card((7, 5), "Tesla T4", ("sm_75", "sm_80"))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "train", "--recipe", "lenet5-fashion-mnist", "--device", "cuda", "--dry-run")
    assert code == 0
    assert "device cuda (Tesla T4), precision fp16" in out and "compile on" in out
    assert "why: precision: auto on Tesla T4 (compute capability 7.5): fp16 autocast with a gradient scaler" in out


def test_mps_where_there_is_none_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "train", "--device", "mps", "--dry-run")
    assert_one_line_error(code, err, "--device mps was asked for but this torch build has no MPS support")


# ---------------------------------------------------------------- user input that once raised a traceback
@pytest.mark.parametrize("args, words", [
    (["train", "--model", "lenet5", *QUICK, "--out", "{tmp}", "--name", LONG_NAME], ["--name is 300 bytes"]),
    (["train", "--model", "lenet5", *QUICK, "--out", "{tmp}/" + LONG_NAME], ["Cannot use the path", "longer than"]),
    (["train", "--model", "lenet5", *QUICK, "--grad-clip", "inf", "--out", "{tmp}"], ["--grad-clip must be a finite"]),
    (["train", "--model", "lenet_bn", *QUICK, "--batch-size", "1", "--out", "{tmp}"], ["--batch-size 1", "lenet_bn"]),
    (["train", "--model", "lenet_bn", *QUICK, "--limit-train", "129", "--out", "{tmp}"],
     ["last batch of one image", "--batch-size 64"]),
])
def test_hostile_input_is_one_sentence_naming_the_flag_or_path(capsys, tmp_path, data_root, args, words):
    (tmp_path / "file").write_text("a file where a folder is expected")
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args], "--data-dir", data_root)
    assert_one_line_error(code, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half made
