"""A run directory has one writer at a time, a lock no crash can leave stuck, plain names, and files
that read back as they were written."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from cnnzoo.atomic import DiskFull
from cnnzoo.errors import CnnzooError
from cnnzoo.train import History
from cnnzoo.train.rundir import RunDir, RunDirBusy, default_run_name


def test_a_second_writer_is_refused_in_one_sentence_until_the_first_is_done(tmp_path):
    first = RunDir.create(tmp_path, "run")
    second = RunDir(first.path)
    with pytest.raises(RunDirBusy) as caught:
        second.lock()
    message = str(caught.value)
    assert str(first.path) in message and "another cnnzoo process" in message and "\n" not in message
    first.unlock()
    with second.writing():
        with pytest.raises(RunDirBusy):
            RunDir(first.path).lock()
    RunDir(first.path).lock().unlock()


def test_overwrite_never_deletes_a_run_that_is_being_written(tmp_path):
    run = RunDir.create(tmp_path, "run")
    run.write_json("config.json", {"model": "lenet5", "dataset": "mnist"})
    with pytest.raises(RunDirBusy):
        RunDir.create(tmp_path, "run", overwrite=True)
    assert run.config_path.is_file()
    run.unlock()
    replaced = RunDir.create(tmp_path, "run", overwrite=True)
    assert not replaced.config_path.exists()
    replaced.unlock()


def test_a_writer_killed_with_sigkill_leaves_no_lock_and_its_temporaries_are_cleared(tmp_path):
    run = RunDir.create(tmp_path, "run")
    run.unlock()
    script = textwrap.dedent(f"""
        import os, sys
        from cnnzoo.train.rundir import RunDir
        run = RunDir({str(run.path)!r}).lock()
        (run.path / "checkpoints" / f".last.pid{{os.getpid()}}-x.safetensors.tmp").write_bytes(b"half")
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until killed, however long the test takes
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"):
            RunDir(run.path).lock()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert any((run.path / "checkpoints").iterdir())
    RunDir(run.path).lock().unlock()
    assert list((run.path / "checkpoints").iterdir()) == []


@pytest.mark.parametrize("name", ["", " ", "a\nb", "tab\there", "bell\x07", ".", "..", "a/b"])
def test_run_names_must_be_one_plain_printable_folder_name(tmp_path, name):
    with pytest.raises(CnnzooError, match="--name must be a plain folder name"):
        RunDir.create(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON (line 1, column 2)"),
    ('["a", "list"]', "holds a list"),
    ('{"dataset": "mnist"}', "field 'model' is missing"),
    ('{"model": "lenet5", "dataset": "mnist", "epochs": "ten"}', "field 'epochs' is a string"),
    ('{"model": "lenet5", "dataset": "cifar"}', "unknown data set 'cifar'"),
    ('{"model": "lenet5", "dataset": "mnist", "lr": -1}', "--lr must be a positive number"),
    ('{"model": "lenet5", "dataset": "mnist", "input_shape": [1, 28]}', "field 'input_shape'"),
])
def test_a_damaged_config_json_names_the_file_and_the_field(tmp_path, text, problem):
    run = RunDir(tmp_path)
    run.config_path.write_text(text)
    with pytest.raises(CnnzooError, match="config.json") as caught:
        run.read_config()
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_good_config_json_reads_back(tmp_path):
    run = RunDir(tmp_path)
    run.config_path.write_text(json.dumps({"model": "lenet5", "dataset": "mnist", "epochs": 3, "created": "now"}))
    config, values = run.read_config()
    assert (config.model, config.dataset, config.epochs) == ("lenet5", "mnist", 3) and values["created"] == "now"


def test_a_new_run_is_an_empty_locked_folder_with_a_checkpoints_folder(tmp_path):
    run = RunDir.create(tmp_path, "new")
    assert sorted(p.name for p in run.path.iterdir()) == [".writer.lock", "checkpoints"]
    assert (run.path / ".writer.lock").read_text() == str(os.getpid())  # says who writes, for the busy message
    assert run.last_checkpoint.parent == run.best_checkpoint.parent == run.path / "checkpoints"
    run.unlock()


def test_an_existing_run_is_kept_unless_overwrite_and_a_foreign_folder_always(tmp_path):
    run = RunDir.create(tmp_path, "run")
    run.write_json("config.json", {"model": "lenet5"})
    run.unlock()
    with pytest.raises(CnnzooError, match="already exists.*--resume.*--overwrite"):
        RunDir.create(tmp_path, "run")
    RunDir.create(tmp_path, "run", overwrite=True).unlock()
    assert not (tmp_path / "run" / "config.json").exists()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_text("")
    with pytest.raises(CnnzooError, match="no config.json"):
        RunDir.create(tmp_path, "photos", overwrite=True)
    assert (tmp_path / "photos" / "cat.jpg").exists()


