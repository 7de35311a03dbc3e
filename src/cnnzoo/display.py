"""Display slots: how the objects of the lower layers (train, models) show themselves.

Drawing is cnnzoo.viz's job, and viz sits above train and models, which therefore never import it,
not even inside a method. They look their picture up here by slot name instead; the composition
root, cnnzoo/__init__.py (which Python runs before any cnnzoo.train or cnnzoo.models import), fills
the table with lazy providers that import viz only when first called, so training itself never
loads matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from cnnzoo.errors import CnnzooError

SLOTS = {
    "history_figure": "a History's curves as a matplotlib Figure (History.plot)",
    "history_bundle": "a History's notebook display (its curves and epoch table)",
    "history_text": "a History's epoch table as text (str)",
    "evaluation_bundle": "an EvalResult's notebook display (accuracy, per class, confusion matrix)",
    "evaluation_text": "an EvalResult as text (str)",
    "summary_html": "a ModelSummary's notebook table",
    "lr_find_figure": "an LRFinderResult's loss curve as a matplotlib Figure (LRFinderResult.plot)",
    "live_progress": "the Callback that shows a fit live in a notebook cell (progress 'plot' or 'auto')",
}

PROVIDERS: dict[str, Callable[..., Any]] = {}


def register(slot: str, provider: Callable[..., Any]) -> None:
    """Let `provider` fill `slot` from now on (a later registration replaces an earlier one)."""
    if slot not in SLOTS:
        raise ValueError(f"no display slot is named {slot!r}; the slots are {', '.join(SLOTS)}")
    PROVIDERS[slot] = provider


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A provider that imports `module` on its first call and then calls its `name` (kept as the
    provider's `module` and `target`, for a reader checking the wiring)."""
    def provider(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(module), name)(*args, **kwargs)

    provider.module, provider.target = module, name
    return provider


def provider(slot: str) -> Callable[..., Any]:
    """The function that draws `slot`; a slot nobody filled is one sentence, not an AttributeError."""
    if slot not in SLOTS:
        raise ValueError(f"no display slot is named {slot!r}; the slots are {', '.join(SLOTS)}")
    try:
        return PROVIDERS[slot]
    except KeyError:
        raise CnnzooError(
            f"nothing is registered to draw {SLOTS[slot]}: cnnzoo/__init__.py registers cnnzoo.viz's "
            f"providers when cnnzoo is imported, so restore that wiring or call "
            f"cnnzoo.display.register({slot!r}, function)"
        ) from None
