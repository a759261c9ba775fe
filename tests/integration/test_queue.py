"""TaskQueue against a real Redis: fairness, priorities, stealing, leases, retries, DLQ, stats."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
import redis

from fairque_django.core.config import FairQueueConfig, RedisConfig
from fairque_django.core.errors import (
    CorruptTaskError,
    LeaseLostError,
    PayloadTooLargeError,
    RedisUnavailableError,
    SerializationError,
    TaskValidationError,
)
from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.scripts.pop import PopStep
from tests.support import eventually
from tests.support.redis_state import blocked_clients


def push_n(q: TaskQueue, user: str, n: int, priority: Priority = Priority.NORMAL, **kw: Any) -> list[str]:
    ids = []
    for i in range(n):
        t = Task.create(user_id=user, priority=priority, payload={"user": user, "i": i}, **kw)
        assert q.push(t)["success"]
        ids.append(t.task_id)
    return ids


def drain(q: TaskQueue, worker: str | None = None, limit: int = 100_000) -> list[Task]:
    out = []
    while len(out) < limit:
        t = q.pop(worker)
        if t is None:
            break
        q.delete_task(t.task_id)
        out.append(t)
    return out


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(worker_id="w1"))


def test_backlog_size_does_not_change_service_rate(q: TaskQueue) -> None:
    push_n(q, "a", 100)
    push_n(q, "b", 3)
    push_n(q, "c", 3)
    first9 = [t.user_id for t in (q.pop() for _ in range(9)) if t]
    assert Counter(first9) == {"a": 3, "b": 3, "c": 3}
    # strict rotation: no user gets a second task before the others got one
    for i in range(0, 9, 3):
        assert sorted(first9[i:i + 3]) == ["a", "b", "c"]


def test_late_joiner_is_served_within_one_round(q: TaskQueue) -> None:
    push_n(q, "a", 50)
    push_n(q, "b", 50)
    served = [q.pop().user_id for _ in range(10)]  # type: ignore[union-attr]
    assert Counter(served) == {"a": 5, "b": 5}
    push_n(q, "c", 2)
    nxt = [q.pop().user_id for _ in range(3)]  # type: ignore[union-attr]
    assert "c" in nxt  # served before a or b get a second turn of this round


def test_user_that_drains_and_returns_does_not_jump_the_rotation(q: TaskQueue) -> None:
    push_n(q, "a", 1)
    push_n(q, "b", 5)
    push_n(q, "c", 5)
    order = [q.pop().user_id for _ in range(3)]  # type: ignore[union-attr]
    assert sorted(order) == ["a", "b", "c"]
    push_n(q, "a", 5)  # a comes back right away
    nxt = [q.pop().user_id for _ in range(3)]  # type: ignore[union-attr]
    assert sorted(nxt) == ["a", "b", "c"]


def test_priority_order_within_user(q: TaskQueue) -> None:
    pushed = []
    for prio in [1, 3, 5, 2, 4, 3, 5, 1]:
        t = Task.create(user_id="a", priority=prio, payload={"p": prio, "n": len(pushed)})
        q.push(t)
        pushed.append((prio, len(pushed)))
    crit = [Task.create(user_id="a", priority=Priority.CRITICAL, payload={"c": i}) for i in range(3)]
    for t in crit:
        q.push(t)
    got = drain(q)
    assert [t.task_id for t in got[:3]] == [t.task_id for t in crit]  # critical lane first, FIFO
    rest = [(t.payload["p"], t.payload["n"]) for t in got[3:]]
    assert rest == sorted(pushed, key=lambda pn: (-pn[0], pn[1]))  # 5..1, FIFO within a priority


def test_stealing_only_when_assigned_users_are_empty(make_config: Any) -> None:
    cfg = make_config(workers=[
        {"id": "w1", "assigned_users": ["a", "b"], "steal_targets": ["c"]},
        {"id": "w2", "assigned_users": ["c", "d"], "steal_targets": ["a"]},
    ])
    q1 = TaskQueue(cfg, worker_id="w1")
    push_n(q1, "a", 2)
    push_n(q1, "c", 2)
    push_n(q1, "d", 2)
    got = [q1.pop() for _ in range(5)]
    assert [t.user_id for t in got if t] == ["a", "a", "c", "c"]
    assert got[4] is None  # d is not stealable by w1
    q2 = TaskQueue(cfg, worker_id="w2")
    assert [t.user_id for t in drain(q2)] == ["d", "d"]


def test_stealing_with_patterns_and_pool(make_config: Any) -> None:
    cfg = make_config(workers=[
        {"id": "w1", "assigned_users": ["tenant:*"], "steal_targets": ["guest:*"]},
        {"id": "w2", "assigned_users": ["vip"], "steal_targets": ["tenant:*"]},
    ])
    q1 = TaskQueue(cfg, worker_id="w1")
    push_n(q1, "tenant:1", 1)
    push_n(q1, "guest:7", 1)  # nobody owns guest:* -> pool, stealable by w1
    q2 = TaskQueue(cfg, worker_id="w2")
    assert q2.pop().user_id == "tenant:1"  # type: ignore[union-attr]
    assert q2.pop() is None
    assert q1.pop().user_id == "guest:7"  # type: ignore[union-attr]


def test_pop_ignores_many_idle_users(make_config: Any) -> None:
    users = [f"u{i}" for i in range(100_000)]
    cfg = make_config(workers=[{"id": "w1", "assigned_users": users}])
    q = TaskQueue(cfg, worker_id="w1")
    for u in users[::1000]:
        push_n(q, u, 2)
    got = drain(q)
    assert len(got) == 200
    assert Counter(t.user_id for t in got[:100]) == {u: 1 for u in users[::1000]}


def test_lease_expiry_requeues_and_rejects_late_ack(make_config: Any) -> None:
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a"]}, {"id": "w2", "steal_targets": ["a"]}])
    q1 = TaskQueue(cfg, worker_id="w1")
    q2 = TaskQueue(cfg, worker_id="w2")
    (tid,) = push_n(q1, "a", 1)
    t1 = q1.pop(lease_seconds=0.05)
    assert t1 is not None and t1.attempts == 1
    assert q2.pop() is None
    t2 = eventually(q2.pop, timeout=5, what="the 50 ms lease to expire")
    assert t2.task_id == tid
    assert t2.attempts == 2 and t2.retry_count == 1  # the lost attempt counted
    assert q1.delete_task(tid) is False  # late ack rejected
    with pytest.raises(LeaseLostError):
        q1.complete(t1)
    q2.complete(t2)
    stats = q1.get_stats()
    assert stats["tasks_completed"] == 1 and stats["tasks_expired"] == 1 and stats["tasks_late_acks"] == 2


def test_heartbeat_keeps_lease(q: TaskQueue) -> None:
    push_n(q, "a", 1)
    t = q.pop(lease_seconds=0.1)
    assert t is not None
    for _ in range(4):
        time.sleep(0.05)  # the scenario: the lease outlives its first 0.1 s only because it is extended
        assert q.extend([t], lease_seconds=0.1) == []
    assert q.pop() is None
    q.complete(t)
    assert q.extend([t]) == [t.task_id]


def test_retry_backoff_then_dlq(make_config: Any) -> None:
    q = TaskQueue(make_config(worker_id="w1", retry_backoff_base_seconds=0.1, default_max_retries=2))
    (tid,) = push_n(q, "a", 1)
    t = q.pop()
    assert t is not None
    assert q.fail(t, ValueError("boom"), traceback="Traceback: boom") == "retry"
    assert q.get_task_state(tid)["st"] == "delayed"  # type: ignore[index]
    assert q.pop() is None  # not busy-looped: waits for its backoff
    t = eventually(q.pop, timeout=5, what="the first backoff (0.1 s)")
    assert t.retry_count == 1
    assert q.fail(t, ValueError("boom")) == "retry"
    started = time.monotonic()
    assert q.pop() is None
    t = eventually(q.pop, timeout=5, what="the second backoff (0.2 s)")
    assert time.monotonic() - started >= 0.15  # backoff doubles
    assert t.retry_count == 2
    assert q.fail(t, ValueError("boom 3"), traceback="TB3") == "dead"
    assert q.pop() is None
    (entry,) = q.get_dlq()
    assert entry.task_id == tid and entry.user_id == "a"
    assert entry.error == "boom 3" and entry.error_type == "ValueError" and entry.traceback == "TB3"
    assert entry.attempts == 3 and entry.retry_count == 3 and entry.dead_at > 0
    stats = q.get_stats()
    assert stats["tasks_failed"] == 3 and stats["tasks_retried"] == 2 and stats["tasks_dead"] == 1
    assert stats["dlq_size"] == 1 and stats["users"]["a"]["dead"] == 1


def test_dlq_requeue_delete_purge(q: TaskQueue) -> None:
    ids = push_n(q, "a", 4)
    for _ in range(4):
        t = q.pop()
        assert t is not None
        q.fail(t, "bad", retry=False)
    assert q.dlq_size() == 4
    assert q.requeue_dead([ids[0], "nope"]) == [ids[0]]
    t = q.pop()
    assert t is not None and t.task_id == ids[0] and t.retry_count == 0
    q.complete(t)
    assert q.delete_dead([ids[1]]) == [ids[1]]
    assert q.purge_dlq() == 2
    assert q.dlq_size() == 0
    stats = q.get_stats()
    assert stats["tasks_pushed"] == stats["tasks_completed"] + stats["tasks_deleted"] + stats["tasks_pending"]
    assert stats["tasks_pending"] == 0


def test_a_dead_task_whose_body_names_another_id_is_listed_and_handled_by_its_stored_id(
        q: TaskQueue, redis_client: redis.Redis) -> None:
    """Issue 14 item 6: the DLQ lists a dead task under the id it is stored under, not the id inside
    a (poisoned) body, so it can be opened, requeued and deleted."""
    ids = push_n(q, "a", 2)
    for _ in range(2):
        t = q.pop()
        assert t is not None
        q.fail(t, "bad", retry=False)
    # a body of the former format names its id (the compact one does not)
    body = json.dumps({"id": "someone-else", "user": "a", "priority": 3, "created": 1.0, "payload": {"x": 1}})
    redis_client.hset(q.keys.task(ids[0]), "b", body)  # a wrong value of the right type
    listed = {e.task_id: e for e in q.get_dlq()}
    assert set(listed) == set(ids)
    assert listed[ids[0]].raw_body == body  # shown as a corrupt body, not as task "someone-else"
    entry = q.get_dead(ids[0])
    assert entry is not None and entry.task_id == ids[0]
    assert q.delete_dead([ids[0]]) == [ids[0]]
    assert q.requeue_dead([ids[1]]) == [ids[1]]
    assert q.dlq_size() == 0


def test_dlq_requeue_does_not_touch_live_tasks(q: TaskQueue) -> None:
    (tid,) = push_n(q, "a", 1)
    assert q.requeue_dead([tid]) == []
    assert q.delete_dead([tid]) == []
    assert q.pop() is not None


def test_delayed_task_becomes_ready_on_time(q: TaskQueue) -> None:
    t = Task.create(user_id="a", payload={}, delay_seconds=0.15)
    assert q.push(t)["state"] == "delayed"
    task, due = q.pop_reply()
    assert task is None and due is not None and 0 < due <= 0.15
    got = eventually(q.pop, timeout=5, what="the delayed task's due time")
    assert got.task_id == t.task_id


def test_push_batch(q: TaskQueue) -> None:
    tasks = [Task.create(user_id="abcd"[i % 4], payload={"i": i}) for i in range(2500)]
    res = q.push_batch(tasks)
    assert res["pushed"] == 2500 and res["success"]
    again = q.push_batch(tasks[:3])
    assert again["duplicates"] == [t.task_id for t in tasks[:3]] and not again["success"]
    assert q.get_stats()["tasks_pushed"] == 2500
    got = drain(q)
    assert len(got) == 2500 and len({t.task_id for t in got}) == 2500


def test_push_batch_finds_duplicates_in_and_before_the_call(q: TaskQueue) -> None:
    """push.lua looks for existing tasks once per call when none exists (issue 17): an id given
    twice in one call is still a duplicate the second time, and a call with an existing id (or
    idempotency marker) looks at each task with its turn."""
    tasks = [Task.create(user_id="ab"[i % 2], payload={"i": i}) for i in range(8)]
    res = q.push_batch([*tasks[:4], tasks[1], tasks[2]])
    assert res["pushed"] == 4 and res["duplicates"] == [tasks[1].task_id, tasks[2].task_id]
    res = q.push_batch(tasks)
    assert res["pushed"] == 4 and res["duplicates"] == [t.task_id for t in tasks[:4]]
    assert q.get_stats()["tasks_pushed"] == 8 and len(drain(q)) == 8  # (deleted: the ids are free again)
    res = q.push_batch([*tasks[:4], tasks[0]], idempotent=True)
    assert res["pushed"] == 4 and res["duplicates"] == [tasks[0].task_id]
    assert len(drain(q)) == 4
    res = q.push_batch(tasks, idempotent=True)  # the first four are remembered after they finished
    assert res["pushed"] == 4 and res["duplicates"] == [t.task_id for t in tasks[:4]]
    assert sorted(t.payload["i"] for t in drain(q)) == [4, 5, 6, 7]


def test_push_batch_validates_everything_before_writing(q: TaskQueue) -> None:
    tasks = [Task.create(user_id="a", payload={}), Task.create(user_id="a", payload={})]
    tasks[1].user_id = "bad user"
    with pytest.raises(TaskValidationError):
        q.push_batch(tasks)
    assert q.get_stats()["tasks_pushed"] == 0


def test_push_batch_that_fails_to_encode_a_later_chunk_leaves_nothing(q: TaskQueue) -> None:
    """Chunks are encoded while Redis stores the previous one: a bad body in chunk 3 undoes 1 and 2."""
    tasks = [Task.create(user_id="ab"[i % 2], payload={"i": i}) for i in range(2500)]
    tasks[2200].payload["oops"] = {1, 2}  # made non-JSON after it was created
    with pytest.raises(SerializationError, match="JSON"):
        q.push_batch(tasks)
    stats = q.get_stats()
    assert stats["tasks_pending"] == 0 and stats["tasks_pushed"] == stats["tasks_deleted"] == 2000
    assert q.pop() is None
    del tasks[2200].payload["oops"]
    assert q.push_batch(tasks)["pushed"] == 2500  # the same ids can be queued again
    assert len(drain(q)) == 2500


def test_pop_many_leases_in_the_order_single_pops_would(q: TaskQueue) -> None:
    def fill() -> None:
        push_n(q, "a", 6)
        push_n(q, "b", 2, Priority.HIGH)
        push_n(q, "c", 2, Priority.CRITICAL)
        push_n(q, "b", 1, Priority.CRITICAL)

    fill()
    singles = [(t.user_id, t.priority, t.payload["i"]) for t in drain(q)]
    fill()
    batched: list[Task] = []
    while tasks := q.pop_many(4):
        assert len(tasks) <= 4
        assert len({t.lease_token for t in tasks}) == 1 and all(t.lease_deadline for t in tasks)
        batched += tasks
    assert [(t.user_id, t.priority, t.payload["i"]) for t in batched] == singles
    stats = q.get_stats()
    assert stats["tasks_active"] == 11 and stats["tasks_popped"] == 22
    codes, more, due = q.complete_and_pop_many([(t, 0.001, None) for t in batched], 3)
    assert codes == [1] * 11 and more == [] and due is None
    stats = q.get_stats()
    assert stats["tasks_active"] == 0 and stats["tasks_completed"] == 22


@pytest.mark.parametrize("count", [3, 16, 64])
def test_pop_many_follows_the_rotation_as_single_pops_on_ties(make_config: Any, count: int) -> None:
    """pop.lua reads the rotation ahead once per call and keeps it in step (issue 17): users
    whose virtual times tie are served in the sorted set's byte order of their names (upper case
    before lower case, "u10" before "u9", multi-byte names), whether the call reads all of the
    rotation (count 64) or only its first part (count 3, 16: read again when used up)."""
    users = ["u9", "u10", "B", "a", "é", "Z", "u1", "ab", "a-b", "u100"]
    q = TaskQueue(make_config(workers=[{"id": "w1", "assigned_users": users}], worker_id="w1"))

    def fill() -> None:
        for rnd in range(4):
            for u in users:
                q.push(Task.create(user_id=u, payload={"user": u, "i": rnd},
                                   priority=Priority.HIGH if rnd == 2 and u in ("a", "u10") else Priority.NORMAL))

    fill()
    singles = [(t.user_id, t.payload["i"]) for t in drain(q)]
    fill()
    batched: list[tuple[str | None, int]] = []
    while tasks := q.pop_many(count):
        batched += [(t.user_id, t.payload["i"]) for t in tasks]
        for t in tasks:
            q.delete_task(t.task_id)
    assert batched == singles


def test_batches_keep_a_runtime_cap_between_their_tasks(q: TaskQueue) -> None:
    """A cap set at runtime holds inside one pop_many (the leased counts are written once per
    call, read with what the call added) and a batched ack lets the tenant back at its place."""
    q.set_tenant_limits("a", concurrency=2)
    push_n(q, "a", 5)
    push_n(q, "b", 3)
    first = q.pop_many(10)
    assert [t.user_id for t in first] == ["a", "b", "a", "b", "b"]
    assert q.client.hget(q.keys.base + ":tleased", "a") == b"2"
    assert q.pop_many(10) == []  # a at its cap, b drained
    leased_a = [t for t in first if t.user_id == "a"]
    codes, more, _ = q.complete_and_pop_many([(t, 0.001, None) for t in first], 10)
    assert codes == [1] * 5
    assert [t.user_id for t in more] == ["a", "a"]  # back, up to its cap again
    assert q.client.hget(q.keys.base + ":tleased", "a") == b"2"
    assert q.client.hget(q.keys.base + ":tleased", "b") == b"0"  # (a 0 stays until the retention sweep)
    codes, more, _ = q.complete_and_pop_many([(t, 0.001, None) for t in [*more, leased_a[0]]], 10)
    assert codes == [1, 1, -1] and [t.user_id for t in more] == ["a"]
    codes, more, _ = q.complete_and_pop_many([(more[0], None, None)], 10)
    assert codes == [1] and more == []
    assert set(q.client.hvals(q.keys.base + ":tleased")) == {b"0"}
    q.fold_idle_tenants(window_seconds=0)
    q.fold_idle_tenants(window_seconds=0)  # (the first sweep marks them idle, the second folds)
    assert q.client.hlen(q.keys.base + ":tleased") == 0
    assert q.client.zcard(q.keys.base + ":leases") == 0
    assert not q.client.keys(q.keys.base + ":t:*")


def test_complete_and_pop_many_stores_results_and_rejects_lost_leases(q: TaskQueue) -> None:
    push_n(q, "a", 3)
    first = q.pop_many(2)
    stolen = first[1]
    q.release([stolen], count=False)  # its lease is gone: a late ack must be refused
    codes, nxt, _ = q.complete_and_pop_many([(first[0], 0.002, '{"v": 1}'), (stolen, 0.002, None)], 5)
    assert codes == [1, 0]
    assert sorted(t.payload["i"] for t in nxt) == [1, 2]  # the released task and the third one
    assert q.client.get(q.keys.result("a", first[0].task_id)) == b'{"v": 1}'
    again = nxt[0]
    codes, _, _ = q.complete_and_pop_many([(again, None, None), (again, None, None)], 1)
    assert codes == [1, -1]  # the same task twice in one call is acknowledged once
    stats = q.get_stats()
    assert stats["tasks_completed"] == 2 and stats["users"]["a"]["completed"] == 2


def test_stats_consistency(q: TaskQueue) -> None:
    push_n(q, "a", 5, Priority.HIGH)
    push_n(q, "b", 3, Priority.CRITICAL)
    t1, t2, t3 = q.pop(), q.pop(), q.pop()
    assert t1 and t2 and t3
    q.complete(t1)
    q.fail(t2, "x", retry=False)
    stats = q.get_stats()
    assert stats["tasks_pushed"] == 8 and stats["tasks_popped"] == 3
    assert stats["tasks_active"] == 1 and stats["tasks_completed"] == 1 and stats["dlq_size"] == 1
    assert stats["tasks_pending"] == 6 and stats["tasks_queued"] == 5
    assert stats["priorities"] == {4: 5, 6: 3}
    assert stats["users"]["a"]["pushed"] == 5 and stats["users"]["b"]["pushed"] == 3


def test_weights_give_proportional_shares(make_config: Any) -> None:
    q = TaskQueue(make_config(worker_id="w1", user_weights={"a": 3}))
    push_n(q, "a", 60)
    push_n(q, "b", 60)
    first = Counter(q.pop().user_id for _ in range(40))  # type: ignore[union-attr]
    assert first == {"a": 30, "b": 10}


def test_bad_input_is_rejected_before_redis(q: TaskQueue) -> None:
    for bad in ["", "a}b", "x:{y}", "new\nline", "x" * 1_000_000]:
        with pytest.raises(TaskValidationError):
            q.push(Task.create(payload={}), user_id=bad)
    for prio in [0, 7, "high!", None]:
        with pytest.raises(TaskValidationError):
            Task.create(user_id="a", priority=prio)  # type: ignore[arg-type]
    import datetime

    for arg in [datetime.datetime.now(), {1, 2}, object()]:
        with pytest.raises(SerializationError):
            q.push(Task.create(user_id="a", payload={"x": arg}))
    with pytest.raises(PayloadTooLargeError):
        q.push(Task.create(user_id="a", payload={"x": "y" * 2_000_000}))
    assert q.get_stats()["tasks_pushed"] == 0


def test_corrupt_body_is_dead_lettered_and_others_still_served(q: TaskQueue, redis_client: redis.Redis) -> None:
    ids = push_n(q, "a", 1)
    push_n(q, "b", 1)
    redis_client.hset(q.keys.task(ids[0]), "b", "{not json")
    got = drain(q)
    assert [t.user_id for t in got] == ["b"]
    (entry,) = q.get_dlq()
    assert entry.task_id == ids[0] and entry.failure_type == "corrupt" and "JSON" in entry.error
    assert entry.raw_body == "{not json"


def test_wrong_type_key_is_quarantined(q: TaskQueue, redis_client: redis.Redis) -> None:
    push_n(q, "a", 1)
    push_n(q, "b", 2)
    lane = q.keys.lane("a", Priority.NORMAL)
    redis_client.delete(lane)
    redis_client.set(lane, "garbage")
    got = drain(q)
    assert [t.user_id for t in got] == ["b", "b"]
    assert redis_client.keys("*quarantine*")


def test_wrong_type_former_lane_is_quarantined(q: TaskQueue, redis_client: redis.Redis) -> None:
    """A key of another type where the former zset lane was: moved aside, the lists served."""
    push_n(q, "a", 1)
    redis_client.set(q.keys.normal("a"), "garbage")
    push_n(q, "a", 1)
    got = drain(q)
    assert [t.user_id for t in got] == ["a", "a"]
    assert redis_client.keys(f"*quarantine*{q.keys.normal('a')}*")
    assert not redis_client.exists(q.keys.normal("a"))


def test_redis_unreachable_is_typed_and_prompt() -> None:
    from example_project.embedded_redis import free_port

    cfg = FairQueueConfig.create_default(
        assigned_users=["a"], redis=RedisConfig(port=free_port(), socket_connect_timeout=0.2,
                                                           socket_timeout=0.2))
    q = TaskQueue(cfg)
    start = time.monotonic()
    with pytest.raises(RedisUnavailableError):
        q.push(Task.create(user_id="a", payload={}))
    assert time.monotonic() - start < 5


def test_seed_legacy_example_runs(make_config: Any) -> None:
    config = make_config(workers=[{"id": "worker-001", "assigned_users": ["user:1", "user:2", "user:3"],
                                   "steal_targets": ["user:4", "user:5"]}], worker_id="worker-001")
    with TaskQueue(config) as queue:
        task = Task.create(user_id="user:1", priority=Priority.HIGH, payload={"action": "process_data",
                                                                               "data_id": 123})
        result = queue.push(task)
        assert result["success"]
        popped = queue.pop()
        assert popped is not None and popped.user_id == "user:1"
        assert popped.payload == {"action": "process_data", "data_id": 123}
        assert queue.delete_task(popped.task_id)
        stats = queue.get_stats()
        assert stats.get("tasks_active", 0) == 0 and stats["tasks_completed"] == 1


def test_push_for_a_user_no_worker_serves_is_refused(q: TaskQueue) -> None:
    from fairque_django.core.errors import UnservedUserError

    with pytest.raises(UnservedUserError, match="never"):
        q.push(Task.create(user_id="zed", payload={}))
    assert q.get_stats()["tasks_pushed"] == 0


def test_wait_and_run_histograms(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(worker_id="w1"))
    push_n(q, "a", 3)
    time.sleep(0.03)  # the scenario: each task waits ~30 ms in the queue
    for _ in range(3):
        t = q.pop()
        assert t is not None
        q.complete(t, duration=0.2)
    user = {k.decode(): int(v) for k, v in redis_client.hgetall(q.keys.metrics_user("a")).items()}
    total = {k.decode(): int(v) for k, v in redis_client.hgetall(q.keys.metrics_all).items()}
    assert sum(v for k, v in user.items() if k.startswith("w:") and k != "w:sum") == 3
    assert user["w:sum"] >= 3 * 25 and "w:5" not in user  # every wait was at least ~30 ms
    assert user["r:250"] == 3 and user["r:sum"] == 600
    assert total == user  # only one user so far
    assert sum(int(v) for v in redis_client.hvals(q.keys.metrics_throughput)) == 3


def test_metrics_can_be_turned_off(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(worker_id="w1", metrics=False))
    push_n(q, "a", 2)
    for _ in range(2):
        q.complete(q.pop(), duration=0.1)  # type: ignore[arg-type]
    assert not redis_client.keys(q.keys.base + ":m:*")


def test_time_fairness_charges_run_time(make_config: Any) -> None:
    q = TaskQueue(make_config(worker_id="w1", fairness="time"))
    push_n(q, "a", 100)
    push_n(q, "b", 100)
    served: list[str] = []
    for _ in range(66):
        t = q.pop()
        assert t is not None
        served.append(t.user_id or "")
        q.complete(t, duration=1.0 if t.user_id == "a" else 0.1)  # a's tasks cost 10x b's
    # equal shares of worker time: 10 of b's tasks for each of a's
    assert Counter(served) == {"a": 6, "b": 60}


def test_count_fairness_ignores_run_time(make_config: Any) -> None:
    q = TaskQueue(make_config(worker_id="w1"))
    push_n(q, "a", 50)
    push_n(q, "b", 50)
    served = []
    for _ in range(20):
        t = q.pop()
        assert t is not None
        served.append(t.user_id)
        q.complete(t, duration=1.0 if t.user_id == "a" else 0.1)
    assert Counter(served) == {"a": 10, "b": 10}


def test_held_connection_survives_a_server_side_close(q: TaskQueue, redis_client: redis.Redis) -> None:
    """The queue keeps one connection for its hot paths; one the server closed is replaced."""
    assert q.push(Task.create(user_id="a", payload={"n": 1}))["success"]
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert q.push(Task.create(user_id="a", payload={"n": 2}))["success"]  # no error, nothing lost
    assert [t.payload["n"] for t in drain(q)] == [1, 2]


def test_held_connection_never_makes_other_threads_wait(q: TaskQueue, redis_client: redis.Redis) -> None:
    """While one thread blocks on the held connection, others use the pool."""
    import threading

    got: list[Task | None] = []
    waiter = threading.Thread(target=lambda: got.append(q.wait_and_pop("w1", timeout=5.0)[0]))
    waiter.start()
    eventually(lambda: blocked_clients(redis_client) == 1, timeout=5,
               what="the waiter to block on the held connection")
    started = time.monotonic()
    assert q.push(Task.create(user_id="b", payload={"n": 1}))["success"]
    assert time.monotonic() - started < 1.0
    waiter.join(5)
    assert got and got[0] is not None and got[0].payload == {"n": 1}

def test_queues_of_one_client_share_one_held_connection(q: TaskQueue, redis_client: redis.Redis) -> None:
    def connections() -> set[str]:  # the connections to the test database, as the server lists them
        db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
        return {str(c["id"]) for c in redis_client.client_list() if str(c.get("db")) == db}

    q.push(Task.create(user_id="b", payload={"n": 1}))
    before = connections()
    for _ in range(20):  # queues made and dropped (never closed) take no connection of their own
        other = TaskQueue(q.config)
        assert other.client is q.client
        other.push(Task.create(user_id="b", payload={"n": 2}))
    assert connections() == before


def park(q: TaskQueue, worker: str = "w1", ms: int = 60_000) -> str:
    """Park a slot of ``worker`` as a waiting worker does (without blocking); returns its token."""
    step = q.pop_step(worker, park_ms=ms)
    assert not step.tasks  # nothing was ready: parked
    return step.token


def unpark(q: TaskQueue, token: str, worker: str = "w1") -> PopStep:
    return q.pop_step(worker, unpark=token)


def test_push_leases_a_task_straight_to_a_parked_slot(q: TaskQueue, redis_client: redis.Redis) -> None:
    token = park(q)
    task = Task.create(user_id="a", payload={"n": 1})
    assert q.push(task)["success"]
    hand = q.keys.hand(token)
    items = redis_client.lrange(hand, 0, -1)
    assert len(items) == 1 and items[0].split(b"\t")[0] == task.task_id.encode()
    fields = q.get_task_state(task.task_id)
    assert fields is not None
    assert (fields["st"], fields["tok"], fields["wk"]) == ("leased", token, "w1")
    assert redis_client.zcard(f"{q.keys.base}:ready:w1") == 0  # never queued
    assert redis_client.llen(q.keys.wake("w1")) == 0  # nobody else woken
    assert not redis_client.zrange(q.keys.parked("w1"), 0, -1)  # the slot is taken
    stats = q.get_stats()
    assert (stats["tasks_pushed"], stats["tasks_popped"], stats["tasks_active"]) == (1, 1, 1)
    step = unpark(q, token)  # the wait is over: it pops nothing more
    assert step.handed_over and not step.tasks
    handed = q.take_handed(token, "w1").tasks[0]
    assert (handed.task_id, handed.attempts, handed.payload) == (task.task_id, 1, {"n": 1})
    q.complete(handed)
    stats = q.get_stats()
    assert (stats["tasks_completed"], stats["tasks_active"]) == (1, 0)


def test_no_hand_off_while_other_work_is_ready_or_after_the_park_expired(q: TaskQueue,
                                                                         redis_client: redis.Redis) -> None:
    push_n(q, "a", 1)
    token = "t0ken"
    redis_client.zadd(q.keys.parked("w1"), {f"{token}\tw1\t30000\t-": time.time() * 1000 + 60_000})
    push_n(q, "b", 1)  # a is ready: b's task queues and waits its turn
    assert redis_client.llen(q.keys.hand(token)) == 0
    assert [t.user_id for t in drain(q)] == ["a", "b"]
    redis_client.zadd(q.keys.parked("w1"), {f"{token}\tw1\t30000\t-": time.time() * 1000 - 1})  # expired
    push_n(q, "b", 1)
    assert redis_client.llen(q.keys.hand(token)) == 0
    assert [t.user_id for t in drain(q)] == ["b"]


def test_a_slot_about_to_wait_takes_ready_work_at_once(q: TaskQueue, redis_client: redis.Redis) -> None:
    push_n(q, "a", 1)
    started = time.monotonic()
    task, _ = q.wait_and_pop("w1", timeout=5.0)
    assert task is not None and task.user_id == "a"
    assert time.monotonic() - started < 2.0  # the '-' on its hand list ended the wait at once
    assert not redis_client.zrange(q.keys.parked("w1"), 0, -1)
    assert not redis_client.keys(f"{q.keys.base}:hand:*")


def test_waiting_worker_gets_a_pushed_task_and_leaves_no_park_behind(q: TaskQueue,
                                                                     redis_client: redis.Redis) -> None:
    import threading

    got: list[Task | None] = []
    waiter = threading.Thread(target=lambda: got.append(q.wait_and_pop("w1", timeout=5.0)[0]))
    waiter.start()
    eventually(lambda: redis_client.zcard(q.keys.parked("w1")), timeout=5, interval=0.01, what="the slot parked")
    pusher = TaskQueue(q.config)
    task = Task.create(user_id="b", payload={"n": 7})
    assert pusher.push(task)["success"]
    waiter.join(5)
    assert got and got[0] is not None and got[0].task_id == task.task_id and got[0].lease_token
    assert not redis_client.zrange(q.keys.parked("w1"), 0, -1)
    assert not redis_client.keys(f"{q.keys.base}:hand:*")
    q.complete(got[0])
    assert q.get_stats()["tasks_completed"] == 1
    task2, _ = q.wait_and_pop("w1", timeout=0.2)  # nothing: the wait times out and unparks
    assert task2 is None and not redis_client.zrange(q.keys.parked("w1"), 0, -1)


def test_a_hand_off_serves_in_the_order_a_pop_would(make_config: Any, redis_client: redis.Redis) -> None:
    """The same pushes give the same pop order and fairness state with or without a parked slot."""
    orders = []
    for prefix, parked in (("fqa", True), ("fqb", False)):
        q = TaskQueue(make_config(worker_id="w1", stats_prefix=prefix))
        token = park(q) if parked else ""
        first = Task.create(user_id="a", payload={"i": 0})
        assert q.push(first)["success"]
        if parked:
            assert redis_client.llen(q.keys.hand(token)) == 1
        else:
            assert q.pop("w1") is not None
        for user, i in (("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)):
            assert q.push(Task.create(user_id=user, payload={"i": i}))["success"]
        orders.append(([(t.user_id, t.payload["i"]) for t in drain(q)],
                       redis_client.hgetall(q.keys.vclock),
                       redis_client.hgetall(q.keys.vfinish("w1"))))
    assert orders[0][1] and orders[0][2]  # the fairness state was read
    assert orders[0] == orders[1]


def test_a_task_handed_over_as_the_wait_ends_is_not_lost(q: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wait ended on a wake-up, then a push leased a task to the slot before it unparked:
    the unpark answers -2 and the slot takes the task from its hand list."""
    real = q.transport.round_trip
    pushed: list[Task] = []

    def racing(commands: Any, **kw: Any) -> list[Any]:
        commands = list(commands)
        if len(commands) != 2 or commands[1][0] != "BLPOP":
            return real(commands, **kw)
        first = real([commands[0]])[0]  # parks: nothing is ready
        task = Task.create(user_id="a", payload={"n": 1})
        assert TaskQueue(q.config).push(task)["success"]  # leased to the parked slot
        pushed.append(task)
        return [first, [q.keys.wake("w1").encode(), b"1"]]  # as if a wake-up had ended the wait

    monkeypatch.setattr(q.transport, "round_trip", racing)
    task, _ = q.wait_and_pop("w1", timeout=1.0)
    assert task is not None and task.task_id == pushed[0].task_id and task.attempts == 1
    assert not q.client.keys(f"{q.keys.base}:hand:*")
    q.complete(task)
    assert q.get_stats()["tasks_completed"] == 1


