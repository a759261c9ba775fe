"""The benchmarks' harness: everything that is not a scenario or a contender.

- :mod:`.server`    Redis: URLs and databases, flushing only the benchmark's own DB, server-wide
                    counters (INFO commandstats / cpu / memory), MONITOR command counts, round-trip
                    counting, a private throw-away redis-server
- :mod:`.procs`     worker processes: ONE launcher for every contender (own process group, log file,
                    always stopped), CPU per process
- :mod:`.stats`     median, percentiles, ratios of same-repetition pairs, Jain's index
- :mod:`.report`    tables, ``name: value vs target PASS/MISS`` verdicts, JSON results with run metadata
- :mod:`.profiling` cProfile summaries (time by area, top functions)
- :mod:`.plots`     the PNG figures of docs/benchmarks.md
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
IMAGES = ROOT / "docs" / "images"
URL_ENV = "FAIRQUE_BENCH_REDIS_URL"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def default_url(db: int) -> str:
    """The Redis a scenario uses unless told: ``$FAIRQUE_BENCH_REDIS_URL``, else database ``db`` of
    127.0.0.1:6379 (each scenario has its own default database)."""
    return os.environ.get(URL_ENV) or f"redis://127.0.0.1:6379/{db}"
