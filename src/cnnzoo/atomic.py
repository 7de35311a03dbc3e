"""Every file cnnzoo writes appears whole or not at all: written beside its target, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cnnzoo.errors import CnnzooError


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the body succeeds.

    Readers (a browser refreshing report.html, a resumed run reading its checkpoint, a notebook
    showing loss.png during training) then never see a half-written file, and a crash leaves the
    previous version in place. The file gets the mode a plain ``open()`` would give it.
    """
    path = Path(path)
    if path.is_dir():
        raise CnnzooError(f"{path} is a folder; give the path of a file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp", dir=path.parent)
    except OSError as error:
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
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