def test_a_task_handed_to_a_slot_that_died_runs_elsewhere(make_config: Any, redis_client: redis.Redis) -> None:
    """A worker killed while parked never reads its hand list: the task's lease expires and
    another worker runs it (the park itself expires with the wait)."""
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"]},
                                  {"id": "w2", "assigned_users": [], "steal_targets": ["a"]}])
    q = TaskQueue(config)
    step = q.pop_step("w1", lease_seconds=0.05, park_ms=60_000)  # 50 ms leases
    assert not step.tasks  # parked, then "killed"
    token = step.token
    task = Task.create(user_id="a", payload={"n": 1})
    assert q.push(task)["success"]
    assert redis_client.llen(q.keys.hand(token)) == 1  # handed to the dead slot
    other = eventually(lambda: q.pop("w2"), timeout=5, what="the 50 ms lease to expire")
    assert other.task_id == task.task_id and other.attempts == 2  # the expired lease is taken back; w2 may steal a
    assert q.get_stats()["tasks_expired"] == 1


def test_scripts_lost_by_redis_are_loaded_again(q: TaskQueue, redis_client: redis.Redis) -> None:
    """After SCRIPT FLUSH (a Redis restart or failover), every call loads its script and runs."""
    redis_client.script_flush()
    assert q.push(Task.create(user_id="a", payload={"n": 1}))["success"]
    redis_client.script_flush()
    assert q.push_batch([Task.create(user_id="b", payload={"n": i}) for i in (2, 3)])["pushed"] == 2
    redis_client.script_flush()
    first = q.pop("w1")
    assert first is not None
    redis_client.script_flush()
    task, _ = q.wait_and_pop("w1", timeout=0.2)  # the park's pop is refused: it pops instead
    assert task is not None
    redis_client.script_flush()
    q.complete(first)
    q.complete(task)
    assert [t.payload["n"] for t in drain(q)] == [3]
    assert q.get_stats()["tasks_completed"] == 3


