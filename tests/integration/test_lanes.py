"""A user's lanes: a LIST per priority with lazy removal (a cancelled or deleted queued task's id
stays in its lane, counted stale in the user's gone hash, until a pop takes it out), exact counts
wherever they are shown, an id pushed again after its cancel, and lanes of the former layout (one
ZSET for priorities 1-5) served and converted on first touch (docs/architecture.md, upgrading)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from fairque_django.core.models import Priority, Task
from fairque_django.core.observe import TenantView
from fairque_django.core.queue import TaskQueue
from fairque_django.core.reshard import move_tenant

WORKERS = [{"id": "w1", "assigned_users": ["a", "b"]}]


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(workers=WORKERS, worker_id="w1", lease_timeout_seconds=30))


def push(q: TaskQueue, user: str, *priorities: int, task_id: str | None = None) -> list[str]:
    tasks = [Task.create(user_id=user, priority=Priority(p), payload={"p": p}) for p in priorities]
    if task_id is not None:
        tasks = [Task.create(user_id=user, priority=Priority(priorities[0]), payload={"again": 1}, task_id=task_id)]
    q.push_batch(tasks)
    return [t.task_id for t in tasks]


@pytest.fixture(autouse=True)
def no_problems(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Stale entries are skipped silently: no pop reports a stray id or corrupt data."""
    yield
    assert not [r for r in caplog.records if r.name.startswith("fairque_django") and r.levelno >= logging.WARNING]


def drain(q: TaskQueue) -> list[str]:
    got: list[str] = []
    while True:
        step = q.pop_step("w1")
        if not step.tasks:
            return got
        for task in step.tasks:
            got.append(task.task_id)
            q.complete(task)


def to_former_layout(client: redis.Redis, q: TaskQueue, user: str) -> None:
    """Rewrite ``user``'s lanes as the previous version kept them: the critical lane as it is, the
    tasks of priorities 1-5 in one ZSET scored (6 - priority) * 2^40 + seq."""
    for p in (5, 4, 3, 2, 1):
        lane = q.keys.lane(user, p)
        for task_id in client.lrange(lane, 0, -1):
            seq = int(client.hget(q.keys.task(task_id.decode()), "h").split(b"\t")[1])  # type: ignore[union-attr]
            client.zadd(q.keys.normal(user), {task_id: (6 - p) * 2 ** 40 + seq})
        client.delete(lane)
    assert client.exists(q.keys.normal(user))


def lanes_left(client: redis.Redis, q: TaskQueue, user: str) -> int:
    return int(client.exists(*q.keys.lanes(user), q.keys.gone(user), q.keys.normal(user)))


def test_one_list_per_priority_served_critical_first_then_by_priority_fifo(q: TaskQueue,
                                                                           redis_client: redis.Redis) -> None:
    ids = push(q, "a", 1, 3, 6, 5, 3, 1, 6)
    assert [redis_client.llen(k) for k in q.keys.lanes("a")] == [2, 1, 0, 2, 0, 2]
    assert not redis_client.exists(q.keys.normal("a"))
    by = dict(zip(ids, (1, 3, 6, 5, 3, 1, 6), strict=True))
    got = drain(q)
    assert [by[i] for i in got] == [6, 6, 5, 3, 3, 1, 1]
    assert got == sorted(ids, key=lambda i: (-by[i], ids.index(i)))
    assert lanes_left(redis_client, q, "a") == 0


def test_a_cancelled_or_deleted_task_stays_in_its_lane_uncounted_until_a_pop_skips_it(
        q: TaskQueue, redis_client: redis.Redis) -> None:
    ids = push(q, "a", 3, 3, 3, 3, 3, 6)
    assert q.cancel(ids[1]) == "cancelled"
    assert q.delete(ids[3]) == [ids[3]]
    lane = q.keys.lane("a", 3)
    assert redis_client.llen(lane) == 5  # lazy: the ids stay
    assert redis_client.hgetall(q.keys.gone("a")) == {ids[1].encode(): b"1", ids[3].encode(): b"1", b"\t3": b"2"}
    assert q.user_depth("a") == {"critical": 1, "normal": 3, "live": 4}
    detail = TenantView(q, "a").detail()
    assert detail.depth == {"critical": 1, "5": 0, "4": 0, "3": 3, "2": 0, "1": 0}
    listed = TenantView(q, "a").queued()
    assert [t.task_id for t in listed.tasks] == [ids[5], ids[0], ids[2], ids[4]] and listed.total == 4
    assert drain(q) == [ids[5], ids[0], ids[2], ids[4]]
    assert lanes_left(redis_client, q, "a") == 0  # every stale entry taken out, its count with it
    assert q.user_depth("a") == {"critical": 0, "normal": 0, "live": 0}


