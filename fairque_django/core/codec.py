"""Small decoding helpers shared by the drivers and the read model (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["chunks", "count", "text"]


def text(value: Any) -> str:
    """A reply value (bytes or not) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def count(value: Any) -> int | None:
    """A stored counter (bytes, text or number) as an int, or None when it holds no whole finite
    number (garbage written into a key: the caller reports it and reads 0)."""
    if value is None:
        return 0
    try:
        number = float(text(value))
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")) or number != int(number):
        return None
    return int(number)