def test_an_ack_and_pop_sent_now_is_read_later_even_after_script_flush(q: TaskQueue,
                                                                        redis_client: redis.Redis) -> None:
    """send_complete_and_pop: the round trip goes out at once on a held connection, its reply is
    read by result() (a prefetching slot: before and after its task); a NOSCRIPT reply loads the
    script and runs the call again."""
    for n in range(3):
        assert q.push(Task.create(user_id="a", payload={"n": n}))["success"]
    via = q.hold_connection()
    assert via is not None
    first = q.pop("w1")
    assert first is not None
    sent = q.send_complete_and_pop([(first, 0.001, None)], 1, worker_id="w1", via=via)
    codes, tasks, _ = sent.result()
    assert codes == [1] and [t.payload["n"] for t in tasks] == [1]
    redis_client.script_flush()  # Redis lost its scripts (a restart, a failover)
    sent = q.send_complete_and_pop([(tasks[0], 0.001, None)], 1, worker_id="w1", via=via)
    codes, tasks, _ = sent.result()
    assert codes == [1] and [t.payload["n"] for t in tasks] == [2]
    codes, tasks, due = q.send_complete_and_pop([(tasks[0], None, None)], 1, worker_id="w1", via=via).result()
    assert codes == [1] and tasks == [] and due is None
    via.close()
    stats = q.get_stats()
    assert stats["tasks_completed"] == 3 and stats["tasks_active"] == 0 and stats["tasks_queued"] == 0


