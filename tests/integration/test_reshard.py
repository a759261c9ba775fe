"""Moving tenants between keyspace shards (core/reshard.py, manage.py fairque_shards): nothing lost,
nothing twice, running tasks finish in the old shard first, a repeated or crashed move finishes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from fairque_django import Task, TaskQueue
from fairque_django.core.reshard import holders, misplaced, move_tenant
from fairque_django.core.shards import ShardMap, hashed_shard


def sharded(make_config: Any, pins: dict[str, int], shards: int = 4) -> Any:
    return make_config(workers=[{"id": "w1", "assigned_users": ["*"]}], shards=shards, shard_pins=pins)


def drain(q: TaskQueue) -> list[Task]:
    got: list[Task] = []
    while batch := q.pop_many(50):
        got += batch
        for task in batch:
            q.complete(task)
    return got


def one_running_of_three(make_config: Any) -> tuple[TaskQueue, Task, Any]:
    """Tenant a pinned to shard 1 with three tasks (payload n = 0, 1, 2), the first one running:
    the old shard's queue, the running task and the configuration that pins a to shard 2."""
    src = TaskQueue(sharded(make_config, {"a": 1}), shard=1)
    for i in range(3):
        src.push(Task.create(user_id="a", payload={"n": i}))
    running = src.pop()
    assert running is not None and running.payload["n"] == 0
    return src, running, sharded(make_config, {"a": 2})


def test_a_pinned_tenant_moves_with_its_queued_and_delayed_tasks_and_limits(make_config: Any,
                                                                           redis_client: redis.Redis) -> None:
    old = sharded(make_config, {"a": 1})
    src = TaskQueue(old, shard=1)
    queued = [Task.create(user_id="a", payload={"n": i}, priority=p) for i, p in enumerate((1, 3, 5, 6))]
    for task in queued:
        src.push(task)
    later = Task.create(user_id="a", payload={"n": "later"}, delay_seconds=0.3)
    src.push(later)
    src.set_tenant_limits("a", concurrency=7)
    new = sharded(make_config, {"a": 3})
    assert misplaced(new, redis_client) == [("a", 1, 3)]

    report = move_tenant(new, redis_client, "a", 1)
    assert (report.moved, report.source, report.target, report.left) == (5, 1, 3, {"unfinished": 0})
    assert misplaced(new, redis_client) == [] and holders(new, redis_client) == {"a": [3]}
    dst = TaskQueue(new, shard=3)
    assert dst.get_tenant_limits("a")["concurrency"] == 7
    assert src.get_tenant_limits("a")["concurrency"] is None and not src.is_paused("a")
    got = drain(dst)
    assert [t.payload["n"] for t in got] == [3, 2, 1, 0]  # priority order kept; the delayed one is not due
    time.sleep(0.35)
    assert [t.task_id for t in drain(dst)] == [later.task_id]
    assert drain(src) == []
    assert redis_client.keys("{fq}:t:*") == []  # nothing of a left in shard 0 either


def test_running_tasks_finish_in_the_old_shard_before_the_move(make_config: Any, redis_client: redis.Redis) -> None:
    src, running, new = one_running_of_three(make_config)
    done = threading.Timer(0.5, lambda: src.complete(running))
    done.start()
    started = time.monotonic()
    report = move_tenant(new, redis_client, "a", 1, poll_seconds=0.05)
    done.join()
    assert time.monotonic() - started >= 0.45 and report.moved == 2
    assert sorted(t.payload["n"] for t in drain(TaskQueue(new, shard=2))) == [1, 2]
    assert src.get_stats()["tasks_completed"] == 1


