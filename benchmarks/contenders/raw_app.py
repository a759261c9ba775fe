"""The floor of a Redis queue: a minimal redis-py worker that BRPOPs a JSON message and runs its
task body, one task at a time, no acknowledgement. Throughput's ceiling (``raw``), and the
fairness benchmark's FIFO baseline (``fifo``: one list for every tenant, two workers).

Worker: ``python -m benchmarks.contenders.raw_app [--queue KEY]``. Messages are
``{"id": hex, "f": "noop" | "record" | "sleep" | "work", "a": [args]}`` (see :func:`message`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis

from benchmarks.contenders import bodies
from benchmarks.contenders.base import Contender, Job, System

QUEUE = "bench:raw"
FIFO_QUEUE = "fb:fifo"
BODIES = {"noop": bodies.noop_body, "record": bodies.record_body, "sleep": bodies.sleep_body,
          "work": bodies.work_body}


def message(func: str, *args: Any) -> str:
    """What a minimal queue stores: an id, the task's name and its arguments, as JSON."""
    return json.dumps({"id": uuid.uuid4().hex, "f": func, "a": list(args)}, separators=(",", ":"))


def worker_cmd(queue: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.contenders.raw_app", "--queue", queue]


class Raw(System):
    key = "raw"
    label = "raw redis-py BRPOP"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.client = redis.Redis.from_url(url)

    def batch(self, n: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for i in range(n):
            pipe.lpush(QUEUE, message("noop", i))
        pipe.execute()

    def one(self, func: str, i: int) -> None:
        self.client.lpush(QUEUE, message(func, i))

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        return worker_cmd(QUEUE)


class Fifo(Contender):
    name = "fifo"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.r = redis.Redis.from_url(url)

    def worker_cmd(self, label: str, tenants: list[str]) -> list[str]:
        return worker_cmd(FIFO_QUEUE)

    def warm_up(self) -> None:
        self.r.ping()

    def enqueue_batch(self, jobs: list[Job]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for job in jobs:
            pipe.lpush(FIFO_QUEUE, message("work", *job.args))
        pipe.execute()

    def enqueue_one(self, job: Job) -> None:
        self.r.lpush(FIFO_QUEUE, message("work", *job.args))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A minimal redis-py worker: BRPOP a JSON message, run its task body.")
    ap.add_argument("--queue", default=QUEUE)
    ap.add_argument("--timeout", type=float, default=1.0, help="BRPOP timeout (s)")
    args = ap.parse_args(argv)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    r = bodies.client()
    bodies.mark_ready()
    brpop, loads = r.brpop, json.loads
    while not stop:
        item = brpop([args.queue], timeout=args.timeout)
        if item is None:
            continue
        msg = loads(item[1])
        BODIES[msg["f"]](*msg["a"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
