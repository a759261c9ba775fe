"""Metrics gathered in the worker process instead of by every acknowledgement.

A worker's acks (``complete.lua`` with metrics mode ``'2'``) return each task's wait instead of
writing the wait / run histograms (``P:m:<user>``, ``P:m:~all``) and the completions per minute
(``P:m:~tput``) themselves; :class:`MetricsBuffer` adds them up and ``metrics_flush.lua`` writes
them in one call per tick (``interval``, and whenever the worker's heartbeat beats or it stops).
The figures are the same as per-task writes give, later by up to a tick. What a crash of the
process loses: the increments gathered since the last flush (metrics only: no task, counter,
lease or fairness state is buffered). No I/O here.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final

# Histogram bounds (ms): the same as includes/observation.lua's OBS_BOUNDS (a test compares them).
BOUNDS_MS: Final[tuple[int, ...]] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)


# the histogram fields of each kind, in bound order, then the overflow field (``w:inf``)
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    kind: (*(f"{kind}:{bound}" for bound in BOUNDS_MS), f"{kind}:inf") for kind in ("w", "r")}


def bucket(kind: str, ms: int) -> str:
    """The histogram field of an observation of ``ms`` of kind ``w`` (wait) or ``r`` (run)."""
    return _FIELDS[kind][bisect_left(BOUNDS_MS, ms)]


class MetricsBuffer:
    """Histogram increments and completions per minute of acknowledged tasks, added up until the
    next flush (thread-safe: a worker's slots and its heartbeat share one)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._incr: dict[tuple[str, str], int] = {}
        self._due = time.monotonic() + interval

    def add(self, user: str, wait_ms: int, run_ms: int, at_ms: int) -> None:
        """One task done: its wait and, when known (>= 0), its run time, at client time ``at_ms``."""
        wait = max(int(wait_ms), 0)
        keys = [(user, "w:sum"), ("~all", "w:sum")]  # each key gets ``wait``; the bucket keys 1
        wait_field = bucket("w", wait)
        ones = [(user, wait_field), ("~all", wait_field), ("~tput", str(at_ms // 60000))]
        run = -1
        if run_ms >= 0:
            run = max(int(run_ms), 0)
            run_field = bucket("r", run)
            ones += [(user, run_field), ("~all", run_field)]
        with self._lock:
            incr = self._incr
            get = incr.get
            for key in keys:
                incr[key] = get(key, 0) + wait
            if run >= 0:
                for key in ((user, "r:sum"), ("~all", "r:sum")):
                    incr[key] = get(key, 0) + run
            for key in ones:
                incr[key] = get(key, 0) + 1

    def due(self) -> bool:
        """Whether something is gathered and a tick has passed since the last flush."""
        return bool(self._incr) and time.monotonic() >= self._due

    def take(self) -> list[tuple[str, str, int]]:
        """Everything gathered (hash, field, increment), emptying the buffer."""
        with self._lock:
            taken, self._incr = self._incr, {}
            self._due = time.monotonic() + self.interval
        return [(name, field, n) for (name, field), n in taken.items()]

    def restore(self, taken: Iterable[tuple[str, str, int]]) -> None:
        """Put back what a failed flush took (added to what was gathered since)."""
        with self._lock:
            for name, field, n in taken:
                self._incr[name, field] = self._incr.get((name, field), 0) + n
