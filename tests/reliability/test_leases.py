"""Leases: a heartbeat keeps a long task leased past its lease time; a lease shortened through
``extend`` expires at the new deadline (the model test covers expiry of short pops)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from fairque_django import Task, TaskQueue, Worker
from tests.support.wait import eventually

from . import tasks
from .helpers import assert_stats_balance, runs


@pytest.mark.timeout(60)
def test_heartbeats_keep_a_task_longer_than_its_lease(make_config: Any, prefix: str,
                                                      redis_client: redis.Redis) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "heartbeat_interval_seconds": 0.2,
                                   "poll_interval_seconds": 0.1},
                                  {"id": "w2", "steal_targets": ["a"], "poll_interval_seconds": 0.1}],
                         stats_prefix=prefix, lease_timeout_seconds=1)
    queue = TaskQueue(config)
    task = tasks.work.create_task((1, 3.0), user_id="a")  # runs 3 s with a 1 s lease
    queue.push(task)
    crew = [Worker(config, worker_id=w, install_signal_handlers=False, task_modules=["tests.reliability.tasks"])
            for w in ("w1", "w2")]
    threads = [threading.Thread(target=w.start, daemon=True) for w in crew]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: task.task_id in runs(redis_client, tasks.RUNS), timeout=20, what="long task finished")
        eventually(lambda: queue.get_stats()["tasks_completed"] == 1, timeout=5, what="acknowledged")
    finally:
        for w in crew:
            w.stop()
        for thread in threads:
            thread.join(15)
    assert runs(redis_client, tasks.RUNS) == {task.task_id: 1}
    assert runs(redis_client, tasks.STARTS) == {task.task_id: 1}  # never taken over by w2
    stats = assert_stats_balance(queue, redis_client)
    assert stats["tasks_expired"] == 0 and stats["tasks_late_acks"] == 0


@pytest.mark.timeout(30)
def test_a_lease_shortened_by_extend_expires_at_its_new_deadline(make_config: Any, prefix: str) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"]}, {"id": "w2", "steal_targets": ["a"]}],
                         stats_prefix=prefix, lease_timeout_seconds=30)
    q1 = TaskQueue(config, worker_id="w1")
    q2 = TaskQueue(config, worker_id="w2")
    q1.push(Task.create(user_id="a", payload={}))
    held = q1.pop()
    assert held is not None
    assert q1.extend([held], lease_seconds=0.001) == []  # the worker gives up its lease (almost) at once
    # well within the old 30 s lease: the pop does not wait for the old deadline (the gate)
    taken = eventually(q2.pop, timeout=5, what="the lease shortened by extend() expired")
    assert taken.task_id == held.task_id
    assert taken.attempts == 2 and taken.retry_count == 1
