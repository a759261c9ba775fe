"""Stealing cost: ``python3 benchmarks/bench_steal.py [--quick] [--private-server]``.

A stealer (``thief``) may take only one tenant (``t:target``) of another worker's partition. Its
pop is measured with 10 and with 100,000 ready tenants in that partition (each case under its own
key prefix, pops interleaved in chunks, case order rotated, median of the repetitions); the figure
is the ratio of the two (issue 14: at most 1.5x). Each pop steals a task of ``t:target`` and is
acknowledged outside the timing. Also the Redis commands a steal runs (from INFO commandstats, exact
with ``--private-server``), and the cost of a push that makes a tenant ready with 0, 1 and 8
stealers keeping a copy of its partition's ready set (push cost grows with the stealers covering a
partition, not with its tenants).

The database (default DB 12, or $FAIRQUE_BENCH_REDIS_URL) is flushed before and after. The exit code
is 0 whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
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
TARGET = "t:target"
RATIO_TARGET = 1.5


def config(url: str, prefix: str, stealers: int = 1) -> FairQueueConfig:
    """w1 owns every ``t:*`` tenant; ``thief`` (and ``stealers - 1`` more) may steal only t:target."""
    workers: list[dict[str, Any]] = [{"id": "w1", "assigned_users": ["t:*"]}]
    workers += [{"id": f"thief{i or ''}", "assigned_users": [], "steal_targets": [TARGET]} for i in range(stealers)]
    return FairQueueConfig.from_dict({"redis": {"url": url}, "workers": workers, "queue": {"stats_prefix": prefix}})


def fill(q: TaskQueue, tenants: int, target_tasks: int) -> None:
    """One ready task for each of ``tenants`` tenants, then ``target_tasks`` for t:target."""
    for lo in range(0, tenants, 2000):
        q.push_batch([Task.create(f"t:{i:06d}", payload={"i": i}) for i in range(lo, min(tenants, lo + 2000))])
    q.push_batch([Task.create(TARGET, payload={"i": i}) for i in range(target_tasks)])


def commands_per_pop(raw: redis.Redis, q: TaskQueue) -> float:
    """Redis commands run inside the scripts per steal and its ack, from INFO commandstats (other
    clients of a shared server add theirs: use --private-server for an exact count)."""
    def calls() -> float:
        return sum(v["calls"] for k, v in raw.info("commandstats").items()
                   if not k.startswith(("cmdstat_info", "cmdstat_evalsha", "cmdstat_eval")))
    n = 50
    before = calls()
    for _ in range(n):
        task = q.pop("thief")
        assert task is not None and task.user_id == TARGET
        q.complete(task)
    return (calls() - before) / n


def bench_pop(url: str, raw: redis.Redis, sizes: list[int], pops: int, reps: int) -> dict[str, Any]:
    chunk = 50
    lat: dict[int, list[float]] = {s: [] for s in sizes}
    cmds: dict[int, list[float]] = {s: [] for s in sizes}
    for rep in range(reps):
        raw.flushdb()
        queues = {}
        for size in sizes:
            q = queues[size] = TaskQueue(config(url, f"fqsteal-{size}"))
            assert q.pop("thief") is None  # the thief's copies exist before the tenants arrive
            fill(q, size, pops + chunk + 200)
        for size in sizes:
            cmds[size].append(commands_per_pop(raw, queues[size]))
        times: dict[int, list[float]] = {s: [] for s in sizes}
        gc.collect()
        for r in range(pops // chunk + 1):
            order = sizes[(r + rep) % len(sizes):] + sizes[:(r + rep) % len(sizes)]
            for size in order:
                q = queues[size]
                sink = times[size]
                for _ in range(chunk):
                    t0 = perf()
                    task = q.pop("thief")
                    sink.append(perf() - t0)
                    assert task is not None and task.user_id == TARGET
                    q.complete(task)
            if r == 0:  # warm-up round
                times = {s: [] for s in sizes}
        for size in sizes:
            lat[size].append(statistics.fmean(times[size]))
    raw.flushdb()
    ref = sizes[0]
    out: dict[str, Any] = {}
    for size in sizes:
        mean = median(lat[size]) * 1e6
        out[size] = {"mean_us": mean, "commands_per_pop_and_ack": median(cmds[size])}
    for size in sizes:
        ratio = out[size]["mean_us"] / out[ref]["mean_us"]
        out[size]["ratio"] = ratio
        verdict = "" if size == ref else f", ratio {ratio:.2f}x (target <= {RATIO_TARGET}x) " + (
            "PASS" if ratio <= RATIO_TARGET else "MISS")
        print(f"steal pop, {size:>7,} ready tenants in the partition (1 stealable): "
              f"{out[size]['mean_us']:.1f} us/pop, {out[size]['commands_per_pop_and_ack']:.1f} Redis commands "
              f"per pop + ack{verdict}", flush=True)
    return out


def bench_push(url: str, raw: redis.Redis, n: int, reps: int) -> dict[str, Any]:
    """Push of a task whose tenant joins the rotation (the case that updates steal copies)."""
    cases = (0, 1, 8)
    per: dict[int, list[float]] = {k: [] for k in cases}
    for rep in range(reps):
        raw.flushdb()
        queues = {}
        for k in cases:
            q = queues[k] = TaskQueue(config(url, f"fqstealpush-{k}", max(k, 1)))
            for i in range(k):  # the stealers' copies exist
                assert q.pop(f"thief{i or ''}") is None
            if k == 0:  # no stealer synced: nobody keeps a copy
                raw.delete(q.keys.stealers("w1"))
        for r in range(10):
            order = list(cases[(r + rep) % 3:] + cases[:(r + rep) % 3])
            for k in order:
                q = queues[k]
                tasks = [Task.create(TARGET if j % 2 else f"t:{r}:{j}", payload={}) for j in range(n // 10)]
                t0 = perf()
                for t in tasks:
                    q.push(t)
                per[k].append((perf() - t0) / len(tasks))
    raw.flushdb()
    out = {}
    base = median(per[0]) * 1e6
    for k in cases:
        us = median(per[k]) * 1e6
        out[k] = {"us_per_push": us, "ratio": us / base}
        print(f"push (half the tenants join the rotation, half steal-target), {k} stealer(s) covering the "
              f"partition: {us:.1f} us/push ({us / base:.2f}x of no stealer)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=default_url(12), help="Redis URL with its DB (flushed; default DB 12)")
    ap.add_argument("--quick", action="store_true", help="fewer pops and repetitions (smoke run)")
    ap.add_argument("--private-server", action="store_true", help="start a throw-away redis-server")
    args = ap.parse_args(argv)
    procs = Processes()
    url = bench_redis(procs, args.redis_url, args.private_server)
    if url is None:
        return 0
    raw = redis.Redis.from_url(url)
    pops, reps = (500, 1) if args.quick else (2000, 3)
    try:
        bench_pop(url, raw, [10, 100_000], pops, reps)
        bench_push(url, raw, 1000 if args.quick else 3000, reps)
    finally:
        raw.flushdb()
        procs.close()
    return 0
