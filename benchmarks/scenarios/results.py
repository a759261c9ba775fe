"""What keeping results costs: ``python3 benchmarks/bench_results.py [N] [REDIS_URL]``.

Drains N pre-queued no-op function tasks with one default-mode Worker (prefetching, one slot), with
their outcomes kept (the default) and with ``store_result=False``, in interleaved repetitions on the
same Redis database (flushed: give a spare one, default DB 10 or $FAIRQUE_BENCH_REDIS_URL), and
prints tasks/s and the ratio.
"""

from __future__ import annotations

import argparse
import threading
import time

import redis

from benchmarks.harness import default_url
from benchmarks.harness.server import require_redis
from benchmarks.harness.stats import median
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task
from fairque_django.core.worker import Worker


@task(name="ab.noop")
def noop(i: int) -> int:
    return i


def once(cfg: FairQueueConfig, r: redis.Redis, n: int, store: bool) -> tuple[float, float]:
    """Tasks/s of one drain, and the CPU time this process (the worker's) spent per task, in µs."""
    r.flushdb()
    q = TaskQueue(cfg)
    tasks = []
    for i in range(n):
        t = noop.create_task((i,), metadata=None if store else {"store_result": False})
        t.user_id = f"t:{i % 50}"
        tasks.append(t)
    q.push_batch(tasks)
    w = Worker(cfg, worker_id="w", install_signal_handlers=False, concurrency=1)
    th = threading.Thread(target=w.start, daemon=True)
    t0, c0 = time.perf_counter(), time.process_time()
    th.start()
    while q.get_stats()["tasks_completed"] < n:
        time.sleep(0.01)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    w.stop()
    th.join(10)
    if store:
        assert r.exists(q.keys.result(tasks[0].user_id or "", tasks[0].task_id)), "no result was kept"
    return n / dt, cpu / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=5000, help="tasks per drain (default 5,000)")
    ap.add_argument("url", nargs="?", default=default_url(10), help="Redis URL with its DB (flushed)")
    ap.add_argument("--quick", action="store_true", help="1,000 tasks, 2 repetitions (smoke run)")
    args = ap.parse_args(argv)
    reps = 4
    if args.quick:
        args.n, reps = 1000, 2
    problem = require_redis(args.url)
    if problem:
        print(f"benchmark skipped: {problem}")
        return 0
    cfg = FairQueueConfig.from_dict({"redis": {"url": args.url}, "workers": [
        {"id": "w", "assigned_users": ["*"], "max_concurrent_tasks": 1, "poll_interval_seconds": 0.5}],
        "queue": {"metrics": True}})
    r = redis.Redis.from_url(args.url)
    res: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(reps):
        for store in (False, True):
            rate, per_task = once(cfg, r, args.n, store)
            res[store].append(rate)
            cpu[store].append(per_task)
            print(f"rep {rep} store={store}: {rate:,.0f}/s, worker CPU {per_task:.0f} us/task", flush=True)
    r.flushdb()
    a, b = median(res[False]), median(res[True])
    print(f"median without results {a:,.0f}/s, with results {b:,.0f}/s, ratio {b/a:.3f}; "
          f"worker CPU per task {median(cpu[False]):.0f} / {median(cpu[True]):.0f} us")
    return 0
