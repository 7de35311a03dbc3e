"""The fixture the command-line tests share: one short trained run."""

import pytest

from cli_helpers import QUICK
from cnnzoo.cli import main


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_root):
    """One quick lenet_bn run, shared by the cli tests (`evaluate` writes its confusion image into it)."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--model", "lenet_bn", "--dataset", "fashion-mnist", "--out", str(out), "--name", "r",
                 "--warmup-epochs", "0", *QUICK[:-1], "--limit-train", "2048", "--batch-size", "32"])
    assert code == 0
    return out / "r"
