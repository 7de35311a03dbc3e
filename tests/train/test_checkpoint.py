"""Checkpoints: round trip, atomic writes, and every bad file refused with a clear CnnzooError."""

import os
import pickle
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train import load_checkpoint, save_checkpoint
from cnnzoo.train.checkpoint import load_model_state


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
    with pytest.raises(CnnzooError, match="not a cnnzoo checkpoint"):
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
