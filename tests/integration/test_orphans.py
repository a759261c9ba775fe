"""Orphan takeover at the queue level, step by step: the heartbeat keys ({prefix}:beat:<id>) are
set and removed by hand, and w1 pops (re-reading them on every pop). Worker processes:
tests/reliability/test_orphans.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue

WORKERS = [
    {"id": "w1", "assigned_users": ["a:*"]},
    {"id": "w2", "assigned_users": ["b:*"], "steal_targets": ["x:*"]},  # the pool's only server
    {"id": "w3", "assigned_users": ["c:*"]},
]


def beat(queue: TaskQueue, *worker_ids: str) -> None:
    for wid in worker_ids:
        queue.client.set(queue.keys.beat(wid), "1", px=60_000)


def pop_users(queue: TaskQueue, n: int = 100) -> list[str]:
    out = []
    for _ in range(n):
        task = queue.pop("w1")
        if task is None:
            break
        queue.complete(task)
        out.append(task.user_id or "")
    return out


def w1_queue(make_config: Callable[..., FairQueueConfig], **queue_settings: Any) -> TaskQueue:
    queue = TaskQueue(make_config(workers=WORKERS, **queue_settings), worker_id="w1")
    queue.orphan_recheck_seconds = 0.0  # re-read the heartbeat keys on every pop
    return queue


def test_takeover_of_a_partition_and_of_the_pool_and_the_owners_return(
        redis_client: redis.Redis, make_config: Callable[..., FairQueueConfig]) -> None:
    queue = w1_queue(make_config)
    queue.push_batch([Task.create(user_id=u, payload={}) for u in ("b:1", "x:1", "c:1")])
    beat(queue, "w1", "w2", "w3")
    assert pop_users(queue) == []  # every owner beats: nothing for w1, which may steal nothing
    redis_client.delete(queue.keys.beat("w2"))  # w2 silent: its partition and the pool are orphaned
    assert sorted(pop_users(queue)) == ["b:1", "x:1"]
    assert queue.get_stats()["tasks_orphan_served"] == 2
    beat(queue, "w2")  # back: w1 takes its tenants no more
    queue.push_batch([Task.create(user_id=u, payload={}) for u in ("b:2", "x:2")])
    assert pop_users(queue) == []
    redis_client.delete(queue.keys.beat("w3"))
    assert pop_users(queue) == ["c:1"]
    # only a live worker takes over: w1 without its own heartbeat key takes nothing of others
    redis_client.delete(queue.keys.beat("w1"), queue.keys.beat("w2"))
    assert pop_users(queue) == []
    assert queue.get_stats()["tasks_orphan_served"] == 3


def test_takeover_competes_by_virtual_time_across_orphaned_partitions(
        redis_client: redis.Redis, make_config: Callable[..., FairQueueConfig]) -> None:
    """Two orphaned partitions with two tenants each: the orphan heads compete by virtual start
    time, so every tenant gets a task before any gets a second (round-robin across them)."""
    queue = w1_queue(make_config)
    users = ["b:1", "b:2", "c:1", "c:2"]
    queue.push_batch([Task.create(user_id=u, payload={}) for u in users for _ in range(3)])
    beat(queue, "w1")
    order = pop_users(queue)
    assert len(order) == 12
    assert all(sorted(order[i:i + 4]) == users for i in range(0, 12, 4)), order


def test_takeover_off(redis_client: redis.Redis, make_config: Callable[..., FairQueueConfig]) -> None:
    queue = w1_queue(make_config, orphan_takeover=False)
    queue.push(Task.create(user_id="b:1", payload={}))
    beat(queue, "w1")
    assert pop_users(queue) == []
    assert queue.get_stats()["tasks_orphan_served"] == 0
