"""Shared by the command-line tests: the quick training flags, a name too long for any file
system, running `cnnzoo` in-process, the one-line error check, and one short trained run."""

import pytest

from cnnzoo.cli import main

QUICK = ["--epochs", "1", "--batch-size", "64", "--limit-train", "512", "--limit-test", "256", "--device", "cpu",
         "--quiet"]
LONG_NAME = "n" * 300  # longer than any file system's 255 bytes a name


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("cnnzoo: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_root):
    """One quick lenet_bn run, shared by the cli tests (`evaluate` writes its confusion image into it)."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--model", "lenet_bn", "--dataset", "fashion-mnist", "--out", str(out), "--name", "r",
                 "--warmup-epochs", "0", *QUICK[:-1], "--limit-train", "2048", "--batch-size", "32"])
    assert code == 0
    return out / "r"
