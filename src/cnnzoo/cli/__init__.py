"""The `cnnzoo` command: argparse subcommands (parser), each a thin shell over the Python API (commands);
launch relaunches a command under torchrun, format prints tables and numbers."""

from __future__ import annotations

import os
import sys

# OpenMP threads otherwise spin while waiting for each other; on a shared or oversubscribed CPU
# that spinning starves the work itself (measured: 3x slower LeNet epochs on a busy 2-core box).
# Must be set before torch is imported, which the commands do lazily.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cnnzoo.cli.parser import build_parser  # noqa: E402 (after the environment above)
from cnnzoo.errors import CnnzooError  # noqa: E402

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for commands that relaunch themselves
    try:
        return args.func(args) or 0
    except CnnzooError as error:
        print(f"cnnzoo: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print("cnnzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnzoo evaluate RUN | head`: the reader left early. Point stdout at /dev/null so Python's
        # own flush at exit does not fail a second time with a traceback (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
