"""Fault injection: kill -9 during training and checkpoint writes, a full disk, two writers, and
byte-flip fuzzing of the IDX reader, checkpoints, config.json and checkpoint metadata.

Every outcome must be a clean CnnzooError (exit status 2) or a correct result: never another
exception, never a hang, never a lost or silently damaged checkpoint.
"""

import copy
import errno
import gzip
import json
import multiprocessing
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError
from cnnzoo.train import load_checkpoint
from cnnzoo.workflows import load_trained
from cnnzoo.train.checkpoint import tensor_checksum
from cnnzoo.train.rundir import RunDir

TRIALS = 20
EPOCHS = 3


@pytest.fixture(scope="module")
def forkserver():
    import fault_worker  # noqa: F401 (importable here means importable by the forkserver)

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fault_worker"])
    return context


def _train_argv(data_root, out, name="run", epochs=EPOCHS):
    return ["train", "--model", "lenet5", "--dataset", "fashion-mnist", "--limit-train", "128", "--limit-test", "32",
            "--batch-size", "64", "--epochs", str(epochs), "--optimizer", "sgd", "--lr", "0.05", "--schedule",
            "constant", "--warmup-epochs", "0", "--device", "cpu", "--data-dir", str(data_root), "--out", str(out),
            "--name", name, "--quiet"]


def _child(context, target, *args):
    import fault_worker

    process = context.Process(target=getattr(fault_worker, target), args=args)
    process.start()
    return process


def _finish(process, timeout=120):
    process.join(timeout)
    assert not process.is_alive(), "a child hung"
    return process.exitcode


def _temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob("*.tmp")]


def test_kill_9_at_random_points_of_training_and_of_checkpoint_writes_loses_nothing(tmp_path, forkserver, data_root):
    started = time.perf_counter()
    reference = _child(forkserver, "cli", _train_argv(data_root, tmp_path / "reference"))
    assert _finish(reference) == 0
    duration = time.perf_counter() - started
    expected = load_checkpoint(tmp_path / "reference" / "run").model_state
    outcomes = []
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        rng = random.Random(trial)
        if trial % 2 == 0:  # at a random moment of the whole command
            child = _child(forkserver, "cli", _train_argv(data_root, out))
            time.sleep(rng.uniform(0.0, duration))
            child.kill()
            _finish(child)
        else:  # inside a checkpoint write: part of the temporary written, or all of it before the rename
            assert _finish(_child(forkserver, "cli_killed_in_checkpoint_write", _train_argv(data_root, out), trial)) == -9
        run = out / "run"
        last = run / "checkpoints" / "last.safetensors"
        epoch = load_checkpoint(last).meta["epoch"] if last.is_file() else None  # whatever is there loads
        resumed = _finish(_child(forkserver, "cli", ["train", "--resume", str(run), "--quiet", "--data-dir",
                                                     str(data_root)]))
        if epoch is None:
            assert resumed == 2  # nothing to resume yet: one clear error, no traceback
        elif epoch < EPOCHS:
            assert resumed == 0
        else:  # killed after training, while evaluating: resume finishes the run
            assert resumed == 0 and (run / "evaluation.json").is_file()
        if epoch is not None:
            final = load_checkpoint(run).model_state
            assert all(torch.equal(final[k], expected[k]) for k in expected), f"trial {trial}: resume differs"
            assert _temporaries(run) == [], f"trial {trial}: stale temporaries {_temporaries(run)}"
        outcomes.append(epoch)
    assert len({e for e in outcomes if e is not None}) >= 2  # the kills really landed at different points


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs where mounting is allowed (root), else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_sentence_and_keeps_the_last_checkpoint(tmp_path, small_disk, data_root, capsys,
                                                                    monkeypatch):
    out = small_disk or tmp_path / "runs"
    assert main(_train_argv(data_root, out, epochs=1)) == 0
    run = out / "run"
    if small_disk is not None:
        free = shutil.disk_usage(small_disk).free
        (small_disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))  # room for config.json and metrics only
    else:  # no tmpfs here: the same error, injected where the checkpoint's bytes are written
        import cnnzoo.train.checkpoint as checkpoint_module

        def no_space(tensors, filename, metadata=None):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(checkpoint_module, "save_file", no_space)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error
    assert "is full" in error and str(run / "checkpoints") in error and "needed" in error and "intact" in error
    assert load_checkpoint(run).meta["epoch"] == 1
    assert _temporaries(run) == []


