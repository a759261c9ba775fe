"""Progress: ``set_progress`` inside a task, ``handle.progress`` from anywhere, fenced by the lease."""

from __future__ import annotations

import pytest
import redis

import fairque_django
from fairque_django import Progress, Task, TaskQueue, TaskValidationError
from fairque_django.conf import get_config, get_queue
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.observe import collect_metrics
from fairque_django.core.worker import AsyncWorker
from tests.support import eventually, running_worker
from tests.support.processes import Workers
from tests.testapp import tasks as t

pytestmark = pytest.mark.usefixtures("redis_client")


def test_progress_is_visible_from_another_process(redis_client: redis.Redis, workers: Workers) -> None:
    """A worker subprocess runs a task that reports progress and waits; this process reads it."""
    handle = fairque_django.enqueue(t.reports_progress("test:go", 0.42, "42 of 100 rows"), user="user:1",
                                    on_commit=False)
    proc = workers.start("worker-001", "--loglevel", "WARNING")
    eventually(lambda: redis_client.lrange(t.LOG + ":start", 0, -1) == [b"user:1|progress-True"], timeout=60,
               what="the task's report in the log")
    progress = handle.refresh().progress
    assert handle.status == "RUNNING"
    assert isinstance(progress, Progress)
    assert progress.fraction == 0.42 and progress.percent == 42 and progress.message == "42 of 100 rows"
    server_now = float(redis_client.time()[0])
    assert server_now - 30 < progress.updated_at <= server_now + 1
    # another tenant's handle for the same id sees nothing
    with pytest.raises(fairque_django.TaskNotFoundError):
        fairque_django.result(handle.id, user="user:2")
    # the dashboard's read model lists it with the worker's current tasks
    eventually(lambda: _current(get_queue()), timeout=30)
    [current] = _current(get_queue())
    assert current["task_id"] == handle.id
    assert current["progress"]["fraction"] == 0.42 and current["progress"]["message"] == "42 of 100 rows"
    redis_client.set("test:go", "1")
    assert handle.wait(timeout=30) is True
    assert handle.progress is None  # cleared when the task ends
    proc.terminate(30)


def _current(queue: TaskQueue) -> list[dict[str, object]]:
    metrics = collect_metrics(queue, record_sample=False)
    return [c for w in metrics.workers for c in w.current if c.get("progress")]


def test_a_stale_lease_cannot_overwrite_the_new_attempts_progress(make_config: object) -> None:
    config: FairQueueConfig = make_config(retry_backoff_base_seconds=0.01)  # type: ignore[operator]
    queue = TaskQueue(config)
    queue.push(Task.create("a", func_name="x"))
    first = queue.pop("w1", lease_seconds=0.05)
    assert first is not None and queue.set_progress(first, 0.1, "first attempt")
    assert queue.result(first.task_id, user_id="a").progress == Progress(0.1, "first attempt",
                                                                         _updated(queue, first.task_id))
    second = eventually(lambda: queue.pop("w1"), timeout=10)
    assert second.task_id == first.task_id and second.lease_token != first.lease_token
    # the new attempt has reported nothing yet: the first attempt's value is not shown for it
    assert queue.result(first.task_id, user_id="a").progress is None
    assert queue.set_progress(second, 0.5, "second attempt")
    assert not queue.set_progress(first, 0.9, "late writer")  # fenced: its lease was taken over
    progress = queue.result(first.task_id, user_id="a").progress
    assert progress is not None and (progress.fraction, progress.message) == (0.5, "second attempt")
    queue.complete(second)
    assert not queue.set_progress(second, 1.0, "after the end")
    assert queue.get_task_state(first.task_id) is None  # nothing recreated the finished task's hash


def _updated(queue: TaskQueue, task_id: str) -> float:
    state = queue.get_task_state(task_id)
    assert state is not None
    return int(state["pg"].split("\t")[2]) / 1000.0


def test_set_progress_checks_its_arguments_and_is_a_no_op_outside_a_task(make_config: object) -> None:
    for bad in (-0.1, 1.5, float("nan"), True, "0.5", None):
        with pytest.raises(TaskValidationError):
            fairque_django.set_progress(bad, "x")  # type: ignore[arg-type]
    with pytest.raises(TaskValidationError):
        fairque_django.set_progress(0.5, 42)  # type: ignore[arg-type]
    assert fairque_django.set_progress(0.5, "not in a task") is False
    config: FairQueueConfig = make_config()  # type: ignore[operator]
    queue = TaskQueue(config)
    queue.push(Task.create("a", func_name="x"))
    task = queue.pop("w1")
    assert task is not None
    assert queue.set_progress(task, 1, "é" * 500)
    progress = queue.result(task.task_id, user_id="a").progress
    assert progress is not None and progress.fraction == 1.0
    assert len(progress.message) == 200 and progress.message.endswith("…")


@pytest.mark.parametrize("garbage", ["", "x", "tok\tnan\t1\tm", "\t0.5\t1\tm", "{tok}\t0.5\tsoon\tm",
                                     "{tok}\t7\t1\tm"])
def test_garbage_in_the_progress_field_reads_as_none(make_config: object, redis_client: redis.Redis,
                                                     garbage: str) -> None:
    config: FairQueueConfig = make_config()  # type: ignore[operator]
    queue = TaskQueue(config)
    queue.push(Task.create("a", func_name="x"))
    task = queue.pop("w1")
    assert task is not None and task.lease_token
    redis_client.hset(queue.keys.task(task.task_id), "pg", garbage.replace("{tok}", task.lease_token))
    handle = queue.result(task.task_id, user_id="a")
    assert handle.status == "RUNNING" and handle.progress is None


def test_async_worker_runs_aset_progress(redis_client: redis.Redis) -> None:
    import asyncio
    import threading

    handle = fairque_django.enqueue(t.async_reports_progress("test:go-async", 0.25, "a quarter"), user="user:1",
                                    on_commit=False)
    worker = AsyncWorker(get_config(), worker_id="worker-001", install_signal_handlers=False)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    thread.start()
    try:
        eventually(lambda: handle.refresh().progress is not None, timeout=30)
        assert handle.progress is not None and (handle.progress.fraction, handle.progress.message) == (0.25,
                                                                                                        "a quarter")
        redis_client.set("test:go-async", "1")
        assert handle.wait(timeout=30) is True
    finally:
        worker.stop()
        thread.join(15)


def test_in_process_worker_progress_and_the_handle(redis_client: redis.Redis) -> None:
    handle = fairque_django.enqueue(t.reports_progress("test:go-inproc", 0.5, "half"), user="user:1",
                                    on_commit=False)
    with running_worker(get_config(), "worker-001"):
        eventually(lambda: handle.refresh().progress is not None, timeout=30)
        assert handle.progress is not None and handle.progress.to_dict()["percent"] == 50
        redis_client.set("test:go-inproc", "1")
        assert handle.wait(timeout=30) is True
