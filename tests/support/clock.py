"""An injectable clock for the code that takes the time as an argument.

The read model and the alert tracker accept ``now=``/``at=`` (``worker_liveness``,
``AlertTracker.update``, ``load_history``, ``trim_throughput``, ``build_chart``...): a test passes
``clock.now()`` and moves the clock with ``advance`` instead of sleeping. Code that reads
``time.time()`` itself (heartbeats, the snapshot's worker ages) or Redis's own clock (leases,
delays, guards) cannot be driven this way: tests of it await the outcome with ``eventually``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    """Seconds since the epoch that only move when told to."""

    t: float = 1_700_000_000.0

    def now(self) -> float:
        return self.t

    def now_ms(self) -> int:
        return int(self.t * 1000)

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds`` and return the new time."""
        self.t += seconds
        return self.t