def test_a_second_writer_of_a_run_is_refused_while_the_first_trains(tmp_path, forkserver, data_root, capsys):
    first = _child(forkserver, "cli", _train_argv(data_root, tmp_path, epochs=400))
    run = tmp_path / "run"
    try:
        # Wait for the event the first writer emits (its epoch-0 checkpoint), however slow the machine.
        while not (run / "checkpoints" / "last.safetensors").is_file():
            assert first.is_alive()
            time.sleep(0.05)
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--epochs", "500", "--quiet"]) == 2
        assert main(_train_argv(data_root, tmp_path, epochs=1) + ["--overwrite"]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 2 and all(f"being written by another cnnzoo process (pid {first.pid})" in e
                                        for e in errors)
        assert json.loads((run / "config.json").read_text())["epochs"] == 400  # the refused one changed nothing
    finally:
        first.kill()
        _finish(first)
    assert RunDir(run).lock()  # its lock died with it


# ---------------------------------------------------------------- fuzzing


def _flip(data: bytes, rng: random.Random, flips: int = 1) -> bytes:
    damaged = bytearray(data)
    for _ in range(flips):
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def test_byte_flips_in_idx_files_give_a_clean_error_or_a_correct_parse(data_root):
    from cnnzoo.data import decode_idx_gz, parse_idx

    labels_gz = (data_root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    labels = decode_idx_gz(labels_gz)
    images = struct.pack(">IIII", 2051, 3, 4, 5) + bytes(range(60))
    small_gz = gzip.compress(images)
    rng = random.Random(0)
    parsed = 0
    for trial in range(600):
        which = trial % 3
        data = (labels_gz, labels, small_gz)[which]
        damaged = _flip(data, rng, flips=rng.choice((1, 1, 2, 8)))
        try:
            raw = decode_idx_gz(damaged, name="fuzz") if which != 1 else damaged
            tensor = parse_idx(raw, name="fuzz")
        except CnnzooError as error:
            assert "fuzz" in str(error)
            continue
        # A parse is only correct if it describes exactly the bytes it was given.
        dims = tensor.shape
        header = 4 + 4 * len(dims)
        assert raw[2] == 0x08 and raw[3] == len(dims)
        assert list(dims) == [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(len(dims))]
        assert tensor.flatten().tolist() == list(raw[header:])
        parsed += 1
    assert parsed > 0  # flips in pixel or label bytes parse (the MD5 catches those when files are loaded)


def test_damaged_data_files_on_disk_are_refused_naming_them(tmp_path, data_root):
    from cnnzoo.data import load_split

    rng = random.Random(1)
    source = data_root / "FashionMNIST" / "raw"
    for trial in range(10):
        raw = tmp_path / f"root{trial}" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            shutil.copyfile(source / name, raw / name)
        victim = raw / rng.choice(("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
        victim.write_bytes(_flip(victim.read_bytes(), rng))
        with pytest.raises(CnnzooError, match=str(victim)):
            load_split("fashion-mnist", "test", root=raw.parent.parent, download=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("faults")
    assert main(_train_argv(data_root, out, epochs=2) + ["--val-split", "0.25"]) == 0
    return out / "run"


def test_byte_flips_anywhere_in_a_checkpoint_are_always_refused(tmp_path, trained_run):
    good = (trained_run / "checkpoints" / "last.safetensors").read_bytes()
    rng = random.Random(2)
    for trial in range(200):
        path = tmp_path / "flipped.safetensors"
        path.write_bytes(_flip(good, rng, flips=rng.choice((1, 1, 3))))
        with pytest.raises(CnnzooError):
            load_checkpoint(path)


def _mutations(value, rng: random.Random):
    """A damaged copy of a JSON document: a field removed, retyped, or set to an odd value."""
    document = copy.deepcopy(value)
    paths = []

    def walk(node, trail):
        if isinstance(node, dict):
            for key in node:
                paths.append(trail + [key])
                walk(node[key], trail + [key])
        elif isinstance(node, list):
            for index in range(min(len(node), 3)):
                paths.append(trail + [index])
                walk(node[index], trail + [index])

    walk(document, [])
    if not paths or rng.random() < 0.05:
        return rng.choice([[], "text", 3, None, [document]])
    trail = rng.choice(paths)
    parent = document
    for step in trail[:-1]:
        parent = parent[step]
    odd = [None, "", "x", -1, 0, 2**70, 1e308, float("nan"), float("inf"), True, [], {}, [1, "a"], {"a": 1},
           "lenet5", "mnist", 1.5]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[trail[-1]]
    else:
        parent[trail[-1]] = rng.choice(odd)
    return document


def test_damaged_config_json_gives_a_clean_error_or_a_correct_read_everywhere(tmp_path, trained_run):
    from cnnzoo.workflows.compare import read_run

    original = json.loads((trained_run / "config.json").read_text())
    rng = random.Random(3)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    accepted = 0
    for trial in range(150):
        text = json.dumps(_mutations(original, rng))
        if trial % 10 == 0:
            text = text[: rng.randrange(len(text))]  # a truncated file
        (run / "config.json").write_text(text)
        try:
            config, values = RunDir(run).read_config()
            record = read_run(run)
        except CnnzooError as error:
            assert "config.json" in str(error) or "evaluation.json" in str(error) or "metrics" in str(error)
            continue
        assert record.model == config.model and config.validate() is config
        accepted += 1
    assert accepted > 0  # a change to a descriptive field (say "created") is still a readable run


def test_damaged_checkpoint_metadata_gives_a_clean_error_or_a_usable_checkpoint(tmp_path, trained_run):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from cnnzoo.train.history import History

    source = trained_run / "checkpoints" / "last.safetensors"
    with safe_open(str(source), framework="pt") as f:
        meta = json.loads(f.metadata()["cnnzoo"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    rng = random.Random(4)
    usable = 0
    for trial in range(150):
        damaged = _mutations(meta, rng)
        if isinstance(damaged, dict):
            damaged["checksum"] = tensor_checksum(tensors, damaged)  # as a buggy or older writer would have
        path = tmp_path / "meta.safetensors"
        text = json.dumps(damaged)
        save_file(tensors, path, metadata={"cnnzoo": text})
        try:
            checkpoint = load_checkpoint(path)
            trained = load_trained(path)
            History.from_dict(checkpoint.meta["history"])
        except CnnzooError as error:
            assert str(path) in str(error)
            continue
        assert len(trained.classes) == 10 and checkpoint.meta["epoch"] in (0, 1, 2)
        usable += 1
    assert usable > 0
