"""Task bodies shared by every contender, and the Redis keys the benchmarks read back.

Worker processes get their settings from the environment (set by the harness's launcher):

``BENCH_REDIS_URL``  the Redis to use (default ``redis://127.0.0.1:6379/8``)
``BENCH_WORKER``     the worker's label (in the fairness records and the ready set)
``BENCH_TOTAL``      how many ``noop`` completions make a run (stamps :data:`LAST` when reached)

The client is created lazily per process id, so RQ's forked work horses never share their
parent's socket.
"""

from __future__ import annotations

import os
import threading
import time

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/8"

DONE = "bench:done"    # INCR once per completed noop task
FIRST = "bench:first"  # time.time() when the first noop task completed
LAST = "bench:last"    # time.time() when the BENCH_TOTAL-th noop task completed
LAT = "bench:lat"      # HASH task number -> time.time() when the record task started
SLEPT = "bench:slept"  # INCR once per completed sleep task
RECORDS = "fb:rec"     # LIST of one tab-separated record per executed ``work`` task (completion order)
READY = "fb:ready"     # SET of worker labels that finished starting up

_client: tuple[int, redis.Redis] | None = None
_lock = threading.Lock()


def url() -> str:
    return os.environ.get("BENCH_REDIS_URL", DEFAULT_URL)


def client() -> redis.Redis:
    """The task bodies' own client (one per process, thread-safe connection pool)."""
    global _client
    pid = os.getpid()
    if _client is None or _client[0] != pid:
        with _lock:
            if _client is None or _client[0] != pid:
                _client = (pid, redis.Redis.from_url(url()))
    return _client[1]


def worker_label() -> str:
    return os.environ.get("BENCH_WORKER", f"pid{os.getpid()}")


_TOTAL = int(os.environ.get("BENCH_TOTAL", "0") or 0)


def noop_body(i: int = 0) -> None:
    """A no-op task that makes its completion observable: one INCR round trip."""
    r = client()
    n = r.incr(DONE)
    if n == 1:
        r.set(FIRST, repr(time.time()))
    if n == _TOTAL:
        r.set(LAST, repr(time.time()))


def record_body(i: int) -> None:
    """Store when this task started (the producer stored when it enqueued it)."""
    started = time.time()
    client().hset(LAT, str(i), repr(started))


def sleep_body(ms: float = 10.0) -> None:
    time.sleep(ms / 1000.0)
    client().incr(SLEPT)


def work_body(tenant: str, idx: int, t_enq: float, sleep_ms: float, slot: bool = False) -> None:
    """The fairness task: note the start time, sleep ``sleep_ms``, record one line (with
    ``slot``, a seventh field: the name of the thread that ran it, i.e. the worker's slot)."""
    start = time.time()
    time.sleep(sleep_ms / 1000.0)
    end = time.time()
    line = f"{tenant}\t{idx}\t{t_enq:.6f}\t{start:.6f}\t{end:.6f}\t{worker_label()}"
    if slot:  # the slot-gap measure: the record goes out from a thread of its own (record_later)
        record_later(f"{line}\t{threading.current_thread().name}")
        return
    client().rpush(RECORDS, line)


# Records kept in the worker process and written by one thread every RECORD_FLUSH_SECONDS: a slot's
# gap between two tasks (limits_caps) then measures the worker, not the record's own round trip
# (an RPUSH after the end stamp was in every gap). The benchmark waits for the records it needs.
RECORD_FLUSH_SECONDS = 0.02
_pending: list[str] = []
_flusher: tuple[int, threading.Thread] | None = None


def record_later(line: str) -> None:
    """Queue one record for the flush thread (started once per process)."""
    global _flusher
    with _lock:
        _pending.append(line)
        if _flusher is None or _flusher[0] != os.getpid():
            thread = threading.Thread(target=_flush_records, name="bench-records", daemon=True)
            _flusher = (os.getpid(), thread)
            thread.start()


def _flush_records() -> None:
    while True:
        time.sleep(RECORD_FLUSH_SECONDS)
        with _lock:
            lines = _pending[:]
            del _pending[:]
        if lines:
            client().rpush(RECORDS, *lines)


def mark_ready(label: str | None = None) -> None:
    client().sadd(READY, label or worker_label())
