"""Task functions of the reliability suite. Each records what happened in the log Redis
(``FAIRQUE_REL_LOG_URL``, default the shared test database), never in the queue's Redis, so the
records survive a restart of the queue's server."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import redis

from fairque_django import task, xcom_pull, xcom_push
from fairque_django.core.context import running_task

RUNS = "rel:runs"  # HASH task id -> completed executions of the function body
STARTS = "rel:starts"  # HASH task id -> started executions
EVENTS = "rel:events"  # LIST free-form records
FAIL_PERCENT = 5

_client: redis.Redis | None = None


def log_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("FAIRQUE_REL_LOG_URL") or os.environ["FAIRQUE_TEST_REDIS_URL"])
    return _client


def _current() -> Any:
    running = running_task()
    assert running is not None, "only meant to run inside a worker"
    return running.task


@task()
def work(n: int, sleep: float = 0.0) -> int:
    """Record the start and the end of one execution of this task."""
    tid = _current().task_id
    log_client().hincrby(STARTS, tid, 1)
    if sleep:
        time.sleep(sleep)
    log_client().hincrby(RUNS, tid, 1)
    return n


SPANS = "rel:spans"  # LIST "S|task id|user|pid|time" at a start, "E|..." at the end of a run


@task()
def span(sleep: float = 0.0) -> None:
    """Record the start and the end of one run (with the process id and the time) in SPANS."""
    current = _current()
    me = f"{current.task_id}|{current.user_id}|{os.getpid()}"
    log_client().rpush(SPANS, f"S|{me}|{time.time():.6f}")
    if sleep:
        time.sleep(sleep)
    log_client().rpush(SPANS, f"E|{me}|{time.time():.6f}")


@task()
def trace(sleep: float = 0.0) -> None:
    """Record ``user|worker|start time`` in EVENTS at the start, then sleep ``sleep``."""
    current = _current()
    log_client().rpush(EVENTS, f"{current.user_id}|{current.worker_id}|{time.time():.6f}")
    if sleep:
        time.sleep(sleep)


@task()
def slow_first(seconds: float) -> None:
    """Sleep ``seconds`` on the first start of this task id only (a handed-back task is quick)."""
    tid = _current().task_id
    if log_client().hincrby(STARTS, tid, 1) == 1:
        time.sleep(seconds)
    log_client().hincrby(RUNS, tid, 1)


def fails_at(task_id: str, retry: int) -> bool:
    """Deterministic 5% failure per (task id, retry number)."""
    digest = hashlib.sha256(f"{task_id}:{retry}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < FAIL_PERCENT


@task(max_retries=2)
def maybe_fails(n: int) -> int:
    """Fail deterministically by (task id, retry number); record successful runs."""
    current = _current()
    if fails_at(current.task_id, current.retry_count):
        raise RuntimeError(f"planned failure of {current.task_id} at retry {current.retry_count}")
    log_client().hincrby(RUNS, current.task_id, 1)
    return n


@task()
def xcom_spy(victim: str, key: str) -> None:
    """Try to read and write another tenant's XCom value from inside a running task."""
    me = _current().user_id
    for action in ("pull", "push"):
        try:
            if action == "pull":
                value = xcom_pull(key, user_id=victim)
                outcome = f"read:{value!r}"
            else:
                xcom_push(key, "overwritten", user_id=victim)
                outcome = "wrote"
        except Exception as exc:  # the expected outcome: a typed error
            outcome = f"error:{type(exc).__name__}"
        log_client().rpush(EVENTS, f"{me}|{action}|{outcome}")


@task()
def xcom_reader(key: str) -> None:
    """Read ``key`` in the running task's own scope and record what it saw."""
    value = xcom_pull(key, default="<missing>")
    log_client().rpush(EVENTS, f"{_current().user_id}|{key}|{value}")


@task(store_result=True)
def compute(n: int) -> dict[str, Any]:
    """A task whose result is stored (per user) for TaskQueue.get_result."""
    return {"n": n, "secret": f"result-of-{_current().user_id}"}


@task(max_retries=0, store_result=True)
def node(n: int, fail: bool = False) -> int:
    """A node of a dependency graph: records its run, then fails for good when asked to."""
    tid = _current().task_id
    log_client().hincrby(RUNS, tid, 1)
    if fail:
        raise RuntimeError(f"node {n} fails")
    return n
