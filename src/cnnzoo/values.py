"""The type checks every layer's validation shares: of settings, stored documents and arguments."""

from typing import Any


def is_whole(value: Any) -> bool:
    """An int and not a bool: True is an int to Python, but not a count, a size or an index."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float and not a bool; NaN and infinity pass, for the callers that refuse them to say so."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
