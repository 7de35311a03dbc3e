"""Child processes for tests/test_faults.py, forked from one forkserver that has imported torch and
cnnzoo once, so that twenty killed trainings cost seconds, not twenty interpreter starts each."""

import os
import random
import signal
import sys

import torch

import cnnzoo.cli  # noqa: E402
import cnnzoo.train.checkpoint  # noqa: E402
import cnnzoo.viz.plots  # noqa: E402
import cnnzoo.viz.report  # noqa: E402

def _as_child() -> None:
    """Set up a forked child. Only children: the test process imports this module too, and must keep
    its own threads, plots and reports."""
    torch.set_num_threads(1)  # forked children must not inherit an OpenMP pool; one thread is also deterministic
    # The plots and the HTML report are drawn after training (matplotlib: seconds of CPU per run, forty
    # runs here) and are written atomically like everything else; the kills aim at training and at
    # checkpoint writes, so the children skip drawing.
    cnnzoo.viz.plots.plot_run = lambda run_dir: []
    cnnzoo.viz.report.write_report = lambda run_dir, *args, **kwargs: None


def _quiet() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def cli(argv: list[str], quiet: bool = True) -> None:
    """Run `cnnzoo ARGV` and exit with its status."""
    _as_child()
    if quiet:
        _quiet()
    sys.exit(cnnzoo.cli.main(argv))


def cli_killed_in_checkpoint_write(argv: list[str], seed: int) -> None:
    """Run `cnnzoo ARGV`, SIGKILLing itself inside one checkpoint write chosen by `seed`: after a
    random number of the temporary's bytes, or whole but before the rename."""
    _as_child()
    _quiet()
    rng = random.Random(seed)
    victim = rng.randrange(1, 4)  # 1: the epoch-0 checkpoint; 2, 3: after epochs 1 and 2
    real_save = cnnzoo.train.checkpoint.save_file
    calls = 0

    def save_then_die(tensors, filename, metadata=None):
        nonlocal calls
        calls += 1
        real_save(tensors, filename, metadata=metadata)
        if calls == victim:
            size = os.path.getsize(filename)
            if rng.random() < 0.7:
                os.truncate(filename, rng.randrange(size))
            os.kill(os.getpid(), signal.SIGKILL)

    cnnzoo.train.checkpoint.save_file = save_then_die
    sys.exit(cnnzoo.cli.main(argv))


def _warm_data_cache() -> None:
    # Decoded splits are cached in-process; decoding them here once hands every forked child the result.
    root = os.environ.get("CNNZOO_DATA")
    if root:
        from cnnzoo.data import load_split

        for split in ("train", "test"):
            load_split("fashion-mnist", split, root=root, download=False)


_warm_data_cache()
