"""AsyncTaskQueue against a real Redis, including interop with the synchronous TaskQueue."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from fairque_django.core.aio import AsyncTaskQueue
from fairque_django.core.config import FairQueueConfig, RedisConfig
from fairque_django.core.errors import LeaseLostError, RedisUnavailableError, TaskValidationError
from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue
from tests.support import eventually_async
from tests.support.redis_state import blocked_clients

T = TypeVar("T")


def run(main: Callable[[AsyncTaskQueue], Awaitable[T]], config: FairQueueConfig, **kw: Any) -> T:
    """Run ``main(queue)`` in a fresh event loop with a queue that is closed afterwards."""

    async def wrapper() -> T:
        async with AsyncTaskQueue(config, **kw) as q:
            return await main(q)

    return asyncio.run(wrapper())


async def push_n(q: AsyncTaskQueue, user: str, n: int, priority: Priority = Priority.NORMAL,
                 **kw: Any) -> list[str]:
    ids = []
    for i in range(n):
        t = Task.create(user_id=user, priority=priority, payload={"user": user, "i": i}, **kw)
        assert (await q.push(t))["success"]
        ids.append(t.task_id)
    return ids


async def drain(q: AsyncTaskQueue, worker: str | None = None) -> list[Task]:
    out = []
    while (t := await q.pop(worker)) is not None:
        assert await q.delete_task(t.task_id)
        out.append(t)
    return out


@pytest.fixture
def cfg(make_config: Any) -> FairQueueConfig:
    config: FairQueueConfig = make_config(worker_id="w1")
    return config


def test_push_pop_complete(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        t = Task.create(user_id="a", priority=Priority.HIGH, payload={"x": 1})
        res = await q.push(t)
        assert res == {"success": True, "task_id": t.task_id, "user_id": "a", "priority": 4,
                       "duplicate": False, "state": "queued"}
        assert (await q.push(t))["duplicate"] is True
        assert await q.user_depth("a") == {"critical": 0, "normal": 1, "live": 1}
        got = await q.pop()
        assert got is not None and got.task_id == t.task_id and got.payload == {"x": 1}
        assert got.attempts == 1 and got.worker_id == "w1" and got.lease_token
        state = await q.get_task_state(t.task_id)
        assert state is not None and state["st"] == "leased"
        assert await q.pop() is None
        await q.complete(got, duration=0.01)
        assert await q.get_task_state(t.task_id) is None
        await q.complete(got)  # already finished (no such task): not a late ack, like TaskQueue
        stats = await q.get_stats()
        assert stats["tasks_completed"] == 1 and stats["tasks_late_acks"] == 0

    run(main, cfg)


def test_complete_twice_and_delete_task(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        a, b = await push_n(q, "a", 2)
        t = await q.pop()
        assert t is not None and t.task_id == a
        assert await q.delete_task(a) is True  # ack through the lease this queue holds
        assert await q.delete_task(b) is True  # not leased here: plain delete
        assert await q.delete_task("nope") is False
        assert await q.pop() is None
        stats = await q.get_stats()
        assert stats["tasks_completed"] == 1 and stats["tasks_deleted"] == 1 and stats["tasks_pending"] == 0

    run(main, cfg)


def test_round_robin_over_three_users(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        await push_n(q, "a", 30)
        await push_n(q, "b", 3)
        await push_n(q, "c", 3)
        order = []
        for _ in range(9):
            t = await q.pop()
            assert t is not None
            order.append(t.user_id)
            await q.complete(t)
        assert Counter(order) == {"a": 3, "b": 3, "c": 3}
        for i in range(0, 9, 3):
            assert set(order[i:i + 3]) == {"a", "b", "c"}  # strict rotation
        rest = await drain(q)
        assert [t.user_id for t in rest] == ["a"] * 27

    run(main, cfg)


def test_pop_many_keeps_the_rotation(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        await push_n(q, "a", 5)
        await push_n(q, "b", 2)
        first = await q.pop_many(4)
        assert [t.user_id for t in first] == ["a", "b", "a", "b"]
        assert len({t.lease_token for t in first}) == 1
        rest = await q.pop_many(10)
        assert [t.user_id for t in rest] == ["a"] * 3
        assert await q.pop_many(3) == []
        for t in first + rest:
            await q.complete(t)
        assert (await q.get_stats())["tasks_completed"] == 7

    run(main, cfg)


def test_sync_push_async_pop(cfg: FairQueueConfig) -> None:
    sync_q = TaskQueue(cfg)
    t = Task.create(user_id="b", payload={"from": "sync"})
    assert sync_q.push(t)["success"]

    async def main(q: AsyncTaskQueue) -> Task:
        got = await q.pop()
        assert got is not None and got.task_id == t.task_id and got.payload == {"from": "sync"}
        return got

    popped = run(main, cfg)
    sync_q.complete(popped)  # an async lease acked by the sync queue
    stats = sync_q.get_stats()
    assert stats["tasks_completed"] == 1 and stats["tasks_active"] == 0


def test_async_push_sync_pop(cfg: FairQueueConfig) -> None:
    tasks = [Task.create(user_id=u, payload={"u": u}) for u in ("a", "b", "c")]

    async def push(q: AsyncTaskQueue) -> None:
        for t in tasks:
            assert (await q.push(t))["success"]

    run(push, cfg)
    sync_q = TaskQueue(cfg)
    got = [sync_q.pop() for _ in range(3)]
    assert sorted(t.task_id for t in got if t) == sorted(t.task_id for t in tasks)
    assert sync_q.pop() is None
    first = got[0]
    assert first is not None

    async def finish(q: AsyncTaskQueue) -> dict[str, Any]:
        await q.complete(first)  # a sync lease acked by the async queue
        return await q.get_stats()

    stats = run(finish, cfg)
    assert stats["tasks_completed"] == 1 and stats["tasks_active"] == 2


def test_lease_expiry_and_late_ack_rejected(make_config: Any) -> None:
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a"]}, {"id": "w2", "steal_targets": ["a"]}])

    async def main() -> None:
        async with AsyncTaskQueue(cfg, worker_id="w1") as q1, AsyncTaskQueue(cfg, worker_id="w2") as q2:
            (tid,) = await push_n(q1, "a", 1)
            t1 = await q1.pop(lease_seconds=0.05)
            assert t1 is not None and t1.attempts == 1
            assert await q2.pop() is None
            # stolen after the lease expired (exact steal target: steal set synced)
            t2 = await eventually_async(q2.pop, timeout=5, what="the 50 ms lease to expire")
            assert t2.task_id == tid
            assert t2.attempts == 2 and t2.retry_count == 1
            assert await q1.delete_task(tid) is False  # late ack rejected
            with pytest.raises(LeaseLostError):
                await q1.complete(t1)
            with pytest.raises(LeaseLostError):
                await q1.fail(t1, "late")
            assert await q1.extend([t1]) == [tid]
            assert await q2.extend([t2], lease_seconds=5) == []
            await q2.complete(t2)
            stats = await q1.get_stats()
            assert stats["tasks_completed"] == 1 and stats["tasks_expired"] == 1
            assert stats["tasks_late_acks"] == 3

    asyncio.run(main())


def test_release_hands_tasks_back(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        (tid,) = await push_n(q, "a", 1)
        t = await q.pop()
        assert t is not None
        assert await q.release([t]) == 1
        assert await q.release([]) == 0
        again = await q.pop()
        assert again is not None and again.task_id == tid and again.attempts == 1
        await q.complete(again)
        assert (await q.get_stats())["tasks_released"] == 1

    run(main, cfg)


def test_fail_retry_dlq_and_requeue(make_config: Any) -> None:
    cfg = make_config(worker_id="w1", retry_backoff_base_seconds=0.05, default_max_retries=1)

    async def main(q: AsyncTaskQueue) -> None:
        (tid,) = await push_n(q, "a", 1)
        t = await q.pop()
        assert t is not None
        assert await q.fail(t, ValueError("boom"), traceback="TB1") == "retry"
        state = await q.get_task_state(tid)
        assert state is not None and state["st"] == "delayed"
        task, due = await q.pop_reply()
        assert task is None and due is not None and due <= 0.05
        t = await eventually_async(q.pop, timeout=5, what="the retry's backoff")
        assert t.retry_count == 1
        assert await q.fail(t, ValueError("boom 2"), traceback="TB2") == "dead"
        assert await q.pop() is None
        assert await q.dlq_size() == 1
        (entry,) = await q.get_dlq()
        assert entry.task_id == tid and entry.user_id == "a" and entry.error == "boom 2"
        assert entry.error_type == "ValueError" and entry.traceback == "TB2" and entry.attempts == 2
        dead = await q.get_dead(tid)
        assert dead is not None and dead.task_id == tid
        assert await q.get_dead("nope") is None
        stats = await q.get_stats()
        assert stats["tasks_failed"] == 2 and stats["tasks_retried"] == 1 and stats["tasks_dead"] == 1

        assert await q.requeue_dead([tid, "nope"]) == [tid]
        assert await q.dlq_size() == 0
        t = await q.pop()
        assert t is not None and t.task_id == tid and t.retry_count == 0
        assert await q.fail(t, "no retry", retry=False) == "dead"
        assert await q.requeue_dead() == [tid]  # all of them
        t = await q.pop()
        assert t is not None
        await q.fail(t, "x", retry=False)
        ids = await push_n(q, "b", 2)
        for _ in ids:
            t = await q.pop()
            assert t is not None
            await q.fail(t, "x", retry=False)
        assert await q.requeue_dead([]) == []
        assert await q.delete_dead([ids[0]]) == [ids[0]]
        assert await q.purge_dlq() == 2
        assert await q.get_dlq() == []
        stats = await q.get_stats()
        assert stats["tasks_pending"] == 0 and stats["dlq_size"] == 0

    run(main, cfg)


def test_dlq_api_does_not_touch_live_tasks(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        (tid,) = await push_n(q, "a", 1)
        assert await q.requeue_dead([tid]) == []
        assert await q.delete_dead([tid]) == []
        assert await q.pop() is not None

    run(main, cfg)


def test_push_batch(cfg: FairQueueConfig) -> None:
    tasks = [Task.create(user_id="abcd"[i % 4], payload={"i": i}) for i in range(2500)]

    async def main(q: AsyncTaskQueue) -> None:
        res = await q.push_batch(tasks)
        assert res["pushed"] == 2500 and res["success"] and res["task_ids"] == [t.task_id for t in tasks]
        again = await q.push_batch(tasks[:3])
        assert again == {"success": False, "pushed": 0, "task_ids": [],
                         "duplicates": [t.task_id for t in tasks[:3]]}
        assert (await q.push_batch([]))["pushed"] == 0
        bad = [Task.create(user_id="a", payload={}), Task.create(user_id="a", payload={})]
        bad[1].user_id = "bad user"
        with pytest.raises(TaskValidationError):
            await q.push_batch(bad)  # nothing written
        assert (await q.get_stats())["tasks_pushed"] == 2500
        got = await drain(q)
        assert len(got) == 2500 and len({t.task_id for t in got}) == 2500

    run(main, cfg)


def test_get_stats(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        await push_n(q, "a", 5, Priority.HIGH)
        await push_n(q, "b", 3, Priority.CRITICAL)
        await q.push(Task.create(user_id="c", payload={}, delay_seconds=60))
        t1, t2, t3 = await q.pop(), await q.pop(), await q.pop()
        assert t1 and t2 and t3
        await q.complete(t1)
        await q.fail(t2, "x", retry=False)
        stats = await q.get_stats()
        assert stats == {**stats, "tasks_pushed": 9, "tasks_popped": 3, "tasks_active": 1,
                         "tasks_completed": 1, "dlq_size": 1, "tasks_delayed": 1, "tasks_pending": 7,
                         "tasks_queued": 5, "priorities": {3: 1, 4: 5, 6: 3}}
        assert stats["users"]["a"]["pushed"] == 5 and stats["users"]["b"]["pushed"] == 3
        assert stats == {**TaskQueue(q.config).get_stats(), "timestamp": stats["timestamp"]}

    run(main, cfg)


def test_stealing_syncs_steal_set(make_config: Any) -> None:
    cfg = make_config(workers=[
        {"id": "w1", "assigned_users": ["a", "b"], "steal_targets": ["c"]},
        {"id": "w2", "assigned_users": ["c", "d"], "steal_targets": ["a"]},
    ])

    async def main() -> None:
        async with AsyncTaskQueue(cfg, worker_id="w1") as q1:
            await push_n(q1, "a", 2)
            await push_n(q1, "c", 2)
            await push_n(q1, "d", 2)
            got = [await q1.pop() for _ in range(5)]
            assert [t.user_id for t in got if t] == ["a", "a", "c", "c"]
            assert got[4] is None  # d is not stealable by w1
            assert await q1.pop("w2") is not None  # another worker id on the same queue

    asyncio.run(main())


def test_owned_client_closed_given_client_left_open(cfg: FairQueueConfig, redis_url: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            async with AsyncTaskQueue(cfg, client) as q:
                await push_n(q, "a", 1)
            assert q.client is client
            assert await client.ping()  # still usable: the queue did not own it
        finally:
            await client.aclose()
        q2 = AsyncTaskQueue(cfg)
        await q2.dlq_size()
        await q2.close()

    asyncio.run(main())


def test_redis_unreachable_is_typed_and_prompt() -> None:
    from example_project.embedded_redis import free_port

    cfg = FairQueueConfig.create_default(
        assigned_users=["a"], redis=RedisConfig(port=free_port(), socket_connect_timeout=0.2,
                                                           socket_timeout=0.2))

    async def main(q: AsyncTaskQueue) -> None:
        for call in (lambda: q.push(Task.create(user_id="a", payload={})), q.pop, q.get_stats,
                     lambda: q.wait_for_work(timeout=0.1)):
            start = time.monotonic()
            with pytest.raises(RedisUnavailableError):
                await call()
            assert time.monotonic() - start < 5

    run(main, cfg)


def test_wait_for_work(cfg: FairQueueConfig, redis_client: redis.Redis) -> None:
    async def blocked() -> bool:
        return blocked_clients(redis_client) == 1

    async def main(q: AsyncTaskQueue) -> None:
        start = time.monotonic()
        assert await q.wait_for_work(timeout=0.2) is False
        assert 0.15 <= time.monotonic() - start < 2
        assert await q.wait_for_work(timeout=0) is False

        waiter = asyncio.create_task(q.wait_for_work(timeout=5))
        await eventually_async(blocked, timeout=5, what="the waiter to block in BLPOP")
        assert not waiter.done()
        async with AsyncTaskQueue(q.config) as other:  # another client pushes
            pushed = time.monotonic()
            await push_n(other, "a", 1)
        assert await asyncio.wait_for(waiter, 2) is True
        assert time.monotonic() - pushed < 1
        # a push from the synchronous queue wakes an async waiter too
        waiter = asyncio.create_task(q.wait_for_work(timeout=5))
        await eventually_async(blocked, timeout=5, what="the waiter to block in BLPOP")
        await asyncio.to_thread(TaskQueue(q.config).push, Task.create(user_id="b", payload={}))
        assert await asyncio.wait_for(waiter, 2) is True

    run(main, cfg)


# Methods only one side has, by nature: the sync context manager and the async close; the thread
# worker's prefetch, sent now on a held connection and read later (an asyncio caller awaits instead).
ONE_SIDED = {"aclose", "send_complete_and_pop", "hold_connection"}


def test_async_and_sync_queues_expose_the_same_operations() -> None:
    """Same public methods, same parameters (names, kinds, defaults); every async one a coroutine."""
    import inspect

    def public(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
                if inspect.isfunction(member) and not name.startswith("_") and name not in ONE_SIDED}

    sync, aio = public(TaskQueue), public(AsyncTaskQueue)
    assert sorted(sync) == sorted(aio)
    for name, signature in sync.items():
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in aio[name].parameters.values()], name
        assert inspect.iscoroutinefunction(getattr(AsyncTaskQueue, name)), name


def test_complete_and_pop_and_pop_many_reply(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        await push_n(q, "a", 2)
        await push_n(q, "b", 2)
        first = await q.pop()
        assert first is not None and first.user_id == "a"
        code, nxt, due = await q.complete_and_pop(first, duration=0.01, result_json='{"ok": 1}')
        assert code == 1 and nxt is not None and nxt.user_id == "b" and due is None
        assert await q.get_result(first.task_id, user_id="a") == {"ok": 1}
        codes, more, _ = await q.complete_and_pop_many([(nxt, None, None)], 5)
        assert codes == [1] and [t.user_id for t in more] == ["a", "b"]
        code, none, due = await q.complete_and_pop(more[0])
        assert (code, none) == (1, None) and due is not None  # more[1]'s lease is due one day
        assert (await q.complete_code(more[1])) == 1
        assert await q.pop_many_reply(3) == ([], None)
        assert (await q.get_stats())["tasks_completed"] == 4

    run(main, cfg)


def test_wait_and_pop_gets_a_pushed_task_handed_over(cfg: FairQueueConfig) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        waiting = asyncio.ensure_future(q.wait_and_pop("w1", timeout=5.0))
        await eventually_async(lambda: q.client.zcard(q.keys.parked("w1")), timeout=5, interval=0.01,
                               what="the slot parked")
        task = Task.create(user_id="b", payload={"n": 7})
        TaskQueue(q.config).push(task)  # a push from another process would do the same
        got, _ = await asyncio.wait_for(waiting, 5)
        assert got is not None and got.task_id == task.task_id and got.attempts == 1
        assert not await q.client.zrange(q.keys.parked("w1"), 0, -1)
        await q.complete(got)
        nothing, _ = await q.wait_and_pop("w1", timeout=0.1)  # times out and unparks
        assert nothing is None and not await q.client.zrange(q.keys.parked("w1"), 0, -1)

    run(main, cfg)


def test_scripts_lost_by_redis_are_loaded_again(cfg: FairQueueConfig, redis_client: redis.Redis) -> None:
    async def main(q: AsyncTaskQueue) -> None:
        redis_client.script_flush()
        assert (await q.push(Task.create(user_id="a", payload={"n": 1})))["success"]
        redis_client.script_flush()
        assert (await q.push_batch([Task.create(user_id="b", payload={"n": 2})]))["pushed"] == 1
        redis_client.script_flush()
        got = await q.pop()
        assert got is not None
        redis_client.script_flush()
        assert (await q.complete_and_pop(got))[0] == 1

    run(main, cfg)