def test_only_a_folder_with_a_config_opens_as_a_run(tmp_path):
    with pytest.raises(CnnzooError, match="is not a cnnzoo run directory"):
        RunDir.open(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert RunDir.open(tmp_path).path == tmp_path


def test_json_and_history_read_back_as_written(tmp_path):
    run = RunDir(tmp_path)
    run.write_json("evaluation.json", {"accuracy": 0.5, "where": tmp_path})  # default=str: paths are text
    assert run.read_json("evaluation.json") == {"accuracy": 0.5, "where": str(tmp_path)}
    history = History(batch_loss=[2.0, 1.0], batch_lr=[0.1, 0.1], batch_epoch=[1, 1], epochs=[
        {"epoch": 1, "train_loss": 1.5, "train_acc": 0.6, "val_acc": None, "test_acc": 0.55, "lr": 0.1,
         "time_s": 1.0, "images_per_s": 100.0}])
    run.write_history(history)
    (row,) = run.read_metrics()
    assert (row["epoch"], row["test_acc"], row["val_acc"]) == (1, 0.55, None)  # checked and converted; empty is None
    assert run.batch_loss_path.read_text().count("\n") == 3  # header and one line per step


@pytest.mark.parametrize("text, problem", [
    ("[1, 2]", "it holds a list, not an object"), ("{}", "field 'tracking_uri' is missing"),
    ('{"tracking_uri": "file:/m", "experiment_id": "0"}', "field 'run_id' is missing"),
    ('{"tracking_uri": "file:/m", "experiment_id": "0", "run_id": 5}', "field 'run_id' is 5, not a non-empty string"),
    ('{"tracking_uri": null, "experiment_id": "0", "run_id": "r"}', "field 'tracking_uri' is None"),
    ('{"tracking_uri": "file:/m", "experiment_id": "0", "run_id": ""}', "field 'run_id' is '', not"),
    ('"run"', "it holds a string, not an object"), ("[[[[", "not valid JSON"),
])
def test_a_damaged_mlflow_json_names_the_file_and_the_field(tmp_path, text, problem):
    run = RunDir(tmp_path)
    (tmp_path / RunDir.MLFLOW).write_text(text)
    with pytest.raises(CnnzooError, match="mlflow.json") as caught:
        run.read_mlflow()
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_mlflow_json_reads_back_and_is_none_before_any_mlflow_run(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_mlflow() is None
    record = {"tracking_uri": "file:/m", "experiment_id": "0", "run_id": "abc"}
    run.write_json(RunDir.MLFLOW, record)
    assert run.read_mlflow() == record


def test_missing_json_is_named_in_one_sentence(tmp_path):
    with pytest.raises(CnnzooError, match="Cannot read .*evaluation.json"):
        RunDir(tmp_path).read_json("evaluation.json")


def test_default_names_sort_by_time_and_say_what_ran():
    assert re.fullmatch(r"\d{8}-\d{6}-lenet5-mnist", default_run_name("lenet5", "mnist"))


def test_a_full_disk_while_writing_a_run_file_says_the_checkpoints_are_intact(tmp_path, monkeypatch, no_space):
    run = RunDir.create(tmp_path, "run")
    monkeypatch.setattr(type(run.path), "write_bytes", no_space)
    with pytest.raises(DiskFull) as caught:
        run.write_history(History())
    assert "; metrics.csv was not written, and the last checkpoint in checkpoints/ is intact: " in str(caught.value)
    with pytest.raises(DiskFull) as caught:
        run.write_json(RunDir.EVALUATION, {})
    assert "evaluation.json was not written, and the last checkpoint in checkpoints/ is intact" in str(caught.value)


def test_the_disk_full_note_is_for_this_run_directorys_own_files():
    run = RunDir("/nonexistent/run")
    assert run.disk_full_note(run.metrics_path) is None  # no checkpoints/ folder: nothing to promise


def test_deleting_the_lock_file_by_hand_lets_no_second_writer_in(tmp_path):
    # The lock is on the folder itself: .writer.lock only names the holder, and deleting it changes nothing.
    first = RunDir.create(tmp_path, "run")
    (first.path / ".writer.lock").unlink()
    with pytest.raises(RunDirBusy, match="another cnnzoo process"):
        RunDir(first.path).lock()
    first.unlock()
    RunDir(first.path).lock().unlock()


def test_safetensors_own_temporary_left_by_a_killed_writer_is_cleared_by_the_next(tmp_path):
    run = RunDir.create(tmp_path, "run")
    run.unlock()
    leftover = run.checkpoints_dir / ".tmpAb3xYz"  # what safetensors writes before renaming to our temporary
    leftover.write_bytes(b"half a checkpoint")
    unrelated = run.checkpoints_dir / ".tmp-notes"
    unrelated.write_bytes(b"someone else's")
    RunDir(run.path).lock().unlock()
    assert not leftover.exists() and unrelated.exists()


def test_holding_names_the_run_of_a_folder_or_a_checkpoint(tmp_path):
    run = RunDir.create(tmp_path, "r")
    checkpoint = run.path / RunDir.CHECKPOINTS / RunDir.LAST
    checkpoint.write_bytes(b"")
    stray = tmp_path / "model.safetensors"
    stray.write_bytes(b"")
    assert RunDir.holding(run.path) == RunDir.holding(checkpoint) == run.path
    assert RunDir.holding(stray) == tmp_path
    assert run.evaluate_confusion_path("val") == run.path / "confusion-val.png"
