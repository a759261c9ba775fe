"""Small decoding helpers shared by the drivers and the read model (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["chunks", "text"]


def text(value: Any) -> str:
    """A reply value (bytes or not) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