def test_a_move_that_times_out_leaves_the_tenant_paused_and_a_second_run_finishes(make_config: Any,
                                                                                 redis_client: redis.Redis) -> None:
    src, running, new = one_running_of_three(make_config)
    with pytest.raises(TimeoutError, match="stays paused"):
        move_tenant(new, redis_client, "a", 1, wait_seconds=0.2, poll_seconds=0.05)
    assert src.is_paused("a") and src.pop() is None  # nothing else starts in the old shard
    src.complete(running)
    assert move_tenant(new, redis_client, "a", 1).moved == 2
    assert not src.is_paused("a") and not TaskQueue(new, shard=2).is_paused("a")


def test_a_move_cut_short_after_the_push_runs_nothing_twice(make_config: Any, redis_client: redis.Redis) -> None:
    old = sharded(make_config, {"a": 1})
    src = TaskQueue(old, shard=1)
    tasks = [Task.create(user_id="a", payload={"n": i}) for i in range(4)]
    src.push_batch(tasks)
    new = sharded(make_config, {"a": 2})
    dst = TaskQueue(new, shard=2)
    dst.push_batch(tasks[:2])  # a former move pushed two and died before deleting them from the old shard
    src.pause_tenant("a")
    redis_client.hset(src.keys.tenant_moving, "a", "1")
    move_tenant(new, redis_client, "a", 1)
    assert sorted(t.task_id for t in drain(dst)) == sorted(t.task_id for t in tasks)
    assert drain(src) == [] and not src.is_paused("a")


def test_a_tenant_paused_before_the_move_stays_paused_in_its_new_shard(make_config: Any,
                                                                      redis_client: redis.Redis) -> None:
    src = TaskQueue(sharded(make_config, {"a": 1}), shard=1)
    src.push(Task.create(user_id="a", payload={}))
    src.pause_tenant("a")
    new = sharded(make_config, {"a": 0})
    move_tenant(new, redis_client, "a", 1)
    dst = TaskQueue(new, shard=0)
    assert dst.is_paused("a") and dst.pop() is None
    dst.resume_tenant("a")
    assert dst.pop() is not None


def test_after_the_shards_grew_every_tenant_outside_shard_0_moves_to_its_new_keyspace(
        make_config: Any, redis_client: redis.Redis) -> None:
    users = [f"org:{n}" for n in range(40)]
    old = make_config(workers=[{"id": "w1", "assigned_users": ["*"]}], shards=2)
    for user in users:
        TaskQueue(old, shard=hashed_shard(user, 2)).push(Task.create(user_id=user, payload={}))
    new = make_config(workers=[{"id": "w1", "assigned_users": ["*"]}], shards=4)
    before, after = ShardMap("fq", 2), ShardMap("fq", 4)
    moving = {u for u in users if before.keys_of(u).base != after.keys_of(u).base}
    assert moving == {u for u in users if not before.of(u) == after.of(u) == 0}  # a shard's tag depends on N
    wrong = misplaced(new, redis_client, 2)
    assert {u for u, _, _ in wrong} == moving
    for user, shard, _ in wrong:
        move_tenant(new, redis_client, user, shard, from_shards=2)
    assert misplaced(new, redis_client, 2) == [] and misplaced(new, redis_client) == []
    served = [t.user_id for s in range(4) for t in drain(TaskQueue(new, shard=s))]
    assert sorted(served) == sorted(users)


def test_a_task_whose_worker_died_in_the_old_keyspace_moves_too(make_config: Any, redis_client: redis.Redis) -> None:
    old = sharded(make_config, {"a": 1})
    src = TaskQueue(old, shard=1)
    for i in range(2):
        src.push(Task.create(user_id="a", payload={"n": i}))
    held = src.pop(lease_seconds=0.05)  # its worker dies: nobody acknowledges it, nobody pops this keyspace
    assert held is not None
    time.sleep(0.1)
    new = sharded(make_config, {"a": 2})
    report = move_tenant(new, redis_client, "a", 1, wait_seconds=5, poll_seconds=0.05)
    assert report.moved == 2 and report.left == {"unfinished": 0}
    assert sorted(t.payload["n"] for t in drain(TaskQueue(new, shard=2))) == [0, 1]
