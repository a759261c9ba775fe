"""Stealing through per-(partition, stealer) steal copies of the ready sets (issue 14 item 8), and
pop leasing only queued tasks of the lane's user (issue 14 item 7)."""

from __future__ import annotations

from typing import Any

import redis

from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue


def push_users(q: TaskQueue, users: list[str]) -> None:
    """One task for each user (in batches)."""
    for start in range(0, len(users), 500):
        q.push_batch([Task.create(user_id=u, payload={"u": u}) for u in users[start:start + 500]])


def test_a_stealer_finds_its_only_target_behind_thousands_of_others(make_config: Any) -> None:
    """Work-conserving: the one user w2 may take sits behind 3,000 ready users it may not take
    (the former scan gave up after 2,000 and w2 stayed idle)."""
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["t:*"]},
                               {"id": "w2", "assigned_users": [], "steal_targets": ["t:zzz"]}])
    q = TaskQueue(cfg)
    push_users(q, [f"t:{i:05d}" for i in range(3000)])
    q.push(Task.create(user_id="t:zzz", payload={"u": "t:zzz"}))  # joins the rotation last
    task = q.pop("w2")
    assert task is not None and task.user_id == "t:zzz"
    assert q.pop("w2") is None  # nothing else is w2's to take


def test_a_stealer_takes_the_lowest_virtual_time_across_partitions(make_config: Any) -> None:
    """Fairness across partitions: of the heads of its copies, the earliest virtual start wins."""
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a", "b"]},
                               {"id": "w2", "assigned_users": ["c"]},
                               {"id": "w3", "assigned_users": [], "steal_targets": ["b", "c"]}])
    q = TaskQueue(cfg)
    for user in ("a", "b", "b", "c"):
        q.push(Task.create(user_id=user, payload={}))
    assert q.pop("w1").user_id == "a"  # type: ignore[union-attr]  # w1's clock moves on: b is at 0
    got = [q.pop("w3") for _ in range(3)]
    assert [t.user_id if t else None for t in got] == ["b", "c", "b"]


def test_changed_steal_targets_rebuild_the_copies(make_config: Any, redis_client: redis.Redis) -> None:
    """A new configuration of a stealer (same worker id) rebuilds its copies from the ready sets."""
    workers: list[dict[str, Any]] = [{"id": "w1", "assigned_users": ["a", "b"]},
                                     {"id": "w2", "assigned_users": [], "steal_targets": ["a"]}]
    q = TaskQueue(make_config(workers=workers))
    for user in ("a", "b"):
        q.push(Task.create(user_id=user, payload={}))
    assert q.pop("w2").user_id == "a"  # type: ignore[union-attr]
    workers[1]["steal_targets"] = ["b"]
    q2 = TaskQueue(make_config(workers=workers))
    task = q2.pop("w2")
    assert task is not None and task.user_id == "b"
    assert not redis_client.exists(q2.keys.steal_ready("w1", "w2")) or \
        redis_client.zrange(q2.keys.steal_ready("w1", "w2"), 0, -1) == []


def test_copies_of_a_long_silent_stealer_are_forgotten(make_config: Any, redis_client: redis.Redis) -> None:
    """A worker removed from the configuration (or stopped long) stops costing pushes: another
    stealer's sync deletes its copies and definitions."""
    old = TaskQueue(make_config(workers=[{"id": "w1", "assigned_users": ["a"]},
                                         {"id": "gone", "assigned_users": [], "steal_targets": ["a"]},
                                         {"id": "w3", "assigned_users": [], "steal_targets": ["a"]}]))
    old.push(Task.create(user_id="a", payload={}))
    assert old.pop("gone") is not None
    assert redis_client.hexists(old.keys.stealers("w1"), "gone")
    new = TaskQueue(make_config(workers=[{"id": "w1", "assigned_users": ["a"]},
                                         {"id": "w3", "assigned_users": [], "steal_targets": ["a"]}]))
    new.stealer_forget_seconds = 0.0
    new.push(Task.create(user_id="a", payload={}))
    assert new.pop("w3") is not None
    assert not redis_client.hexists(new.keys.stealers("w1"), "gone")
    assert not redis_client.exists(new.keys.steal_ready("w1", "gone"), new.keys.steal_digest("gone"))


def test_stealing_survives_redis_coming_back_empty(make_config: Any, redis_client: redis.Redis) -> None:
    """An empty restart loses the copies and their definitions: the next pop sees they are out of
    date, syncs and steals at once (pattern targets in the pool, no recheck interval waited)."""
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "steal_targets": ["guest:*"]}])
    q = TaskQueue(cfg)
    q.push(Task.create(user_id="guest:1", payload={}))
    assert q.pop("w1") is not None
    redis_client.flushdb()
    q.push(Task.create(user_id="guest:2", payload={}))
    task = q.pop("w1")  # the queue believes the copies synced (checked under 5 s ago)
    assert task is not None and task.user_id == "guest:2"


def test_a_spoiled_copy_is_moved_aside_and_rebuilt(make_config: Any, redis_client: redis.Redis) -> None:
    """A copy that holds another type of value is quarantined; the copies are rebuilt, nothing is lost."""
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a", "b"]},
                               {"id": "w2", "assigned_users": [], "steal_targets": ["a", "b"]}])
    q = TaskQueue(cfg)
    q.push(Task.create(user_id="a", payload={}))
    assert q.pop("w2") is not None  # synced
    q.push(Task.create(user_id="b", payload={}))
    key = q.keys.steal_ready("w1", "w2")
    redis_client.delete(key)
    redis_client.set(key, "garbage")  # the copy lost b, and is not even a sorted set
    task = q.pop("w2")
    assert task is not None and task.user_id == "b"
    assert redis_client.type(key) in (b"zset", b"none")


def test_pop_never_leases_a_stray_task_id_in_a_lane(make_config: Any, redis_client: redis.Redis) -> None:
    """Issue 14 item 7: an id injected into another tenant's lane (a dead task, a leased task) is
    dropped from that lane and reported, never leased; the lane's own task runs."""
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a", "b"]}])
    q = TaskQueue(cfg)
    victim = Task.create(user_id="a", payload={"n": 1})
    q.push(victim)
    popped = q.pop("w1")
    assert popped is not None
    q.fail(popped, RuntimeError("boom"), retry=False)  # dead
    running = Task.create(user_id="a", payload={"n": 2})
    q.push(running)
    leased = q.pop("w1")
    assert leased is not None and leased.task_id == running.task_id
    own = Task.create(user_id="b", payload={"n": 3})
    q.push(own)
    lane = q.keys.lane("b", Priority.NORMAL)
    redis_client.rpush(lane, victim.task_id, running.task_id)  # ahead of b's own task
    step = q.pop_step("w1")
    assert [t.task_id for t in step.tasks] == [own.task_id]
    assert redis_client.hget(q.keys.task(victim.task_id), "st") == b"dead"
    assert redis_client.hget(q.keys.task(running.task_id), "tok") == leased.lease_token.encode()  # type: ignore[union-attr]
    assert redis_client.llen(lane) == 0
