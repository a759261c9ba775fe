"""Huey app of the benchmarks: ``huey_consumer benchmarks.peer_workers.huey_app.huey -w 1 -k thread``."""

from __future__ import annotations

from huey import RedisHuey

from . import common

# RedisHuey defaults: blocking dequeue (BRPOP, read_timeout 1 s), pickle, results on (None not stored).
huey = RedisHuey("bench", url=common.url())


@huey.task()
def noop(i: int = 0) -> None:
    common.noop_body(i)


@huey.task()
def record(i: int) -> None:
    common.record_body(i)


@huey.task()
def sleep_ms(ms: float = 10.0) -> None:
    common.sleep_body(ms)
