"""Every file cnnzoo writes appears whole or not at all: written beside its target, then renamed."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cnnzoo.errors import CnnzooError

# A temporary's name carries its writer's process id, so that a later writer can tell the leftovers
# of a killed process (safe to delete) from a file another live process is still writing.
_TEMPORARY = re.compile(r"^\..+\.pid(\d+)-[^.]*\.(?:.*tmp|tmp\.[^.]+)$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# safetensors (0.6 and later) writes a file through its own temporary, named by Rust's tempfile
# crate (".tmp" and six letters or digits) beside the target, then renames it: a kill -9 mid-write
# leaves it behind, without a process id to tell whose it is.
_FOREIGN_TEMPORARY = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")


class DiskFull(CnnzooError):
    """A write ran out of space; the file it would have replaced is untouched."""


def _human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        return True
    # safetensors reports its Rust io::Error only as text: "I/O error: No space left on device (os error 28)".
    text = str(error)
    return type(error).__name__ == "SafetensorError" and any(f"os error {code})" in text for code in _DISK_FULL)


def disk_full_error(path: Path, needed: int | None, also_intact: str | None = None) -> DiskFull:
    """`also_intact`: what else the writer knows survives (a run directory's checkpoints), as a clause
    such as "and so is every checkpoint written before"; this module knows no folder's meaning."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    need = f"about {_human_bytes(needed)} needed" if needed else "more space needed"
    have = f", {_human_bytes(free)} free" if free is not None else ""
    kept = (f"the previous {path.name} is intact" if path.exists() else f"{path.name} was not written")
    if also_intact:
        kept += f", {also_intact}"
    return DiskFull(f"The disk holding {path.parent} is full ({need}{have}) while writing {path.name}; {kept}: "
                    "free some space, then run the command again (a run continues with --resume).")


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike, size_hint: int | None = None,
                  also_intact: str | None = None, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the body succeeds.

    Readers (a browser refreshing report.html, a resumed run reading its checkpoint, a notebook
    showing loss.png during training) then never see a half-written file, and a crash leaves the
    previous version in place. The file gets the mode a plain ``open()`` would give it. A full disk
    becomes :class:`DiskFull`, which says where, how much (``size_hint`` bytes, when the caller
    knows) and that the previous file is intact, plus the caller's `also_intact` clause.
    ``keep_suffix`` ends the temporary's name in the target's suffix (``.x.pid1-ab.tmp.keras``), for
    writers that insist on it (Keras's ``save``).
    """
    path = Path(path)
    if path.is_dir():
        raise CnnzooError(f"{path} is a folder; give the path of a file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.pid{os.getpid()}-", suffix=f".tmp{path.suffix}" if keep_suffix else f"{path.suffix}.tmp",
                                   dir=path.parent)
    except OSError as error:
        if error.errno in _DISK_FULL:
            raise disk_full_error(path, size_hint, also_intact) from None
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise CnnzooError(f"Cannot write {path}: {blocking} is a file, not a folder; choose another path.") from None
        raise CnnzooError(f"Cannot write {path} ({error.strerror}); choose a writable location.") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600), which would hide runs kept in a shared folder.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except Exception as error:
        if _is_disk_full(error):
            raise disk_full_error(path, size_hint or _size_or_none(tmp), also_intact) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size or None
    except OSError:
        return None


def atomic_write_text(path: str | os.PathLike, text: str, also_intact: str | None = None) -> None:
    data = text.encode("utf-8")
    with atomic_target(path, size_hint=len(data), also_intact=also_intact) as tmp:
        tmp.write_bytes(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, sole_writer: bool = False) -> list[Path]:
    """Delete the temporaries in ``folder`` left by writers that died mid-write (kill -9, power loss);
    return what was removed. A live process's temporary is left alone. ``sole_writer``: the caller
    holds the folder's writer lock, so the temporaries of libraries that name no process
    (safetensors') can only be a dead writer's too."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        dead = match is not None and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1)))
        if (dead or (sole_writer and _FOREIGN_TEMPORARY.match(entry.name))) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
