"""The `cnnzoo` command: argparse subcommands (parser), each a thin shell over the Python API (commands:
training; zoo: the models, data sets and machine; runs: a trained model); launch relaunches a command
under torchrun, format prints tables and numbers."""

from __future__ import annotations

import errno
import os
import re
import sys

# OpenMP threads otherwise spin while waiting for each other; on a shared or oversubscribed CPU
# that spinning starves the work itself (measured: 3x slower LeNet epochs on a busy 2-core box).
# Must be set before torch is imported, which building the parser (imported below) does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cnnzoo.cli.parser import build_parser  # noqa: E402 (after the environment above)
from cnnzoo.errors import CnnzooError  # noqa: E402
from cnnzoo.train.config import OPTIONS  # noqa: E402

__all__ = ["build_parser", "main"]


_PATH_PROBLEMS = {
    errno.ENAMETOOLONG: "a name in it is longer than the file system allows (255 bytes a name); choose a shorter one",
    errno.ENOTDIR: "a part of it that should be a folder is a file; choose another path",
    errno.EISDIR: "it is a folder where a file is needed; give the path of a file",
    errno.EACCES: "permission denied; choose a location you may use",
    errno.EROFS: "the file system is read-only; choose a writable location",
}


def path_error_message(error: OSError) -> str | None:
    """One sentence for an OSError caused by a path the user gave, else None (a bug, raised as is)."""
    problem = _PATH_PROBLEMS.get(error.errno)
    if problem is None or error.filename is None:
        return None
    name = os.fsdecode(error.filename)
    shown = name if len(name) <= 120 else f"{name[:60]}…{name[-40:]} ({len(name)} characters)"
    return f"Cannot use the path {shown}: {problem}."


# The settings that decide how much memory a step takes, named by the memory error by their flags.
MEMORY_SIZED_BY = ("batch_size", "eval_batch_size", "input_size")


def memory_error_message(error: BaseException) -> str | None:
    """One sentence for the CPU running out of memory (torch's allocator raises a RuntimeError), else None."""
    text = str(error)
    if not (isinstance(error, MemoryError) or "DefaultCPUAllocator: can't allocate memory" in text):
        return None
    size = re.search(r"allocate (\d+) bytes", text)
    wanted = f" (one request was for {int(size.group(1)) / 1e9:.1f} GB)" if size else ""
    flags = ", ".join(OPTIONS[name].flag_name(name) for name in MEMORY_SIZED_BY)
    return (f"The computer ran out of memory{wanted}; lower {flags} or the number of images asked for, or use a "
            "machine with more memory.")


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
    except (MemoryError, RuntimeError) as error:
        message = memory_error_message(error)
        if message is None:
            raise
        print(f"cnnzoo: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `cnnzoo evaluate RUN | head`: the reader left early. Point stdout at /dev/null so Python's
        # own flush at exit does not fail a second time with a traceback (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # after BrokenPipeError, one of its kinds
        # A path the user gave that the system refuses, met wherever a command opens it.
        message = path_error_message(error)
        if message is None:
            raise
        print(f"cnnzoo: error: {message}", file=sys.stderr)
        return 2
