"""A run directory has one writer at a time, a lock no crash can leave stuck, and plain names."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from cnnzoo.errors import CnnzooError
from cnnzoo.train.rundir import RunDir, RunDirBusy


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
        import os, sys, time
        from cnnzoo.train.rundir import RunDir
        run = RunDir({str(run.path)!r}).lock()
        (run.path / "checkpoints" / f".last.pid{{os.getpid()}}-x.safetensors.tmp").write_bytes(b"half")
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
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
