"""What a user id or a worker id may be: the one set of rules (no Django, no Redis).

Both ids become parts of Redis key names, so braces (they would break the ``{prefix}`` hash
tag), whitespace and control characters are never allowed, and a leading ``~`` is reserved
(the shared pool partition is ``~pool``).  ``*`` and ``?`` make a configured entry a glob
pattern, so a real user id never holds them.  The functions return a problem text (or
``None``) so that each caller raises its own error: :func:`~fairque_django.core.keys.validate_user_id`
a ``TaskValidationError``, the configuration a ``ConfigurationError`` naming the key.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["GLOB_CHARS", "MAX_WORKER_ID_LENGTH", "bad_char", "describe_char", "is_pattern",
           "user_id_problem", "worker_id_problem"]

GLOB_CHARS: Final = "*?"
"""Characters that make an ``assigned_users``/``steal_targets`` entry a glob pattern."""

MAX_WORKER_ID_LENGTH: Final = 200
FORBIDDEN: Final = "braces, whitespace and control characters are not allowed"

_BAD_CHARS_RE: Final = re.compile(r"[{}\s\x00-\x1f\x7f-\x9f]")
_BAD_USER_CHARS_RE: Final = re.compile(r"[{}*?\s\x00-\x1f\x7f-\x9f]")


def is_pattern(user: str) -> bool:
    """True if *user* is a glob pattern (contains ``*`` or ``?``)."""
    return any(ch in user for ch in GLOB_CHARS)


def bad_char(text: str, pattern: re.Pattern[str] = _BAD_CHARS_RE) -> str | None:
    """The first character of *text* that may not be part of a key name, or ``None``."""
    found = pattern.search(text)
    if found is not None:
        return found.group()
    if not text.isascii():  # other Unicode control/format characters (the regex covers ASCII + C1)
        for ch in text:
            if unicodedata.category(ch).startswith("C"):
                return ch
    return None


def describe_char(ch: str) -> str:
    """``'{'`` for a brace, ``' ' (U+0020)`` for anything else."""
    return repr(ch) if ch in "{}" else f"{ch!r} (U+{ord(ch):04X})"


def _common_problem(value: object, what: str) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, got {'None' if value is None else type(value).__name__}"
    if not value:
        return f"{what} must not be empty"
    return None


def user_id_problem(value: object, max_length: int | None = None, *, allow_pattern: bool = False) -> str | None:
    """Why *value* is not a usable user id (or, with *allow_pattern*, user glob), else ``None``."""
    problem = _common_problem(value, "user id")
    if problem is not None or not isinstance(value, str):
        return problem
    if max_length is not None and len(value) > max_length:
        return f"user id is {len(value)} characters long; the limit is {max_length}"
    bad = bad_char(value, _BAD_CHARS_RE if allow_pattern else _BAD_USER_CHARS_RE)
    if bad is not None:
        if bad in GLOB_CHARS:
            return f"user id {value[:50]!r} contains {bad!r}: glob characters ('*', '?') only make patterns"
        return f"user id {value[:50]!r} contains the forbidden character {describe_char(bad)}; {FORBIDDEN}"
    if value.startswith("~"):
        return f"user id {value[:50]!r} starts with '~', which is reserved"
    return None


def worker_id_problem(value: object) -> str | None:
    """Why *value* is not a usable worker id, else ``None``."""
    problem = _common_problem(value, "worker id")
    if problem is not None or not isinstance(value, str):
        return problem
    bad = bad_char(value)
    if bad is not None:
        return f"worker id {value[:50]!r} contains the forbidden character {describe_char(bad)}; {FORBIDDEN}"
    if value.startswith("~"):
        return f"worker id {value!r} must not start with '~' (reserved for '~pool')"
    if len(value) > MAX_WORKER_ID_LENGTH:
        return f"worker id is {len(value)} characters long; the maximum is {MAX_WORKER_ID_LENGTH}"
    return None
