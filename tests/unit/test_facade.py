"""The queues' public methods are written once per way of driving (core/facade.py); each queue's
``help()`` still says what its own method does."""

from __future__ import annotations

import inspect

import pytest

from fairque_django.core.aio import AsyncTaskQueue
from fairque_django.core.aio_sharded import AsyncShardedTaskQueue
from fairque_django.core.facade import AsyncQueueFacade, QueueFacade
from fairque_django.core.queue import TaskQueue
from fairque_django.core.sharded import SHARDED_DOCS, ShardedTaskQueue


def operations(facade: type) -> list[str]:
    return [name for name, member in vars(facade).items() if inspect.isfunction(member) and not name.startswith("_")]


@pytest.mark.parametrize(("cls", "facade", "start"), [
    (AsyncTaskQueue, AsyncQueueFacade, "Async :meth:`TaskQueue.{name}`"),
    (ShardedTaskQueue, QueueFacade, "As :meth:`TaskQueue.{name}`"),
    (AsyncShardedTaskQueue, AsyncQueueFacade, "Async :meth:`ShardedTaskQueue.{name}`."),
])
def test_each_queue_s_methods_say_what_they_do_there(cls: type, facade: type, start: str) -> None:
    assert len(operations(facade)) > 50
    for name in operations(facade):
        doc = inspect.getdoc(getattr(cls, name))
        assert doc is not None and doc.startswith(start.format(name=name)), (cls.__name__, name, doc)


def test_the_plain_queue_s_docstrings_are_the_facade_s_and_the_sharded_notes_its_own() -> None:
    for name in operations(QueueFacade):
        assert getattr(TaskQueue, name) is vars(QueueFacade)[name]
        doc = inspect.getdoc(getattr(TaskQueue, name))
        assert doc and not doc.startswith(("As ", "Async ")), name
    assert set(SHARDED_DOCS) < set(operations(QueueFacade))
    assert inspect.getdoc(ShardedTaskQueue.take_handed) == \
        "As :meth:`TaskQueue.take_handed`: never anything (a sharded prefix does not park)."
    assert inspect.getdoc(ShardedTaskQueue.extend) == "As :meth:`TaskQueue.extend`."


def test_a_documented_copy_is_the_same_method() -> None:
    """Only the docstring differs: same code, defaults, keyword defaults and coroutine-ness."""
    for sharded, plain in [(ShardedTaskQueue, TaskQueue), (AsyncShardedTaskQueue, AsyncTaskQueue)]:
        for name in operations(QueueFacade if plain is TaskQueue else AsyncQueueFacade):
            copy, original = getattr(sharded, name), getattr(plain, name)
            assert copy is not original and copy.__code__ is original.__code__, name
            assert inspect.signature(copy) == inspect.signature(original), name
            assert inspect.iscoroutinefunction(copy) == inspect.iscoroutinefunction(original), name
            assert copy.__qualname__ == f"{sharded.__qualname__}.{name}"
