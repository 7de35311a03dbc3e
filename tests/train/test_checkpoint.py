"""Checkpoints: round trip, atomic writes, and every bad file refused with a clear CnnzooError."""

import json
import os
import pickle
import random
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnzoo.atomic import DiskFull
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train import load_checkpoint, save_checkpoint
from cnnzoo.train.checkpoint import CheckpointCorrupted, NonFiniteWeights, load_model_state


def _meta(epoch: int, **config) -> dict:
    """The metadata fit writes, for a lenet_bn run."""
    from cnnzoo.train import TrainConfig
    from cnnzoo.train.history import History

    return {"config": TrainConfig(model="lenet_bn", **config).to_dict(), "classes": [str(i) for i in range(10)],
            "epoch": epoch, "step": epoch * 4, "best": -1.0, "history": History().to_dict()}


def _trained_pair():
    torch.manual_seed(0)
    model = build_model("lenet_bn")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_rng_and_metadata(tmp_path):
    model, optimizer = _trained_pair()
    torch.manual_seed(123)
    path = save_checkpoint(tmp_path / "c.safetensors", model, _meta(3), optimizer)
    expected_draw = torch.rand(3)
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta["epoch"] == 3 and checkpoint.config == _meta(3)["config"]
    for key, value in model.state_dict().items():
        assert torch.equal(checkpoint.model_state[key], value), key
    fresh = build_model("lenet_bn")
    load_model_state(fresh, checkpoint.model_state)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    fresh_optimizer.load_state_dict(checkpoint.optimizer_state)
    for old, new in zip(model.parameters(), fresh.parameters()):
        a, b = optimizer.state[old], fresh_optimizer.state[new]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    from cnnzoo.train.checkpoint import restore_rng_state

    restore_rng_state(checkpoint.rng)
    assert torch.equal(torch.rand(3), expected_draw)


def test_an_apple_gpus_generator_travels_with_the_checkpoint(tmp_path, monkeypatch):
    # No MPS here: a stand-in generator whose state is a byte tensor, as torch.mps's is.
    generator = {"state": torch.tensor([7, 8, 9], dtype=torch.uint8)}
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: generator["state"].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: generator.update(state=state.clone()))
    model, optimizer = _trained_pair()
    path = save_checkpoint(tmp_path / "c.safetensors", model, _meta(1), optimizer)
    generator["state"] = torch.tensor([0, 0, 0], dtype=torch.uint8)  # the run drew on after saving
    from cnnzoo.train.checkpoint import restore_rng_state

    restore_rng_state(load_checkpoint(path).rng)
    assert generator["state"].tolist() == [7, 8, 9]


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model, optimizer = _trained_pair()
    path = save_checkpoint(tmp_path / "last.safetensors", model, _meta(1), optimizer)

    import cnnzoo.train.checkpoint as checkpoint_module

    def crash_half_way(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoint_module, "save_file", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, _meta(2), optimizer)
    assert load_checkpoint(path).meta["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temporary file left behind


def test_a_full_disk_while_saving_says_every_earlier_checkpoint_is_intact(tmp_path, monkeypatch, no_space):
    model, optimizer = _trained_pair()
    path = save_checkpoint(tmp_path / "last.safetensors", model, _meta(1), optimizer)

    import cnnzoo.train.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "save_file", no_space)
    with pytest.raises(DiskFull) as caught:
        save_checkpoint(path, model, _meta(2), optimizer)
    assert "; the previous last.safetensors is intact, and so is every checkpoint written before: " in str(caught.value)
    assert load_checkpoint(path).meta["epoch"] == 1


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CnnzooError, match="refuses to unpickle"):
        load_checkpoint(path)
    torch_save = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2), "payload": Exploit()}, torch_save)
    with pytest.raises(CnnzooError, match="pickle"):
        load_checkpoint(torch_save)
    assert not marker.exists()


def test_truncated_empty_and_foreign_files_are_refused(tmp_path):
    model, optimizer = _trained_pair()
    good = save_checkpoint(tmp_path / "good.safetensors", model, _meta(1), optimizer).read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CnnzooError, match="cut short or damaged"):
        load_checkpoint(truncated)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CnnzooError, match="empty"):
        load_checkpoint(empty)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CnnzooError, match="not a cnnzoo checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CnnzooError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CnnzooError, match="no checkpoints/last.safetensors"):
        load_checkpoint(tmp_path)


def test_checkpoint_for_another_model_or_class_count_is_refused():
    lenet = build_model("lenet5").state_dict()
    with pytest.raises(CnnzooError, match="another architecture"):
        load_model_state(build_model("lenet_bn"), lenet)
    with pytest.raises(CnnzooError, match="class count"):
        load_model_state(build_model("lenet5", num_classes=7), lenet)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=512),
    # a plausible safetensors header length followed by junk: the parser's most dangerous path
    st.tuples(st.integers(0, 2**63), st.binary(max_size=256)).map(lambda t: struct.pack("<Q", t[0]) + t[1]),
    st.tuples(st.integers(2, 200), st.text(max_size=200)).map(
        lambda t: struct.pack("<Q", t[0]) + t[1].encode()[: t[0]].ljust(t[0], b" ")),
))
def test_random_bytes_give_only_clear_errors(tmp_path, payload):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(payload)
    with pytest.raises(CnnzooError):
        load_checkpoint(path)


