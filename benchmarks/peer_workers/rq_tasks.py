"""RQ job functions of the benchmarks (``rq worker -w rq.worker.SimpleWorker bench``)."""

from __future__ import annotations

from . import common

QUEUE = "bench"


def noop(i: int = 0) -> None:
    common.noop_body(i)


def record(i: int) -> None:
    common.record_body(i)


def sleep_ms(ms: float = 10.0) -> None:
    common.sleep_body(ms)
