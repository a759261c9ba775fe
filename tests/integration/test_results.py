"""Result handles: what enqueue() returns, read against a real Redis and a real worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync

import fairque_django
from fairque_django.conf import get_config, get_queue
from tests.support import eventually, running_worker
from tests.testapp import tasks as t

pytestmark = pytest.mark.usefixtures("redis_client")


def serve() -> Any:
    return running_worker(get_config(), "worker-001")


def test_plain_task_result_comes_back_and_is_tenant_scoped() -> None:
    handle = fairque_django.enqueue(t.multiply(6, 7), user="user:1", on_commit=False)
    assert isinstance(handle, fairque_django.TaskResult)
    assert handle.status is fairque_django.TaskStatus.READY and handle.user_id == "user:1"
    assert handle.refresh().status == "READY"  # queued: no worker yet
    with serve():
        assert handle.wait(timeout=10) == 42
    assert handle.status == fairque_django.TaskStatus.SUCCESSFUL
    assert handle.return_value == 42 and handle.errors == [] and handle.attempts == 1
    assert handle.is_finished and handle.finished_at is not None
    # rebuilt from the id alone, by its tenant only
    again = fairque_django.result(handle.id, user="user:1")
    assert again.status == "SUCCESSFUL" and again.return_value == 42
    with pytest.raises(fairque_django.TaskNotFoundError):
        fairque_django.result(handle.id, user="user:2")
    assert get_queue().get_result(handle.id, user_id="user:2") is None
    with fairque_django.tenant("user:1"):
        assert fairque_django.result(handle.id).return_value == 42
    with fairque_django.tenant("user:2"), pytest.raises(fairque_django.TaskNotFoundError):
        fairque_django.result(handle.id)


def test_failed_task_raises_from_wait_with_its_error() -> None:
    handle = t.fails_once_for_good.apply_async(("boom",), user="user:2", on_commit=False)
    with serve(), pytest.raises(fairque_django.TaskFailedError, match="KeyError") as caught:
        handle.wait(timeout=10)
    assert caught.value.result is handle
    assert handle.status is fairque_django.TaskStatus.FAILED
    [error] = handle.errors
    assert error.error_type == "KeyError" and "boom" in error.message and "Traceback" in error.traceback
    with pytest.raises(fairque_django.TaskFailedError):
        _ = handle.return_value
    # the DLQ entry goes; the stored outcome stays
    get_queue().delete_dead([handle.id])
    assert handle.refresh().status == "FAILED"


def test_wait_times_out_and_return_value_is_not_ready() -> None:
    handle = t.multiply.apply_async((1, 2), user="user:3", on_commit=False)
    with pytest.raises(fairque_django.ResultTimeoutError, match="last status READY"):
        handle.wait(timeout=0.2)
    with pytest.raises(fairque_django.ResultNotReadyError):
        _ = handle.return_value


def test_running_status(redis_client: redis.Redis) -> None:
    handle = fairque_django.enqueue(t.waits_for("test:release"), user="user:1", on_commit=False)
    with serve():
        eventually(lambda: handle.refresh().status == "RUNNING", what="the task to start")
        redis_client.set("test:release", "1")
        assert handle.wait(timeout=10) == "released"


def test_store_result_false_keeps_nothing() -> None:
    handle = t.forgets.apply_async((5,), user="user:1", on_commit=False)
    assert not handle.stores_result
    with pytest.raises(fairque_django.FairQueueError, match="store_result=False"):
        handle.wait(timeout=1)
    with serve():
        eventually(lambda: get_queue().get_stats()["tasks_completed"] == 1, what="the task to run")
    with pytest.raises(fairque_django.TaskNotFoundError):
        handle.refresh()


def test_value_that_is_not_json_is_noted_not_fatal() -> None:
    handle = t.returns_object.apply_async(user="user:1", on_commit=False)
    with serve():
        eventually(lambda: handle.refresh().is_finished, what="the task to finish")
    assert handle.status == "SUCCESSFUL"
    with pytest.raises(fairque_django.SerializationError, match="not stored"):
        _ = handle.return_value


def test_enqueue_many_and_task_function_forms_return_handles() -> None:
    many = fairque_django.enqueue_many([t.multiply(2, 3), t.multiply(4, 5)], user="user:2", on_commit=False)
    with fairque_django.tenant("user:3"):
        delayed = t.multiply.delay(3, 3)
        enqueued = t.multiply.enqueue(1, 1)
    assert [h.user_id for h in [*many, delayed, enqueued]] == ["user:2", "user:2", "user:3", "user:3"]
    with serve():
        assert [h.wait(timeout=10) for h in many] == [6, 20]
        assert (delayed.wait(timeout=10), enqueued.wait(timeout=10)) == (9, 1)


def test_async_forms() -> None:
    async def scenario() -> list[Any]:
        first = await fairque_django.aenqueue(t.multiply(3, 4), user="user:1")
        [second] = await fairque_django.aenqueue_many([t.multiply(5, 5)], user="user:1")
        with fairque_django.tenant("user:2"):
            third = await t.multiply.aenqueue(2, 2)
        fourth = await t.multiply.aapply_async((1, 9), user="user:3")
        handles = [first, second, third, fourth]
        values = [await h.await_result(timeout=10) for h in handles]
        rebuilt = await fairque_django.aresult(first.id, user="user:1")
        return [*values, rebuilt.return_value, (await first.arefresh()).status]

    with serve():
        assert async_to_sync(scenario)() == [12, 25, 4, 9, 12, "SUCCESSFUL"]


def test_async_queue_handle() -> None:
    from fairque_django import AsyncTaskQueue

    config = get_config()
    task = t.multiply(7, 7)

    async def push_and_read() -> str:
        async with AsyncTaskQueue(config) as queue:
            await queue.push(task, "user:1")
            with pytest.raises(fairque_django.TaskNotFoundError):
                await queue.result(task.task_id, user_id="user:2")
            return (await queue.result(task.task_id, user_id="user:1")).status.value

    async def wait() -> Any:
        async with AsyncTaskQueue(config) as queue:
            handle = await queue.result(task.task_id, user_id="user:1")
            return await asyncio.wait_for(handle.await_result(timeout=10), 15)

    assert async_to_sync(push_and_read)() == "READY"
    with serve():
        assert async_to_sync(wait)() == 49


def test_core_queue_result_without_django_enqueue() -> None:
    queue = get_queue()
    task = t.multiply(8, 8)
    queue.push(task, "user:1")
    handle = queue.result(task.task_id, user_id="user:1")
    with serve():
        assert handle.wait(timeout=10) == 64
    with pytest.raises(fairque_django.TaskNotFoundError):
        queue.result("no-such-task", user_id="user:1")


def test_store_results_setting_off_keeps_only_what_tasks_ask_for(settings: Any) -> None:
    settings.FAIRQUE = {**settings.FAIRQUE, "queue": {**settings.FAIRQUE.get("queue", {}), "store_results": False}}
    plain = t.multiply.apply_async((2, 2), user="user:1", on_commit=False)
    asked = t.add.apply_async((2, 2), user="user:1", on_commit=False)  # @task(store_result=True)
    assert not plain.stores_result and asked.stores_result
    with serve():
        assert asked.wait(timeout=10) == 4
        eventually(lambda: get_queue().get_stats()["tasks_completed"] == 2, what="both tasks to run")
    with pytest.raises(fairque_django.TaskNotFoundError):
        plain.refresh()
