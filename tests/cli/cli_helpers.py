"""What the command-line tests share besides fixtures: the quick training flags, a name too long for
any file system, running `cnnzoo` in-process, and the one-line error check. (A module of its own:
`from conftest import ...` finds whichever conftest.py pytest loaded last.)"""

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
