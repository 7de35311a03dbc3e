"""`cnnzoo train --nproc N` relaunches the same command under torchrun."""

import subprocess
import sys

from cnnzoo.cli import main
from cnnzoo.cli.launch import without_nproc


def test_nproc_relaunches_the_same_command_under_torchrun(monkeypatch, tmp_path):
    launched = []

    class FakePopen:
        def __init__(self, command):
            launched.append(command)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait(self):
            return 7

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    args = ["train", "--model", "lenet5", "--nproc=2", "--batch-size", "64", "--out", str(tmp_path)]
    assert main(args) == 7
    assert launched == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                         "-m", "cnnzoo", "train", "--model", "lenet5", "--batch-size", "64", "--out", str(tmp_path)]]
    assert main(["train", "--nproc", "3", "--batch-size", "64"]) == 2  # refused before anything starts
    assert len(launched) == 1
    assert without_nproc(["train", "--npr", "2", "--name", "x", "--nproc=4"]) == ["train", "--name", "x"]
