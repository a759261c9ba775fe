"""Unique-key and dependency push cost: ``python3 benchmarks/bench_unique.py [--quick] [--private-server]``.

One task per push call (one round trip each), 100 tenants. Cases, interleaved in chunks of 100
pushes (case order rotated), median of the per-chunk time per push: a plain push; a push with a
unique key no task holds (the key is claimed); a push whose unique key names a queued task (drop:
answered with that task); a push with ``on_conflict="replace"`` of a queued task (its arguments
swapped); a push depending on one queued task (stored waiting). The figure of issue 16: a
unique-key push costs at most 1.2x a plain push.

The database (default DB 12, or $FAIRQUE_BENCH_REDIS_URL) is flushed before and after. The exit code
is 0 whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import redis

from benchmarks.harness import default_url
from benchmarks.harness.procs import Processes
from benchmarks.harness.server import bench_redis
from benchmarks.harness.stats import median
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue

perf = time.perf_counter
RATIO_TARGET = 1.2
TENANTS = 100
CHUNK = 100


def config(url: str) -> FairQueueConfig:
    return FairQueueConfig.from_dict({"redis": {"url": url}, "workers": [{"id": "w1", "assigned_users": ["t:*"]}],
                                      "queue": {"stats_prefix": "fqbenchuniq"}})


def bench(url: str, raw: redis.Redis, pushes: int, reps: int) -> dict[str, Any]:
    raw.flushdb()
    q = TaskQueue(config(url))
    payload = {"report": 42, "rows": list(range(10))}
    held = [Task.create(f"t:{u}", payload=payload, unique_key="held") for u in range(TENANTS)]
    anchors = [Task.create(f"t:{u}", payload=payload) for u in range(TENANTS)]
    q.push_batch(held + anchors)
    counter = iter(range(10**9))

    def plain(i: int) -> Task:
        return Task.create(f"t:{i % TENANTS}", payload=payload)

    def unique_new(i: int) -> Task:
        return Task.create(f"t:{i % TENANTS}", payload=payload, unique_key=f"report:{next(counter)}")

    def unique_drop(i: int) -> Task:
        return Task.create(f"t:{i % TENANTS}", payload=payload, unique_key="held")

    def unique_replace(i: int) -> Task:
        return Task.create(f"t:{i % TENANTS}", payload=payload, unique_key="held", on_conflict="replace")

    def dependent(i: int) -> Task:
        anchor = anchors[i % TENANTS]
        return Task.create(anchor.user_id, payload=payload, depends_on=[anchor])

    cases: dict[str, Callable[[int], Task]] = {
        "plain": plain, "unique key, new": unique_new, "unique key, drop": unique_drop,
        "unique key, replace": unique_replace, "depends on 1 queued task": dependent}
    per: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    gc.disable()
    try:
        for rep in range(reps):
            for c in range(pushes // CHUNK):
                order = names[(c + rep) % len(names):] + names[:(c + rep) % len(names)]
                for name in order:
                    make = cases[name]
                    batch = [make(i) for i in range(c * CHUNK, (c + 1) * CHUNK)]
                    t0 = perf()
                    for task in batch:
                        q.push(task)
                    per[name].append((perf() - t0) / CHUNK)
    finally:
        gc.enable()
    base = median(per["plain"])
    out = {}
    for name in names:
        us = median(per[name]) * 1e6
        out[name] = {"us_per_push": us, "ratio": us / base}
        target = f" (target <= {RATIO_TARGET}x)" if name.startswith("unique") else ""
        print(f"{name}: {us:.1f} us/push, {us / (base * 1e6):.2f}x of plain{target}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=default_url(12), help="Redis URL with its DB (flushed; default DB 12)")
    ap.add_argument("--quick", action="store_true", help="fewer pushes and repetitions (smoke run)")
    ap.add_argument("--private-server", action="store_true", help="start a throw-away redis-server")
    args = ap.parse_args(argv)
    procs = Processes()
    url = bench_redis(procs, args.redis_url, args.private_server)
    if url is None:
        return 0
    raw = redis.Redis.from_url(url)
    try:
        bench(url, raw, 1000 if args.quick else 5000, 1 if args.quick else 3)
    finally:
        raw.flushdb()
        procs.close()
    return 0
