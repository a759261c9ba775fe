"""Hostile task input gets typed errors: arguments nested too deeply to encode (push) or a body
nested too deeply to decode (pop: dead-lettered as corrupt), and tenant ids with invisible format
characters (push, batch push, the async queue)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fairque_django.core.aio import AsyncTaskQueue
from fairque_django.core.errors import SerializationError, TaskValidationError
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue

DEPTH = 50_000


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(worker_id="w1"))


def test_arguments_nested_too_deeply_are_a_validation_error_and_nothing_is_written(q: TaskQueue) -> None:
    task = Task.create(user_id="a", func_name="f", args=[nested(DEPTH)])
    with pytest.raises(SerializationError, match="nested too deeply") as caught:
        q.push(task)
    assert isinstance(caught.value, TaskValidationError)
    with pytest.raises(SerializationError, match="nested too deeply"):
        q.push_batch([Task.create(user_id="a"), Task.create(user_id="a", payload={"x": nested(DEPTH)})])
    assert q.get_stats()["tasks_pushed"] == 0


def test_a_body_nested_too_deeply_is_dead_lettered_as_corrupt_on_pop(q: TaskQueue) -> None:
    task = Task.create(user_id="a")
    q.push(task)
    q.client.hset(q.keys.task(task.task_id), "b", "[" * DEPTH + "]" * DEPTH)  # written by someone else
    assert q.pop("w1") is None
    dead = q.get_dead(task.task_id)
    assert dead is not None and dead.error_type == "CorruptTaskError", dead
    assert "nested too deeply" in dead.error


@pytest.mark.parametrize("char", ["\u200b", "\u202e", "\ufeff"])
def test_tenant_ids_with_invisible_format_characters_are_refused_on_push(q: TaskQueue, make_config: Any,
                                                                         char: str) -> None:
    user = f"acme{char}corp"
    with pytest.raises(TaskValidationError, match=f"U\\+{ord(char):04X}"):
        q.push(Task.create(user_id=user))
    with pytest.raises(TaskValidationError, match=f"U\\+{ord(char):04X}"):
        q.push(Task.create(user_id="a"), user_id=user)
    with pytest.raises(TaskValidationError, match=f"U\\+{ord(char):04X}"):
        q.push_batch([Task.create(user_id="a"), Task.create(user_id=user)])

    async def push_async() -> None:
        async with AsyncTaskQueue(make_config(worker_id="w1")) as aq:
            await aq.push(Task.create(user_id=user))

    with pytest.raises(TaskValidationError, match=f"U\\+{ord(char):04X}"):
        asyncio.run(push_async())
    assert q.get_stats()["tasks_pushed"] == 0
