"""What keeping results costs: ``python3 benchmarks/bench_results.py [N] [REDIS_URL]``.

Drains N pre-queued no-op function tasks with one default-mode Worker (prefetching, one slot), with
their outcomes kept (the default) and with ``store_result=False``, in interleaved repetitions on the
same Redis database (flushed: give a spare one, default DB 10), and prints tasks/s and the ratio.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task
from fairque_django.core.worker import Worker


@task(name="ab.noop")
def noop(i: int) -> int:
    return i

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
URL = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/10"
cfg = FairQueueConfig.from_dict({"redis": {"url": URL}, "workers": [
    {"id": "w", "assigned_users": ["*"], "max_concurrent_tasks": 1, "poll_interval_seconds": 0.5}],
    "queue": {"metrics": True}})
r = redis.Redis.from_url(URL)

def once(store: bool) -> float:
    """Tasks/s of one drain."""
    r.flushdb()
    q = TaskQueue(cfg)
    tasks = []
    for i in range(N):
        t = noop.create_task((i,), metadata=None if store else {"store_result": False})
        t.user_id = f"t:{i % 50}"
        tasks.append(t)
    q.push_batch(tasks)
    w = Worker(cfg, worker_id="w", install_signal_handlers=False, concurrency=1)
    th = threading.Thread(target=w.start, daemon=True)
    t0 = time.perf_counter()
    th.start()
    while q.get_stats()["tasks_completed"] < N:
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    w.stop()
    th.join(10)
    if store:
        assert r.exists(q.keys.result(tasks[0].user_id or "", tasks[0].task_id)), "no result was kept"
    return N / dt

res: dict[bool, list[float]] = {True: [], False: []}
for rep in range(4):
    for store in (False, True):
        res[store].append(once(store))
        print(f"rep {rep} store={store}: {res[store][-1]:,.0f}/s", flush=True)
a, b = statistics.median(res[False]), statistics.median(res[True])
print(f"median without results {a:,.0f}/s, with results {b:,.0f}/s, ratio {b/a:.3f}")
