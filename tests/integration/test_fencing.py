"""Calls that must not touch what they do not own: complete/fail without the lease token,
delete_dead of a task requeued meanwhile, and "requeue all" of a DLQ whose tasks die again."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fairque_django.core.errors import LeaseLostError
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(worker_id="w1"))


def dead_tasks(q: TaskQueue, n: int) -> list[str]:
    tasks = [Task.create(user_id="a", payload={"i": i}) for i in range(n)]
    q.push_batch(tasks)
    for task in q.pop_many(n, "w1"):
        assert q.fail(task, "boom", retry=False) == "dead"
    assert q.dlq_size() == n
    return [t.task_id for t in tasks]


def test_complete_and_fail_without_the_lease_token_leave_a_live_lease_alone(q: TaskQueue) -> None:
    q.push(Task.create(user_id="a"))
    leased = q.pop("w1")
    assert leased is not None and leased.lease_token
    anonymous = dataclasses.replace(leased, lease_token=None)
    assert q.complete_code(anonymous) == 0
    with pytest.raises(LeaseLostError):
        q.complete(anonymous)
    with pytest.raises(LeaseLostError):
        q.fail(anonymous, "not mine")
    assert q.get_task_state(leased.task_id)["st"] == "leased"  # type: ignore[index]
    assert q.extend([leased]) == []  # the holder still holds it
    assert q.complete_code(leased) == 1
    assert q.get_stats()["tasks_failed"] == 0


def test_delete_dead_spares_a_task_requeued_and_leased_after_it_was_checked(q: TaskQueue, make_config: Any) -> None:
    [task_id] = dead_tasks(q, 1)
    other = TaskQueue(make_config(worker_id="w1"))
    original = q.transport.call

    def requeue_meanwhile(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        reply = original(name, args, kwargs)
        if name == "zmscore":  # checked dead; then an admin requeues it and a worker leases it
            assert other.requeue_dead([task_id]) == [task_id]
            assert other.pop("w1") is not None
        return reply

    q.transport.call = requeue_meanwhile  # type: ignore[method-assign]
    assert q.delete_dead([task_id]) == []
    assert q.get_task_state(task_id)["st"] == "leased"  # type: ignore[index]
    assert q.get_stats()["tasks_deleted"] == 0


def test_requeue_all_counts_each_dead_task_once_though_some_die_again_meanwhile(q: TaskQueue) -> None:
    n = 1200  # more than one script call (1000 per call)
    ids = dead_tasks(q, n)
    original = q.transport.run
    calls = [0]

    def workers_meanwhile(script: Any, args: list[Any]) -> Any:
        reply = original(script, args)
        calls[0] += 1
        if script is q.scripts.requeue_dead and calls[0] == 1:  # workers fail some requeued ones at once
            for task in q.pop_many(10, "w1"):
                original(q.scripts.fail, q.proto.fail_args(task.task_id, task.lease_token or "", 0, True,
                                                           "again", "E", "", "error"))
        return reply

    q.transport.run = workers_meanwhile  # type: ignore[method-assign]
    done = q.requeue_dead()
    assert len(done) == n and sorted(done) == sorted(ids)
    assert q.dlq_size() == 10  # those that died again stay dead until the next "requeue all"


def test_purge_ends_and_spares_live_tasks_with_a_stale_dlq_entry(q: TaskQueue) -> None:
    dead_tasks(q, 3)
    live = Task.create(user_id="a")
    q.push(live)
    q.client.zadd(q.keys.dlq, {live.task_id: 1})  # a stale entry: the task is queued, not dead
    assert q.purge_dlq() == 3
    assert q.dlq_size() == 0
    assert q.get_task_state(live.task_id)["st"] == "queued"  # type: ignore[index]
