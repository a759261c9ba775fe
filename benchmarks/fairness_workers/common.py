"""What every contender's task does, and the records the benchmark reads back.

The Redis URL comes from ``FB_REDIS_URL`` and the worker's label from ``FB_WORKER``; both are
set by ``bench_fairness.py`` for the worker processes it starts.  The client is created
lazily per process id, so RQ's forked work horses never share their parent's socket.
"""

from __future__ import annotations

import os
import time

import redis

RECORDS = "fb:rec"
"""LIST of one tab-separated record per executed task (RPUSH, in completion order)."""
READY = "fb:ready"
"""SET of worker labels that finished starting up."""

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    global _client
    pid = os.getpid()
    if _client is None or _client[0] != pid:
        _client = (pid, redis.Redis.from_url(os.environ["FB_REDIS_URL"]))
    return _client[1]


def worker_label() -> str:
    return os.environ.get("FB_WORKER", f"pid{os.getpid()}")


def run_task(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    """The task body: note the start time, sleep ``sleep_ms``, record one line."""
    start = time.time()
    time.sleep(sleep_ms / 1000.0)
    end = time.time()
    line = f"{tenant}\t{idx}\t{t_enq:.6f}\t{start:.6f}\t{end:.6f}\t{worker_label()}"
    client().rpush(RECORDS, line)


def mark_ready(label: str | None = None) -> None:
    client().sadd(READY, label or worker_label())