def test_every_key_a_script_builds_is_named_in_keys_py() -> None:
    """The scripts join suffixes to the prefix they are given; each is one that Keys builds."""
    import inspect
    import re

    from fairque_django.core.keys import Keys
    from fairque_django.core.scripts import SCRIPT_NAMES, source

    keys = Keys("fq")
    names = []
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            names.append(getattr(keys, name))
        elif inspect.isfunction(member):
            arity = len(inspect.signature(member).parameters) - 1  # all but self: names, ids, numbers
            names.append(getattr(keys, name)(*["X"] * arity))
    suffixes = {s for n in SCRIPT_NAMES for s in re.findall(r"\bP \.\. '(:[^']+)'", source(n))}
    assert suffixes  # the scripts do build keys this way
    unknown = sorted(s for s in suffixes if not any(str(k).startswith(keys.base + s) for k in names))
    assert unknown == []


def test_url_clients_keep_max_connections(redis_url: str) -> None:
    from fairque_django.core.connection import build_client

    client = build_client(RedisConfig(url=redis_url, max_connections=7))
    assert client.connection_pool.max_connections == 7
    client.close()


def test_exact_steal_targets_are_mirrored_again_after_redis_lost_them(make_config: Any,
                                                                      redis_client: redis.Redis) -> None:
    """Issue 14 item 3: a worker's exact steal targets live in a Redis set mirrored from the
    configuration; when Redis comes back empty, the queue mirrors them again (it checks every
    ``steal_set_recheck_seconds``) instead of never serving those tenants until a restart."""
    q = TaskQueue(make_config())  # w1: assigned a, b, c; steals d (exactly)
    q.push(Task.create(user_id="d", payload={}))
    assert q.pop("w1") is not None  # stolen through the mirrored set
    redis_client.flushdb()  # an empty restart
    q.steal_set_recheck_seconds = 0.0
    lost = Task.create(user_id="d", payload={})
    q.push(lost)
    got = q.pop("w1")
    assert got is not None and got.task_id == lost.task_id


