"""Django-framework tasks (``django.tasks`` / the ``django_tasks`` backport) run by fairque workers
in tests/django/test_backend.py. Workers import this module through ``FAIRQUE["TASK_MODULES"]``.

Each task and the signal receivers below record what happened in Redis (the test run's DB), so
tests can observe a worker subprocess.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis

from fairque_django.compat import TaskContext, TaskResult, task, task_finished, task_started
from fairque_django.core.context import current_user

LOG = "test:dtasks"
SIGNALS = "test:dtasks:signals"
CONTEXT = "test:dtasks:context"

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["FAIRQUE_TEST_REDIS_URL"])
    return _client


def _me() -> str:
    return current_user(required=False) or "?"


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails")
def record(tag: str) -> str:
    client().rpush(LOG, f"{_me()}|{tag}")
    return tag


@task()
def fails(reason: str) -> None:
    raise ValueError(f"django task fails: {reason}")


@task(takes_context=True)
def with_context(context: TaskContext[Any, Any], tag: str) -> dict[str, Any]:
    """Fails on its first attempt, succeeds on the second; records what the context said."""
    result = context.task_result
    client().rpush(CONTEXT, f"{context.attempt}|{result.id}|{result.status}|{_me()}")
    if context.attempt < 2:
        raise RuntimeError("first attempt fails")
    return {"attempt": context.attempt, "tag": tag}


@task()
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    client().rpush(LOG, f"{_me()}|async-{x}")
    return x * 2


@task()
def returns_object() -> Any:
    return object()


def _on_signal(name: str, task_result: TaskResult[Any, Any]) -> None:
    client().rpush(SIGNALS, f"{name}|{task_result.id}|{task_result.status}|{task_result.attempts}")


def on_started(sender: type, task_result: TaskResult[Any, Any], **kwargs: Any) -> None:
    _on_signal("started", task_result)


def on_finished(sender: type, task_result: TaskResult[Any, Any], **kwargs: Any) -> None:
    _on_signal("finished", task_result)


task_started.connect(on_started, dispatch_uid="tests.testapp.django_tasks.started")
task_finished.connect(on_finished, dispatch_uid="tests.testapp.django_tasks.finished")