def test_the_last_queued_task_cancelled_takes_the_stale_entries_with_it(q: TaskQueue,
                                                                        redis_client: redis.Redis) -> None:
    ids = push(q, "a", 3, 2, 6)
    for task_id in ids[:2]:
        assert q.cancel(task_id) == "cancelled"
    assert redis_client.llen(q.keys.lane("a", 3)) == 1 and q.user_depth("a")["normal"] == 0
    assert q.cancel(ids[2]) == "cancelled"  # nothing queued is left: the lanes go, and a leaves its rotation
    assert lanes_left(redis_client, q, "a") == 0
    assert redis_client.zscore(q.keys.ready("w1"), "a") is None
    assert drain(q) == []


def test_an_id_pushed_again_after_its_cancel_is_served_once_at_its_new_place(q: TaskQueue,
                                                                            redis_client: redis.Redis) -> None:
    first, other = push(q, "a", 3, 3)
    assert q.cancel(first) == "cancelled"
    push(q, "a", 5, task_id=first)  # the same id, another priority: its stale entry goes at the push
    assert redis_client.lrange(q.keys.lane("a", 3), 0, -1) == [other.encode()]
    assert not redis_client.exists(q.keys.gone("a"))
    assert q.user_depth("a") == {"critical": 0, "normal": 2, "live": 2}
    assert drain(q) == [first, other]


def test_stale_counts_that_hold_garbage_are_repaired_not_trusted(q: TaskQueue, redis_client: redis.Redis) -> None:
    ids = push(q, "a", 3, 3, 3)
    redis_client.hset(q.keys.gone("a"), "\t3", 99)  # the lanes would read empty
    assert q.user_depth("a")["normal"] == 0
    before = q.get_stats()["tasks_repaired"]
    assert q.cancel(ids[0]) == "cancelled"  # its lanes are looked at before they could go: two are queued
    assert q.get_stats()["tasks_repaired"] == before + 1
    assert redis_client.hget(q.keys.gone("a"), "\t3") == b"1"
    assert q.user_depth("a")["normal"] == 2
    assert drain(q) == ids[1:]


def test_the_retention_sweep_drops_stale_entries_of_an_idle_tenant(q: TaskQueue, redis_client: redis.Redis) -> None:
    [task_id] = push(q, "b", 3)
    assert drain(q) == [task_id]  # b is idle now
    # stale entries no pop will take (b is in no rotation): what a lost count would leave behind
    redis_client.rpush(q.keys.lane("b", 3), "gone-1", "gone-2")
    redis_client.hset(q.keys.gone("b"), mapping={"gone-1": 1, "gone-2": 1, "\t3": 2})
    assert q.user_depth("b")["normal"] == 0
    swept = q.fold_idle_tenants(window_seconds=0)
    assert swept.folded + swept.kept == 1
    assert lanes_left(redis_client, q, "b") == 0


