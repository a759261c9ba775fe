"""RQ as a contender: its job functions (``rq worker`` imports them by path in its work horse) and
its producers.

Throughput: one queue, ``rq worker -w rq.worker.SimpleWorker bench``. Fairness: one queue per
tenant, ``rq worker --dequeue-strategy round_robin`` x2 with ``--worker-class
rq.worker.SimpleWorker`` (runs jobs in the worker process, like every other contender); RQ's
default forking ``Worker`` costs ~80 ms per job on a 2-core machine (``--rq-fork`` measures it).
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from benchmarks.contenders import bodies
from benchmarks.contenders.base import Contender, Job, System

QUEUE = "bench"


def noop(i: int = 0) -> None:
    bodies.noop_body(i)


def record(i: int) -> None:
    bodies.record_body(i)


def sleep_ms(ms: float = 10.0) -> None:
    bodies.sleep_body(ms)


def work(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    bodies.work_body(tenant, idx, t_enq, sleep_ms)


class RQ(System):
    """``rq worker -w rq.worker.SimpleWorker``; ``as_users``: plain ``rq worker`` (RQ's default
    forking worker, default logging) and ``enqueue_many`` in calls of 1,000."""

    key = "rq"
    label = "RQ SimpleWorker"

    def __init__(self, url: str, *, as_users: bool = False, quiet: bool = False) -> None:
        super().__init__(url)
        from rq import Queue

        self.conn = redis.Redis.from_url(url)
        self.q = Queue(QUEUE, connection=self.conn)
        self.Queue = Queue
        self.burst = False
        self.as_users, self.quiet = as_users, quiet
        if as_users:
            self.key, self.label = "rq-worker", "rq worker (default: forks per job)"

    def batch(self, n: int) -> None:
        prep = self.Queue.prepare_data
        chunk = 1_000 if self.as_users else n  # else one pipeline
        for start in range(0, n, chunk):
            self.q.enqueue_many([prep(noop, (i,)) for i in range(start, min(n, start + chunk))])

    def one(self, func: str, i: int) -> None:
        self.q.enqueue(globals()[func], i)

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        self.burst = burst
        cmd = [str(Path(sys.executable).parent / "rq"), "worker", "-u", self.url]
        if not self.as_users:
            cmd += ["-w", "rq.worker.SimpleWorker"]
        if not self.as_users or self.quiet:
            cmd += ["--logging_level", "WARNING", "-q"]
        if burst:
            cmd.append("--burst")
        return [*cmd, QUEUE]

    @property
    def exits_by_itself(self) -> bool:
        return self.burst


class RQTenants(Contender):
    name = "rq"

    def __init__(self, url: str, fork: bool = False) -> None:
        super().__init__(url)
        from rq import Queue

        self.fork = fork
        if fork:
            self.name = "rq-fork"
        self.r = redis.Redis.from_url(url)
        self.Queue = Queue
        self.queues: dict[str, Any] = {}

    def q(self, name: str) -> Any:
        if name not in self.queues:
            self.queues[name] = self.Queue(name, connection=self.r)
        return self.queues[name]

    def worker_cmd(self, label: str, tenants: list[str]) -> list[str]:
        names = [t.replace(":", "-") for t in tenants]
        extra = [] if self.fork else ["--worker-class", "rq.worker.SimpleWorker"]
        return [sys.executable, "-m", "rq.cli", "worker", *names, "-u", self.url, "--dequeue-strategy",
                "round_robin", "--logging_level", "WARNING", *extra,
                "-n", f"{label}-{os.getpid()}-{int(time.time() * 1000)}"]

    def ready(self) -> int:
        return int(self.r.scard("rq:workers"))

    def warm_up(self) -> None:
        self.r.ping()

    def enqueue_batch(self, jobs: list[Job]) -> None:
        by_queue: dict[str, list[Any]] = defaultdict(list)
        for j in jobs:
            by_queue[j.queue_name].append(self.Queue.prepare_data(work, args=j.args))
        for name, datas in by_queue.items():
            self.q(name).enqueue_many(datas)

    def enqueue_one(self, job: Job) -> None:
        self.q(job.queue_name).enqueue(work, *job.args)
