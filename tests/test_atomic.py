"""The atomic writer: a full disk is one sentence and loses nothing; dead writers' temporaries go."""

import errno
import os
import subprocess
import sys

import pytest

from cnnzoo.atomic import DiskFull, atomic_target, atomic_write_text, remove_stale_temporaries
from cnnzoo.errors import CnnzooError


def test_a_full_disk_names_the_folder_the_size_and_that_the_old_file_is_intact(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    atomic_write_text(target, "old\n")
    real_write = type(target).write_bytes

    def full(self, data):
        real_write(self, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(target), "write_bytes", full)
    with pytest.raises(DiskFull) as caught:
        atomic_write_text(target, "x" * 5000)
    message = str(caught.value)
    assert isinstance(caught.value, CnnzooError) and "\n" not in message
    assert str(tmp_path) in message and "full" in message and "5.0 kB" in message and "intact" in message
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_full_disk_adds_only_what_the_writer_says_is_also_intact(tmp_path, monkeypatch, no_space):
    (tmp_path / "checkpoints").mkdir()  # a run directory's layout is its writer's to describe, not this module's
    monkeypatch.setattr(type(tmp_path), "write_bytes", no_space)
    with pytest.raises(DiskFull) as caught:
        atomic_write_text(tmp_path / "metrics.csv", "x")
    assert "; metrics.csv was not written: free some space" in str(caught.value)
    with pytest.raises(DiskFull) as caught:
        atomic_write_text(tmp_path / "metrics.csv", "x", also_intact="and the rest is intact")
    assert "; metrics.csv was not written, and the rest is intact: free some space" in str(caught.value)


def test_other_write_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_target(tmp_path / "a.txt"):
            1 / 0
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f".last.pid{_dead_pid()}-abc123.safetensors.tmp"
    live = tmp_path / f".last.pid{os.getppid()}-def456.safetensors.tmp"
    mine = tmp_path / f".metrics.pid{os.getpid()}-0.csv.tmp"
    keep = tmp_path / "last.safetensors"
    for path in (dead, live, mine, keep):
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, mine, keep))


def test_a_temporary_names_its_writer(tmp_path):
    with atomic_target(tmp_path / "last.safetensors") as tmp:
        assert f".pid{os.getpid()}-" in tmp.name and tmp.name.endswith(".safetensors.tmp")
        tmp.write_bytes(b"x")


def test_keep_suffix_ends_the_temporary_in_the_targets_suffix_and_its_leftovers_are_cleaned(tmp_path):
    target = tmp_path / "model.keras"
    with atomic_target(target, keep_suffix=True) as tmp:
        assert tmp.name.endswith(".tmp.keras") and f".pid{os.getpid()}-" in tmp.name
        tmp.write_bytes(b"zip")
    assert target.read_bytes() == b"zip" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    dead = tmp_path / f".model.pid{_dead_pid()}-abc123.tmp.keras"
    dead.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [dead] and target.exists()
