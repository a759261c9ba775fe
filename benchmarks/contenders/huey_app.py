"""Huey as a contender (throughput scenarios): the app, its tasks, its producer.

Worker: ``huey_consumer benchmarks.contenders.huey_app.huey -w 1 -k thread``. RedisHuey defaults:
blocking dequeue (BRPOP, read_timeout 1 s), pickle, results on (None not stored).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from huey import RedisHuey

from benchmarks.contenders import bodies
from benchmarks.contenders.base import System

huey = RedisHuey("bench", url=bodies.url())


@huey.task()
def noop(i: int = 0) -> None:
    bodies.noop_body(i)


@huey.task()
def record(i: int) -> None:
    bodies.record_body(i)


@huey.task()
def sleep_ms(ms: float = 10.0) -> None:
    bodies.sleep_body(ms)


class Huey(System):
    key = "huey"
    label = "Huey (1 thread)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.funcs: dict[str, Any] = {"noop": noop, "record": record}

    def batch(self, n: int) -> None:
        for i in range(n):  # Huey has no batch enqueue: one LPUSH per task
            noop(i)

    def one(self, func: str, i: int) -> None:
        self.funcs[func](i)

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        return [str(Path(sys.executable).parent / "huey_consumer"), "benchmarks.contenders.huey_app.huey",
                "-w", "1", "-k", "thread", "-q"]
