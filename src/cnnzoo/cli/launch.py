"""`cnnzoo train --nproc N`: the same command again, as N data-parallel processes under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnzoo.errors import CnnzooError


def launch_torchrun(argv: list[str], nproc: int, config=None) -> int:
    """Run `cnnzoo argv` again as `nproc` torchrun processes and wait for them; `config` (a new run's,
    None when resuming) is checked against the process count first."""
    from cnnzoo.train.distributed import DistContext

    if "LOCAL_RANK" in os.environ:
        raise CnnzooError("--nproc starts torchrun itself; leave it out when launching cnnzoo with torchrun.")
    if nproc < 1:
        raise CnnzooError(f"--nproc must be a positive number of processes, got {nproc}.")
    if config is not None:  # a bad flag fails here once rather than once in every process
        DistContext(world_size=nproc).per_rank_batch(config.batch_size)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "cnnzoo", *without_nproc(argv)]
    with subprocess.Popen(command) as launcher:
        try:
            return launcher.wait()
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached torchrun too: let it stop its workers
            return launcher.wait()


def without_nproc(argv: list[str]) -> list[str]:
    """`argv` minus --nproc and its value, in every spelling argparse accepts (--nproc=2, --npr 2)."""
    kept, i = [], 0
    while i < len(argv):
        name, equals, _ = argv[i].partition("=")
        if len(name) >= 4 and "--nproc".startswith(name):
            i += 1 if equals else 2
        else:
            kept.append(argv[i])
            i += 1
    return kept
