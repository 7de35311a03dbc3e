"""Which progress display a training run gets: the `progress=` choice resolved against where it runs."""

from __future__ import annotations

import sys
from typing import TextIO

from cnnzoo.errors import CnnzooError
from cnnzoo.kernel import in_notebook

PROGRESS_CHOICES = ("auto", "bar", "plot", "none")


def resolve_progress(progress: str, *, quiet: bool = False, stream: TextIO | None = None) -> str:
    """"plot", "bar" or "none": what `progress` means here.

    "auto" is the live plot (with its bar) in a notebook, the bar on a terminal, nothing when the
    output is piped to a file. A terminal cannot draw, so there "plot" is the bar."""
    if progress not in PROGRESS_CHOICES:
        raise CnnzooError(f"progress must be one of {', '.join(map(repr, PROGRESS_CHOICES))}, got {progress!r}.")
    if quiet or progress == "none":
        return "none"
    notebook = in_notebook()
    if progress == "auto":
        if notebook:
            return "plot"
        stream = sys.stderr if stream is None else stream
        return "bar" if stream.isatty() else "none"
    if progress == "plot" and not notebook:
        return "bar"
    return progress