# --- the stored body: compact, and bodies of the former format still decode ----------------------
OLD_BODY = {"id": "", "user": "a", "priority": 4, "created": 1733580000.25, "func": "reports.build",
            "args": [1, "x"], "kwargs": {"k": True}, "payload": {"p": 1}, "max_retries": 2, "meta": {"m": "v"}}


def test_a_stored_body_names_neither_its_id_nor_its_user(q: TaskQueue, redis_client: redis.Redis) -> None:
    t = Task.create(user_id="a", priority=Priority.HIGH, func_name="reports.build", args=[1], kwargs={"k": 2})
    q.push(t)
    raw = redis_client.hget(q.keys.task(t.task_id), "b")
    assert raw is not None and json.loads(raw) == {"f": "reports.build", "a": [1], "k": {"k": 2},
                                                   "c": round(t.created_at * 1000), "p": 4}
    popped = q.pop()
    assert popped is not None
    assert (popped.task_id, popped.user_id, popped.priority, popped.func_name, popped.args, popped.kwargs,
            popped.created_at) == (t.task_id, "a", Priority.HIGH, "reports.build", [1], {"k": 2}, t.created_at)
    # a NORMAL task's body omits its priority
    n = Task.create(user_id="a", payload={"x": 1})
    q.push(n)
    assert "p" not in json.loads(redis_client.hget(q.keys.task(n.task_id), "b") or b"{}")


