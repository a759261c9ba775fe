"""cProfile summaries: own time by area of the stack, and the top functions with short paths."""

from __future__ import annotations

import io
import os
import pstats
from collections.abc import Callable
from typing import Any

import redis

from . import ROOT


def profile_area(file: str, func: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if file == "~":
        if any(s in func for s in ("recv", "send", "poll", "select", "_socket")):
            return "socket I/O (incl. waiting for Redis)"
        return "C builtins"
    if "fairque_django" in file:
        return "fairque"
    if "/redis/" in file:
        return "redis-py"
    if "/json/" in file:
        return "json"
    if file.endswith(("uuid.py", "random.py")):
        return "uuid/random"
    return "other Python"


def areas(stats: pstats.Stats) -> dict[str, float]:
    """Own time (seconds) per :func:`profile_area`."""
    out: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        area = profile_area(file, func)
        out[area] = out.get(area, 0.0) + tt
    return out


def print_top(source: Any, out: Callable[[str], None], *, sort: str = "tottime", limit: int = 14,
              restrict: str | None = None) -> None:
    """Print the profile's top functions (``pstats`` table), paths shortened, indented."""
    buf = io.StringIO()
    stats = pstats.Stats(source, stream=buf).sort_stats(sort)
    if restrict:
        stats.print_stats(restrict, limit)
    else:
        stats.print_stats(limit)
    text = buf.getvalue()
    for line in text[text.find("   ncalls"):].rstrip().splitlines():
        for long, short in ((str(ROOT) + "/", ""), (os.path.dirname(redis.__path__[0]) + "/", ""),
                            (os.path.dirname(os.__file__) + "/", "stdlib/")):
            line = line.replace(long, short)
        out("    " + line)