def test_a_checkpoint_from_a_newer_cnnzoo_says_so(tmp_path, capsys):
    from cnnzoo.cli import main

    model, _ = _trained_pair()
    path = save_checkpoint(tmp_path / "new.safetensors", model, {
        "epoch": 1, "classes": [str(i) for i in range(10)],
        "config": {"model": "lenet_bn", "ema_decay": 0.999, "swa_start": 5}})
    with pytest.raises(CnnzooError, match=r"written by a newer cnnzoo .*ema_decay, swa_start.*upgrade"):
        load_checkpoint(path).train_config()
    assert main(["evaluate", str(path), "--device", "cpu"]) == 2
    assert "newer cnnzoo" in capsys.readouterr().err


def _history(steps: int) -> dict:
    from cnnzoo.train.history import History

    return History(batch_loss=[2.3 / (1 + i) for i in range(steps)], batch_lr=[0.1] * steps,
                   batch_epoch=[1 + i // 100 for i in range(steps)], epochs=[{"epoch": 1, "train_loss": 1.0}]).to_dict()


def _header(path) -> dict:
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(size))


def test_a_flipped_byte_anywhere_in_the_tensor_data_is_refused_naming_the_file(tmp_path):
    model, optimizer = _trained_pair()
    good = save_checkpoint(tmp_path / "good.safetensors", model, _meta(1), optimizer).read_bytes()
    start = 8 + struct.unpack("<Q", good[:8])[0]
    generator = random.Random(0)
    for trial in range(50):
        position = generator.randrange(start, len(good))
        damaged = bytearray(good)
        damaged[position] ^= 1 << generator.randrange(8)
        path = tmp_path / f"flip{trial}.safetensors"
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointCorrupted, match=f"{path}.*corrupted"):
            load_checkpoint(path)


def test_per_step_history_lives_in_tensors_so_the_header_does_not_grow_with_steps(tmp_path):
    model, optimizer = _trained_pair()
    short = save_checkpoint(tmp_path / "short.safetensors", model, {**_meta(1), "history": _history(10)}, optimizer)
    long = save_checkpoint(tmp_path / "long.safetensors", model, {**_meta(1), "history": _history(200_000)}, optimizer)
    assert len(json.dumps(_header(long))) - len(json.dumps(_header(short))) < 1000  # only offsets grow
    restored = load_checkpoint(long).meta["history"]
    assert restored == _history(200_000)  # float64 tensors give back the exact Python floats


def test_weights_in_another_dtype_are_refused_not_cast(tmp_path):
    model, _ = _trained_pair()
    save_checkpoint(tmp_path / "half.safetensors", model.half(), _meta(1))
    with pytest.raises(CnnzooError, match=r"stores .* as float16 but the model holds float32"):
        load_model_state(build_model("lenet_bn"), load_checkpoint(tmp_path / "half.safetensors").model_state)


def test_non_finite_weights_are_never_saved_and_never_loaded(tmp_path):
    model, optimizer = _trained_pair()
    path = save_checkpoint(tmp_path / "last.safetensors", model, _meta(1), optimizer)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteWeights, match="previous checkpoint is kept"):
        save_checkpoint(path, model, _meta(2), optimizer)
    assert load_checkpoint(path).meta["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    # a file that holds NaN weights anyway (written by other means) does not load either
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    tensors["model.features.0.weight"][0, 0, 0, 0] = float("inf")
    header = _header(path)["__metadata__"]["cnnzoo"]
    meta = json.loads(header)
    from cnnzoo.train.checkpoint import tensor_checksum

    meta["checksum"] = tensor_checksum(tensors, meta)
    save_file(tensors, tmp_path / "inf.safetensors", metadata={"cnnzoo": json.dumps(meta)})
    with pytest.raises(NonFiniteWeights, match="non-finite weights"):
        load_checkpoint(tmp_path / "inf.safetensors")


def test_format_1_checkpoints_without_a_checksum_still_load(tmp_path):
    from safetensors.torch import save_file

    model, _ = _trained_pair()
    meta = {"format": "cnnzoo-checkpoint", "version": 1, **_meta(1), "history": _history(7)}
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, tmp_path / "old.safetensors", metadata={"cnnzoo": json.dumps(meta)})
    checkpoint = load_checkpoint(tmp_path / "old.safetensors")
    assert checkpoint.meta["history"] == _history(7) and checkpoint.train_config().model == "lenet_bn"


def test_a_folder_where_the_checkpoint_should_be_is_named_plainly(tmp_path):
    (tmp_path / "run" / "checkpoints" / "last.safetensors").mkdir(parents=True)
    for path in (tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.safetensors"):
        with pytest.raises(CnnzooError, match=r"last.safetensors is a folder, not a file"):
            load_checkpoint(path)


def test_a_truncated_checkpoint_is_called_cut_short_not_foreign(tmp_path):
    import pytest
    from torch import nn

    from cnnzoo.errors import CnnzooError
    from cnnzoo.train import TrainConfig
    from cnnzoo.train.checkpoint import load_checkpoint, save_checkpoint

    config = TrainConfig(model="lenet5", dataset="fashion-mnist")
    path = save_checkpoint(tmp_path / "c.safetensors", nn.Linear(4, 3),
                           {"config": config.to_dict(), "classes": list("abc"), "epoch": 0})
    data = path.read_bytes()
    for cut in (len(data) // 2, 20):
        path.write_bytes(data[:cut])
        with pytest.raises(CnnzooError, match="cut short or damaged") as caught:
            load_checkpoint(path)
        assert "not a cnnzoo checkpoint" not in str(caught.value)
