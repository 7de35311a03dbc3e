"""How the objects of train and models (History, EvalResult, ...) show themselves, drawn by viz.

viz sits above train and models, which never import it. They ask `provider(name)` for the viz
function by name instead, and the package root, which Python runs before them, fills `DRAWN_BY`;
viz, and with it matplotlib, is imported only when something is first shown.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from cnnzoo.errors import CnnzooError

DRAWN_BY: dict[str, str] = {}  # what is drawn -> "module:function", filled by cnnzoo/__init__.py


def provider(name: str) -> Callable[..., Any]:
    """The function that draws `name`; one nobody wired is one sentence, not a KeyError."""
    if name not in DRAWN_BY:
        raise CnnzooError(f"nothing draws {name!r}: cnnzoo/__init__.py wires viz's functions into "
                          f"cnnzoo.display.DRAWN_BY when cnnzoo is imported, so restore that wiring or set "
                          f"DRAWN_BY[{name!r}] = 'module:function'")
    module, colon, function = DRAWN_BY[name].partition(":")
    if not colon:
        raise CnnzooError(f"cnnzoo.display.DRAWN_BY[{name!r}] is {DRAWN_BY[name]!r}; it must read 'module:function'.")
    return getattr(import_module(module), function)
