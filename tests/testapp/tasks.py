"""Tasks used by the worker tests. Each records what happened in Redis (DB of the test run)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from fairque_django import Priority, task, xcom_pull, xcom_push, xcom_task
from fairque_django.core.context import running_task

_client: redis.Redis | None = None


def log_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["FAIRQUE_TEST_REDIS_URL"])
    return _client


LOG = "test:log"


def _me() -> str:
    running = running_task()
    return running.task.user_id or "?" if running else "?"


@task()
def record(tag: str, sleep: float = 0.0) -> str:
    """Append "<user>|<tag>" to the log list, optionally after sleeping."""
    log_client().rpush(LOG + ":start", f"{_me()}|{tag}")
    if sleep:
        time.sleep(sleep)
    log_client().rpush(LOG, f"{_me()}|{tag}")
    return tag


@task(max_retries=3)
def flaky(key: str, failures: int) -> int:
    """Fail the first ``failures`` attempts, then succeed."""
    n = int(log_client().incr(f"test:flaky:{key}"))
    if n <= failures:
        raise RuntimeError(f"flaky attempt {n}")
    log_client().rpush(LOG, f"{_me()}|flaky-ok-{n}")
    return n


@task(max_retries=1)
def always_fails(reason: str) -> None:
    raise ValueError(f"always fails: {reason}")


@task(timeout=0.3, max_retries=0)
def spins(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    log_client().rpush(LOG, f"{_me()}|spun")


@task()
def xcom_write(key: str, value: Any) -> None:
    xcom_push(key, value)


@task()
def xcom_read(key: str) -> None:
    value = xcom_pull(key, default="<missing>")
    log_client().rpush(LOG, f"{_me()}|{value}")


@xcom_task("auto_key")
def produce(n: int) -> dict[str, int]:
    return {"n": n}


@task(priority=Priority.CRITICAL)
def urgent(tag: str) -> None:
    log_client().rpush(LOG, f"{_me()}|urgent-{tag}")


@task(store_result=True)
def add(a: int, b: int) -> int:
    return a + b


@task()
def returns_object() -> object:
    return object()


@task()
async def async_record(tag: str, sleep: float = 0.0) -> str:
    import asyncio

    log_client().rpush(LOG + ":start", f"{_me()}|{tag}")
    await asyncio.sleep(sleep)
    log_client().rpush(LOG, f"{_me()}|{tag}")
    return tag


@task
def multiply(a: int, b: int) -> int:
    """A plain task (no options): its result is kept by default."""
    return a * b


@task(store_result=False)
def forgets(n: int) -> int:
    return n


@task(max_retries=0)
def fails_once_for_good(reason: str) -> None:
    raise KeyError(reason)


@task
def waits_for(key: str, timeout: float = 10.0) -> str:
    """Block until ``key`` exists in the test Redis (lets a test see the task RUNNING)."""
    log_client().rpush(LOG + ":start", f"{_me()}|waits")
    deadline = time.monotonic() + timeout
    while not log_client().exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} was never set")
        time.sleep(0.01)
    return "released"


@task
def reports_progress(key: str, fraction: float, message: str, timeout: float = 20.0) -> bool:
    """Report progress, say so in the log, then block until ``key`` exists in the test Redis."""
    from fairque_django import set_progress

    stored = set_progress(fraction, message)
    log_client().rpush(LOG + ":start", f"{_me()}|progress-{stored}")
    deadline = time.monotonic() + timeout
    while not log_client().exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} was never set")
        time.sleep(0.01)
    return stored


@task
async def async_reports_progress(key: str, fraction: float, message: str, timeout: float = 20.0) -> bool:
    """:func:`reports_progress` as an ``async def`` (``aset_progress``)."""
    import asyncio

    from fairque_django import aset_progress

    stored = await aset_progress(fraction, message)
    log_client().rpush(LOG + ":start", f"{_me()}|progress-{stored}")
    deadline = time.monotonic() + timeout
    while not log_client().exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} was never set")
        await asyncio.sleep(0.01)
    return stored


@task
def traced_inside() -> None:
    """Makes a span of its own (OpenTelemetry installed): it should be a child of the run span."""
    from opentelemetry import trace

    from fairque_django.core import tracing

    provider = tracing._provider or trace.get_tracer_provider()
    with provider.get_tracer("test").start_as_current_span("inside the task"):
        pass


@task
async def async_traced_inside() -> None:
    """:func:`traced_inside` as an ``async def`` (run on the async worker's loop)."""
    traced_inside.func()
