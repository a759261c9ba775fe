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
    """``huey_consumer -k thread -w N``; ``as_users``: the command line as documented
    (``-w 1`` alone: thread workers are the default) with the consumer's default logging."""

    key = "huey"
    label = "Huey (1 thread)"

    def __init__(self, url: str, workers: int = 1, *, as_users: bool = False, quiet: bool = False) -> None:
        super().__init__(url)
        self.funcs: dict[str, Any] = {"noop": noop, "record": record}
        self.workers, self.as_users, self.quiet = workers, as_users, quiet
        if as_users:
            self.key = f"huey-w{workers}"
            self.label = f"huey_consumer -w {workers}" if workers == 1 else f"huey_consumer -k thread -w {workers}"

    def batch(self, n: int) -> None:
        for i in range(n):  # Huey has no batch enqueue: one LPUSH per task
            noop(i)

    def one(self, func: str, i: int) -> None:
        self.funcs[func](i)

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        cmd = [str(Path(sys.executable).parent / "huey_consumer"), "benchmarks.contenders.huey_app.huey",
               "-w", str(self.workers)]
        if not self.as_users or self.workers > 1:
            cmd += ["-k", "thread"]
        if not self.as_users or self.quiet:
            cmd.append("-q")
        return cmd