def test_tasks_queued_by_the_previous_version_are_served_in_order(q: TaskQueue, redis_client: redis.Redis) -> None:
    """Upgrading: lanes in the former layout are read as they are (counts, the tenant page) and
    converted by the first script that touches them; what they held is served first, in order."""
    old_a = push(q, "a", 3, 5, 1, 3, 6)
    old_b = push(q, "b", 2, 4)
    to_former_layout(redis_client, q, "a")
    to_former_layout(redis_client, q, "b")
    assert q.user_depth("a") == {"critical": 1, "normal": 4, "live": 5}
    assert TenantView(q, "a").detail().depth == {"critical": 1, "5": 1, "4": 0, "3": 2, "2": 0, "1": 1}
    assert [t.task_id for t in TenantView(q, "a").queued().tasks] == [old_a[i] for i in (4, 1, 0, 3, 2)]
    new_a = push(q, "a", 3)  # a push converts a's lanes first
    assert not redis_client.exists(q.keys.normal("a"))
    assert redis_client.lrange(q.keys.lane("a", 3), 0, -1) == [new_a[0].encode(), old_a[3].encode(),
                                                                old_a[0].encode()]
    assert redis_client.exists(q.keys.normal("b"))  # b's are converted by the pop that reaches them
    got = drain(q)
    assert [i for i in got if i in old_a or i in new_a] == [old_a[4], old_a[1], old_a[0], old_a[3], new_a[0],
                                                            old_a[2]]
    assert [i for i in got if i in old_b] == [old_b[1], old_b[0]]
    assert lanes_left(redis_client, q, "a") == lanes_left(redis_client, q, "b") == 0


def test_a_task_of_the_former_layout_can_be_cancelled_and_deleted(q: TaskQueue, redis_client: redis.Redis) -> None:
    ids = push(q, "a", 3, 3, 3, 2)
    to_former_layout(redis_client, q, "a")
    assert q.cancel(ids[1]) == "cancelled"
    assert not redis_client.exists(q.keys.normal("a"))
    assert q.user_depth("a")["normal"] == 3
    to_former_layout_again = ids[3]
    assert q.delete(to_former_layout_again) == [to_former_layout_again]
    assert q.user_depth("a")["normal"] == 2
    assert drain(q) == [ids[0], ids[2]]
    assert lanes_left(redis_client, q, "a") == 0


def test_cancel_tenant_takes_stale_entries_out_too(q: TaskQueue, redis_client: redis.Redis) -> None:
    ids = push(q, "a", *([3] * 30), *([6] * 5))
    for task_id in ids[::3]:
        assert q.cancel(task_id) == "cancelled"
    counts = q.cancel_tenant("a", chunk=7)
    assert counts["cancelled"] == 35 - len(ids[::3])
    assert lanes_left(redis_client, q, "a") == 0


def test_a_tenant_moved_to_another_shard_leaves_its_stale_entries_behind_counted(
        make_config: Any, redis_client: redis.Redis) -> None:
    def sharded(pins: dict[str, int]) -> Any:
        return make_config(workers=[{"id": "w1", "assigned_users": ["*"]}], shards=4, shard_pins=pins)
    src = TaskQueue(sharded({"a": 1}), shard=1)
    tasks = [Task.create(user_id="a", payload={"n": i}, priority=Priority(p)) for i, p in enumerate((3, 3, 3, 6, 3))]
    src.push_batch(tasks)
    assert src.cancel(tasks[1].task_id) == "cancelled"
    report = move_tenant(sharded({"a": 2}), redis_client, "a", 1, page=2)
    assert report.moved == 4
    dst = TaskQueue(sharded({"a": 2}), shard=2)
    assert dst.user_depth("a") == {"critical": 1, "normal": 3, "live": 4}
    assert src.user_depth("a") == {"critical": 0, "normal": 0, "live": 0}
    assert not redis_client.exists(*src.keys.lanes("a"), src.keys.gone("a"))
    got = []
    while task := dst.pop("w1"):
        got.append(task.payload["n"])
        dst.complete(task)
    assert got == [3, 0, 2, 4]


def test_tasks_put_back_together_keep_their_order_at_the_head_of_the_lane(q: TaskQueue) -> None:
    ids = push(q, "a", 3, 3, 3, 3, 3)
    batch = q.pop_many(3, "w1")
    assert [t.task_id for t in batch] == ids[:3]
    assert q.release(batch) == 3  # one call: the three go back in front of the others, in their order
    assert drain(q) == ids
    ids = push(q, "a", 3, 3, 3, 3)
    lost = q.pop_many(3, "w1", lease_seconds=0.05)  # a worker that dies with three leases
    assert [t.task_id for t in lost] == ids[:3]
    time.sleep(0.1)
    assert drain(q) == ids  # taken back by one pop's timers, retried first, in their order
