"""Schedule tick cost: ``python3 benchmarks/bench_schedules.py [--seconds S] [--workers N]``.

N schedulers (one per simulated worker, each on its own ``TaskQueue``, as in N ``runfairworker``
processes) run their loop for S seconds with 10 schedules of which none is due (hourly cron, every
3600 s), then with the same 10 plus one that ticks every second. Every request a scheduler's queue
sends is counted (one request = one round trip) and reported per worker per second, with the
ticks fired. The database (default DB 12, or $FAIRQUE_BENCH_REDIS_URL) is flushed before and after.
The exit code is 0 whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import redis

from benchmarks.harness import default_url
from benchmarks.harness.server import require_redis
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task
from fairque_django.core.schedule import Schedule
from fairque_django.core.scheduler import Scheduler

TARGET = 1.0  # round trips per worker per second when nothing is due (issue 16)


@task
def noop() -> None:
    """The scheduled task (never run here)."""


class Counting:
    """The retry policy of a queue's transport, counting every request it is asked to send."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.requests = 0

    def call(self, fn: Any, args: Any) -> Any:
        self.requests += 1
        return self.policy.call(fn, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def idle_schedules() -> list[Schedule]:
    hourly = [Schedule(name=f"hourly-{i}", task=noop.name, cron=f"{i} * * * *", user="t:1") for i in range(5)]
    slow = [Schedule(name=f"every-hour-{i}", task=noop.name, every=3600, user="t:1") for i in range(5)]
    return [*hourly, *slow]


def measure(url: str, workers: int, seconds: float, schedules: list[Schedule]) -> tuple[float, int]:
    """(round trips per worker per second, ticks fired in all)."""
    config = FairQueueConfig.from_dict({"redis": {"url": url}, "workers": [{"id": "w", "assigned_users": ["*"]}]})
    redis.Redis.from_url(url).flushdb()
    policies, schedulers = [], []
    for i in range(workers):
        queue = TaskQueue(config, redis.Redis.from_url(url))
        counting = Counting(queue.transport.policy)
        queue.transport.policy = counting  # type: ignore[assignment]
        policies.append(counting)
        schedulers.append(Scheduler(queue, schedules, worker_id=f"w{i}"))
    for s in schedulers:
        s.start()
    time.sleep(2)  # the start-up reads and the first look for stale claims are not the steady state
    before = sum(p.requests for p in policies)
    time.sleep(seconds)
    after = sum(p.requests for p in policies)
    for s in schedulers:
        s.stop()
    fired = sum(len(s.fired) for s in schedulers)
    return (after - before) / workers / seconds, fired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)
    url = default_url(12)
    reason = require_redis(url)
    if reason is not None:
        print(f"bench_schedules: {reason}")
        return 0
    idle, _ = measure(url, args.workers, args.seconds, idle_schedules())
    every_second = Schedule(name="every-second", task=noop.name, every=1, user="t:1")
    busy, fired = measure(url, args.workers, args.seconds, [*idle_schedules(), every_second])
    redis.Redis.from_url(url).flushdb()
    print(f"schedule tick cost, {args.workers} workers, {args.seconds:g} s, 10 schedules:")
    print(f"  nothing due:            {idle:.3f} round trips per worker per second (target <= {TARGET:g})")
    print(f"  + a 1-second schedule:  {busy:.3f} round trips per worker per second "
          f"({fired} ticks fired in all: one claim attempt per worker per tick, 3 more round trips for "
          "the worker that wins it)")
    return 0
