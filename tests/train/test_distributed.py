"""Data-parallel training on 2 CPU processes (gloo, loopback) equals one process with the same global batch."""

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from cnnzoo.errors import CnnzooError
from cnnzoo.train import RunDir, TrainConfig, fit, load_checkpoint
from cnnzoo.train.distributed import DistContext
from cnnzoo.workflows.run import data_for, model_for

LOOPBACK = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process(config: TrainConfig):
    """The reference: one process, the same config and global batch."""
    data = data_for(config, torch.device("cpu"))
    model = model_for(config, len(data.train.classes))
    history = fit(model, data, config, quiet=True)
    return model.state_dict(), history


def _assert_same_run(run_path, config, atol=1e-5):
    expected_state, expected = _single_process(config)
    state = load_checkpoint(run_path).model_state
    assert state.keys() == expected_state.keys()
    for key, value in state.items():
        torch.testing.assert_close(value, expected_state[key], atol=atol, rtol=1e-4, msg=key)
    rows = list(csv.DictReader((run_path / "metrics.csv").read_text().splitlines()))
    assert len(rows) == len(expected.epochs)
    for row, want in zip(rows, expected.epochs):
        for column in ("train_loss", "train_acc", "test_acc"):
            assert float(row[column]) == pytest.approx(want[column], abs=1e-4), column
    assert len(expected.batch_loss) == len((run_path / "batch_loss.csv").read_text().splitlines()) - 1


def test_torchrun_sync_batchnorm_equals_one_process_and_writes_one_run(tmp_path, data_root):
    # A real torchrun, as a user starts it; no --name, so rank 0's clock alone names the run.
    # Batch norm over the global batch makes the 2-rank run the same function as the 1-process one.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "cnnzoo", "train", "--model", "lenet_bn", "--sync-bn", "--optimizer", "sgd", "--lr", "0.05",
               "--momentum", "0.9", "--schedule", "constant", "--hflip", "--crop-padding", "2", "--epochs", "2",
               "--batch-size", "64", "--limit-train", "256", "--limit-test", "64", "--device", "cpu",
               "--data-dir", str(data_root), "--out", str(tmp_path / "runs")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **LOOPBACK, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: test accuracy") == 1  # only rank 0 prints
    (run_path,) = (tmp_path / "runs").iterdir()
    assert (run_path / "evaluation.json").is_file()
    assert RunDir.open(run_path).read_json("config.json")["world_size"] == 2
    config = RunDir.open(run_path).read_config()[0]
    assert config.sync_bn
    _assert_same_run(run_path, config)


MODELS = {"lenet5": False, "lenet_bn": True}  # model: sync_bn


def _rank(rank: int, port: int, out: str, config: TrainConfig) -> None:
    from cnnzoo import workflows as run

    os.environ.update({**LOOPBACK, "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "WORLD_SIZE": "2"})
    torch.set_num_threads(1)
    run.finish_run = lambda *args: None  # plots and evaluation.json are the torchrun test's business
    for model, sync_bn in MODELS.items():
        run.train_run(config.replace(model=model, sync_bn=sync_bn, epochs=1), out=out, name=model, quiet=True)
        torch.distributed.barrier()  # rank 0's checkpoint is on disk before every rank resumes from it
        run.resume_run(f"{out}/{model}", quiet=True, epochs=config.epochs)


def test_two_ranks_resumed_from_a_checkpoint_equal_one_process(tmp_path, quick_config):
    # Both models in one pair of processes: starting a Python with torch costs seconds.
    config = quick_config.replace(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, limit_train=256,
                                  limit_test=64, crop_padding=2)
    mp.spawn(_rank, args=(_free_port(), str(tmp_path), config), nprocs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MODELS)
    for model, sync_bn in MODELS.items():
        _assert_same_run(tmp_path / model, config.replace(model=model, sync_bn=sync_bn))


def test_global_batch_must_split_evenly_over_processes():
    assert DistContext(world_size=4).per_rank_batch(256) == 64
    with pytest.raises(CnnzooError, match="global batch.*multiple of 3"):
        DistContext(world_size=3).per_rank_batch(256)


def test_torchrun_on_mps_is_refused_in_one_sentence_naming_the_command(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(CnnzooError, match=r"torchrun cannot train on MPS .*run `cnnzoo train --device mps` as one "
                                          r"process, or use --device cpu under torchrun\.$"):
        DistContext.from_env("auto")


def test_sync_bn_refuses_the_scratch_batch_norm():
    with pytest.raises(CnnzooError, match="--norm torch"):
        TrainConfig(model="lenet_bn", norm="scratch", sync_bn=True).validate()


def test_gloo_sync_batchnorm_takes_bf16_activations_like_torchs_batchnorm(tmp_path):
    # Under --precision bf16 the convolutions hand batch norm bf16 activations; the statistics must
    # still be float32, as in torch's kernels. The CPU branch of sync_batchnorm, run in a one-process
    # group: the same collectives as with several.
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        reference = torch.nn.BatchNorm2d(6)
        cpu_ranks = DistContext(world_size=2, device=torch.device("cpu"))
        synced = cpu_ranks.sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(6)))[0]
        assert not isinstance(synced, (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm))  # the gloo layer
        x = (torch.randn(8, 6, 5, 5) * 3 + 1).to(torch.bfloat16)
        out = synced(x)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), reference(x.float()), atol=2e-2, rtol=2e-2)
        torch.testing.assert_close(synced.running_mean, reference.running_mean)
        torch.testing.assert_close(synced.running_var, reference.running_var)
    finally:
        dist.destroy_process_group()


def test_each_rank_draws_its_own_dropout_stream_per_epoch():
    def draws(context, epoch):
        torch.manual_seed(123)
        context.seed_epoch(seed=0, epoch=epoch)
        return torch.rand(4)

    rank0, rank1 = DistContext(rank=0, world_size=2), DistContext(rank=1, world_size=2)
    assert not torch.equal(draws(rank0, 0), draws(rank1, 0))
    assert not torch.equal(draws(rank0, 0), draws(rank0, 1))
    assert torch.equal(draws(rank1, 3), draws(rank1, 3))  # what makes a resumed rank exact
    torch.manual_seed(123)
    untouched = torch.rand(4)
    assert torch.equal(draws(DistContext(), 0), untouched)  # one process: its stream is as it was