def test_a_null_creation_time_reads_as_unknown_not_a_crash() -> None:
    """``"c": null`` (or ``"created": null``) is read as absent: creation time 0, no TypeError."""
    for body in ({"f": "reports.build", "c": None},
                 {"id": "t1", "user": "a", "func": "reports.build", "created": None}):
        task = Task.from_json(json.dumps(body), "t1", "a")
        assert (task.task_id, task.user_id, task.func_name, task.created_at) == ("t1", "a", "reports.build", 0.0)


def test_a_body_of_the_former_format_still_pops_and_dead_letters(q: TaskQueue, redis_client: redis.Redis) -> None:
    """Tasks queued before the compact format (their body names id, user and priority, with long
    keys and the creation time in seconds) pop, fail into the DLQ and requeue as they did."""
    (tid,) = push_n(q, "a", 1, priority=Priority.HIGH)
    redis_client.hset(q.keys.task(tid), "b", json.dumps({**OLD_BODY, "id": tid}))
    t = q.pop()
    assert t is not None
    assert (t.task_id, t.user_id, t.priority, t.func_name, t.args, t.kwargs, t.payload, t.created_at,
            t.max_retries, t.metadata) == (tid, "a", Priority.HIGH, "reports.build", [1, "x"], {"k": True}, {"p": 1},
                                           1733580000.25, 2, {"m": "v"})
    q.fail(t, "bad", retry=False)
    [entry] = q.get_dlq()
    assert entry.raw_body is None and entry.task.func_name == "reports.build" and entry.task.task_id == tid
    assert entry.task.created_at == 1733580000.25
    assert q.requeue_dead([tid]) == [tid]
    again = q.pop()
    assert again is not None and again.args == [1, "x"]


def test_from_json_reads_both_formats_and_to_json_round_trips() -> None:
    old = Task.from_json(json.dumps({**OLD_BODY, "id": "t1"}))
    assert (old.task_id, old.user_id, old.priority, old.created_at) == ("t1", "a", Priority.HIGH, 1733580000.25)
    new = Task.create(user_id="u", func_name="f", args=[1], priority=5)
    assert Task.from_json(new.to_json()) == new  # to_json() names the id and the user
    stored = new.to_json(ids=False)
    assert Task.from_json(stored, new.task_id, "u") == new
    with pytest.raises(CorruptTaskError, match="missing field 'id'"):
        Task.from_json(stored)  # a stored body alone does not say whose it is
