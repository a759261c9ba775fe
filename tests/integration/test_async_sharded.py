"""The asyncio queue and worker on a sharded prefix (``queue.shards`` > 1): ``open_async_queue`` gives an
``AsyncShardedTaskQueue`` that routes and merges as ``ShardedTaskQueue`` does (the same operations,
``core/shardops.py``), on one Redis and on a three-master cluster; an ``AsyncWorker`` serves every shard;
tasks pushed by either side are served by the other's worker.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from redis.cluster import RedisCluster

from fairque_django import AsyncShardedTaskQueue, AsyncTaskQueue, AsyncWorker, Task, Worker, open_async_queue
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.errors import DependencyError
from fairque_django.core.results import CancelResult, TaskStatus
from fairque_django.core.sharded import ShardedTaskQueue, open_queue
from fairque_django.core.shards import ShardMap
from tests.integration.test_async_queue import ONE_SIDED
from tests.integration.test_sharded import EACH, FAST, OTHERS, _spread_prefix, serve_while_idle, sharded, tag
from tests.integration.test_worker import log
from tests.support import eventually
from tests.testapp import tasks as t

T = TypeVar("T")


def run(main: Callable[[AsyncShardedTaskQueue], Awaitable[T]], config: FairQueueConfig, **kw: Any) -> T:
    """Run ``main(queue)`` in a fresh event loop with a sharded queue that is closed afterwards."""

    async def wrapper() -> T:
        async with open_async_queue(config, **kw) as q:
            assert isinstance(q, AsyncShardedTaskQueue)
            return await main(q)

    return asyncio.run(wrapper())


def run_burst(worker: AsyncWorker | Worker, timeout: float = 40) -> None:
    th = threading.Thread(target=worker.start, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), "burst worker did not finish"


# --- the same operations as the synchronous sharded queue ------------------------------------
def public(cls: type, leave_out: set[str]) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
            if inspect.isfunction(member) and not name.startswith("_") and name not in leave_out}


def test_the_async_and_sync_sharded_queues_expose_the_same_operations() -> None:
    sync, aio = public(ShardedTaskQueue, ONE_SIDED), public(AsyncShardedTaskQueue, ONE_SIDED)
    assert sorted(sync) == sorted(aio)
    for name, signature in sync.items():
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in aio[name].parameters.values()], name
        if name != "queue_of":
            assert inspect.iscoroutinefunction(getattr(AsyncShardedTaskQueue, name)), name
    # and those of the plain asyncio queue, plus queue_of
    assert sorted(public(AsyncTaskQueue, set())) == sorted(set(public(AsyncShardedTaskQueue, set())) - {"queue_of"})


def test_open_async_queue_mirrors_open_queue(make_config: Any) -> None:
    async def main() -> None:
        async with open_async_queue(make_config()) as plain:
            assert type(plain) is AsyncTaskQueue
        async with open_async_queue(sharded(make_config)) as q:
            assert isinstance(q, AsyncShardedTaskQueue) and len(q.shard_queues) == 4
            assert q.queue_of(EACH[2]) is q.shard_queues[2]
            assert all(s.client is q.client for s in (*q.shard_queues, q.home_queue))

    asyncio.run(main())


# --- one Redis and a cluster ----------------------------------------------------------------
@pytest.fixture(params=["redis", "cluster"])
def target(request: pytest.FixtureRequest, make_config: Any) -> Iterator[tuple[FairQueueConfig, Any]]:
    """(a config of 4 shards, a sync client of its Redis): one Redis (DB of the tests), or the cluster
    fixture with a prefix whose shards land on every master."""
    if request.param == "redis":
        config = sharded(make_config, retry_backoff_base_seconds=0.01)
        yield config, None
        return
    cluster: RedisCluster = request.getfixturevalue("cluster")
    redis_cluster = request.getfixturevalue("redis_cluster")
    prefix = _spread_prefix(cluster, 4)
    yield FairQueueConfig.from_dict({
        "redis": {"url": redis_cluster.url()},
        "workers": [{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 1, **FAST}],
        "queue": {"stats_prefix": prefix, "shards": 4, "retry_backoff_base_seconds": 0.01},
    }, worker_id="w1"), cluster


def test_push_pop_ack_fail_and_merged_reads(target: tuple[FairQueueConfig, Any]) -> None:
    config, _ = target
    users = EACH + OTHERS

    async def main(q: AsyncShardedTaskQueue) -> None:
        smap = q.shard_map
        assert len({smap.of(u) for u in users}) == 4
        for u in users:
            for i in range(3):
                assert (await q.push(Task.create(user_id=u, payload={"i": i})))["success"]
        got = await q.pop_many(4, "w1")
        assert len(got) == 4 and len({smap.of(x.user_id or "") for x in got}) >= 2
        codes, more, _ = await q.complete_and_pop_many([(x, 0.01, None) for x in got], 4, worker_id="w1")
        assert codes == [1] * 4 and len(more) == 4
        assert await q.fail(more[0], "boom", retry=False) == "dead"
        assert await q.fail(more[1], ValueError("again")) == "retry"
        assert await q.complete_code(more[2]) == 1
        assert await q.complete_code(more[2]) == -1  # acked already: gone
        assert await q.release([more[3]]) == 1
        stats = await q.get_stats()
        assert stats["tasks_pushed"] == 24 and stats["tasks_completed"] == 5 and stats["dlq_size"] == 1
        assert set(stats["users"]) == set(users) and sum(stats["priorities"].values()) == 24
        assert await q.pushed_tenants() == sorted(users)
        # the DLQ across shards
        (entry,) = await q.get_dlq()
        assert entry.task_id == more[0].task_id and await q.dlq_size() == 1
        assert (await q.get_dead(more[0].task_id)) is not None
        assert await q.requeue_dead([more[0].task_id]) == [more[0].task_id] and await q.dlq_size() == 0
        # everything left is leased once, acked once
        rest: list[Task] = []
        deadline = time.monotonic() + 10
        while len(rest) < 24 - 5 and time.monotonic() < deadline:  # the retry is delayed a little
            rest += await q.pop_many(8, "w1")
            if not rest:
                await asyncio.sleep(0.02)
        assert len({x.task_id for x in rest}) == len(rest) == 19
        assert await q.extend(rest) == []
        assert await q.extend_leases(rest[:2]) == ([], [])
        codes, _, _ = await q.complete_and_pop_many([(x, None, None) for x in rest], 0, worker_id="w1")
        assert codes == [1] * 19
        stats = await q.get_stats()
        assert stats["tasks_completed"] == 24 and stats["tasks_active"] == 0 and stats["tasks_queued"] == 0
        assert await q.pop_reply("w1") == (None, None)

    run(main, config, worker_id="w1")


def test_cancel_results_and_tenant_ops_in_the_tenant_s_shard(target: tuple[FairQueueConfig, Any]) -> None:
    config, _ = target

    async def main(q: AsyncShardedTaskQueue) -> None:
        user, other = EACH[1], EACH[3]
        queued = Task.create(user_id=user, payload={})
        await q.push(queued)
        assert (await q.get_task_state(queued.task_id) or {})["st"] == "queued"  # found by id in its shard
        assert await q.cancel(queued.task_id) is CancelResult.CANCELLED  # no user: every shard asked
        delayed = [Task.create(user_id=other, payload={}, execute_after=time.time() + 60) for _ in range(3)]
        await q.push_batch(delayed)
        assert await q.next_delayed_seconds() is not None
        assert await q.cancel_tenant(other) == {"cancelled": 3, "cancelling": 0}
        # results in the tenant's shard
        done = Task.create(user_id=user, payload={})
        await q.push(done)
        leased = await q.pop("w1")
        assert leased is not None and leased.task_id == done.task_id
        assert await q.set_progress(leased, 0.5, "half")
        await q.store_result(leased, {"status": "SUCCESSFUL", "return_value": 7})
        await q.complete(leased)
        assert await q.get_result(done.task_id, user_id=user) == {"status": "SUCCESSFUL", "return_value": 7}
        handle = await q.result(done.task_id, user_id=user)
        assert handle.status is TaskStatus.SUCCESSFUL and handle.return_value == 7
        assert (await q.read_result(done.task_id, user)).status is TaskStatus.SUCCESSFUL
        # limits, pause and depth in the tenant's shard
        assert (await q.set_tenant_limits(user, concurrency=2))["concurrency"] == 2
        assert (await q.get_tenant_limits(user))["concurrency_source"] == "runtime"
        assert (await q.clear_tenant_limits(user))["concurrency_source"] != "runtime"
        await q.pause_tenant(user)
        assert await q.is_paused(user)
        await q.push(Task.create(user_id=user, payload={}))
        assert await q.pop("w1") is None  # paused
        await q.resume_tenant(user)
        assert not await q.is_paused(user)
        assert (await q.user_depth(user))["normal"] == 1
        again = await q.pop("w1")
        assert again is not None and again.user_id == user
        assert await q.delete_task(again.task_id)  # the shard that leased it
        spare = Task.create(user_id=other, payload={})
        await q.push(spare)
        assert await q.delete(spare.task_id) == [spare.task_id]  # by id: every shard asked
        assert await q.get_task_state(spare.task_id) is None
        # a dependency must live in the dependent's shard
        with pytest.raises(DependencyError, match="shard"):
            await q.push(Task.create(user_id=other, payload={}, depends_on=[(user, done.task_id)]))

    run(main, config, worker_id="w1")


def test_the_shards_keys_hold_the_async_pushes(make_config: Any, redis_client: redis.Redis) -> None:
    config = sharded(make_config)

    async def main(q: AsyncShardedTaskQueue) -> dict[str, str]:
        return {u: (await q.push(Task.create(user_id=u, payload={})))["task_id"] for u in EACH + OTHERS}

    ids = run(main, config)
    found = {k.decode() for k in redis_client.scan_iter(count=1000)}
    for user, task_id in ids.items():
        assert f"{tag(user)}:t:{task_id}" in found
    assert {k.split("}")[0] + "}" for k in found} == {ShardMap("fq", 4).keys[s].base for s in range(4)}
    assert "{fq}:wake:w1" in found  # the home wake list the pushes left a token on


def test_an_idle_async_wait_wakes_on_a_push_into_any_shard(target: tuple[FairQueueConfig, Any]) -> None:
    config, _ = target
    pusher = open_queue(config, target[1])

    async def main(q: AsyncShardedTaskQueue) -> None:
        assert await q.wait_and_pop("w1", timeout=0.15) == (None, None)
        for user in EACH:
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, lambda u=user: pusher.push(Task.create(user_id=u, payload={})))
            started = time.monotonic()
            task, _ = await q.wait_and_pop("w1", timeout=3.0)
            assert task is not None and task.user_id == user and time.monotonic() - started < 1.0
            await q.complete(task)

    run(main, config, worker_id="w1")


def test_a_task_left_in_its_former_shard_is_acknowledged_there(make_config: Any) -> None:
    user = EACH[1]
    before = open_queue(sharded(make_config))
    ids = [before.push(Task.create(user_id=user, payload={}))["task_id"] for _ in range(3)]

    async def main(q: AsyncShardedTaskQueue) -> None:
        assert q.shard_map.of(user) == 2
        got: list[Task] = []
        while len(got) < 3 and (batch := await q.pop_many(3, "w1")):
            got += batch
        assert sorted(x.task_id for x in got) == sorted(ids)
        assert await q.extend(got) == []
        assert await q.complete_code(got[0]) == 1
        assert await q.fail(got[1], "boom", retry=False) == "dead"
        assert await q.release([got[2]]) == 1
        stats = await q.get_stats()
        assert stats["tasks_completed"] == 1 and stats["dlq_size"] == 1 and stats["tasks_queued"] == 1

    run(main, sharded(make_config, shard_pins={user: 2}), worker_id="w1")


# --- the asyncio worker -------------------------------------------------------------------------
def worker_config(make_config: Any, concurrency: int = 4, **worker: Any) -> FairQueueConfig:
    config: FairQueueConfig = make_config(
        workers=[{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": concurrency, **FAST, **worker}],
        worker_id="w1", shards=4, retry_backoff_base_seconds=0.01)
    return config


def test_an_async_worker_drains_many_tenants_of_every_shard(make_config: Any, redis_client: redis.Redis) -> None:
    """60 tenants over 4 shards, sync and async tasks, a retry and a dead task: each runs once."""
    config = worker_config(make_config, concurrency=6)
    q = open_queue(config)
    users = [f"org:{i}" for i in range(60)]
    assert {ShardMap("fq", 4).of(u) for u in users} == {0, 1, 2, 3}
    expected = []
    for i in range(240):
        user = users[i % 60]
        q.push(t.async_record(f"x{i}", 0.01) if i % 2 else t.record(f"x{i}"), user_id=user)
        expected.append(f"{user}|x{i}")
    q.push(t.flaky("sharded", 1), user_id=users[7])
    q.push(t.always_fails("boom"), user_id=users[9])
    worker = AsyncWorker(config, worker_id="w1", burst=True, install_signal_handlers=False)
    run_burst(worker)
    assert isinstance(worker.queue, AsyncShardedTaskQueue)
    ran = log(redis_client)
    assert sorted(x for x in ran if "|x" in x) == sorted(expected)  # nothing lost, nothing twice
    assert f"{users[7]}|flaky-ok-2" in ran
    stats = q.get_stats()
    assert stats["tasks_completed"] == 241 and stats["dlq_size"] == 1 and stats["tasks_active"] == 0
    assert stats["tasks_queued"] == 0 and [e.user_id for e in q.get_dlq()] == [users[9]]


def test_an_idle_async_worker_serves_pushes_and_delayed_tasks_of_every_shard(make_config: Any,
                                                                              redis_client: redis.Redis) -> None:
    config = worker_config(make_config, concurrency=2)
    serve_while_idle(AsyncWorker(config, worker_id="w1", install_signal_handlers=False), config, redis_client,
                     idle=0.4)


def test_a_burst_after_idle_wakes_every_idle_async_slot(make_config: Any, redis_client: redis.Redis) -> None:
    """One push of 8 tasks of one tenant (not in shard 0, whose pops wake the home wake list themselves)
    leaves one wake-up token: each woken slot that leases a task
    passes it on, so the 4 idle slots all work (8 x 0.3 s in ~0.6 s, not 2.4 s)."""
    config = worker_config(make_config, concurrency=4, poll_interval_seconds=5.0)
    q = open_queue(config)
    worker = AsyncWorker(config, worker_id="w1", install_signal_handlers=False)
    th = threading.Thread(target=worker.start)
    th.start()
    try:
        time.sleep(0.5)  # every slot idle, waiting on the home wake list (up to 4 s)
        started = time.monotonic()
        q.push_batch([t.record(f"x{i}", sleep=0.3) for i in range(8)], EACH[2])  # not shard 0 (the home tag)
        eventually(lambda: len(log(redis_client)) == 8, timeout=5, what="the burst to run")
        assert time.monotonic() - started < 1.6
    finally:
        worker.stop()
        th.join(10)


def test_sync_pushes_run_on_the_async_worker_and_async_pushes_on_the_thread_worker(
        make_config: Any, redis_client: redis.Redis) -> None:
    config = worker_config(make_config)
    users = EACH + OTHERS
    sync_q = open_queue(config)
    for i, user in enumerate(users):
        sync_q.push(t.record(f"sync{i}"), user_id=user)
    run_burst(AsyncWorker(config, worker_id="w1", burst=True, install_signal_handlers=False))
    assert sorted(log(redis_client)) == sorted(f"{u}|sync{i}" for i, u in enumerate(users))

    redis_client.delete(t.LOG)

    async def push_each(q: AsyncShardedTaskQueue) -> None:
        for i, user in enumerate(users):
            assert (await q.push(t.record(f"aio{i}"), user_id=user))["success"]

    run(push_each, config)
    run_burst(Worker(config, worker_id="w1", burst=True, install_signal_handlers=False))
    assert sorted(log(redis_client)) == sorted(f"{u}|aio{i}" for i, u in enumerate(users))
    stats = sync_q.get_stats()
    assert stats["tasks_completed"] == 2 * len(users) and stats["tasks_active"] == 0
    assert Counter(u for u in stats["users"]) == Counter(users)


def test_an_async_worker_serves_a_sharded_prefix_on_a_cluster(redis_cluster: Any, cluster: RedisCluster,
                                                              redis_client: redis.Redis) -> None:
    prefix = _spread_prefix(cluster, 4)
    config = FairQueueConfig.from_dict({
        "redis": {"url": redis_cluster.url()},
        "workers": [{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 4, **FAST}],
        "queue": {"stats_prefix": prefix, "shards": 4, "retry_backoff_base_seconds": 0.01},
    }, worker_id="w1")
    q = open_queue(config, cluster)
    users = [f"t{i}" for i in range(12)]
    for i in range(48):
        q.push(t.record(f"x{i}") if i % 2 else t.async_record(f"x{i}"), user_id=users[i % 12])
    q.push(t.always_fails("boom"), user_id="t3")
    run_burst(AsyncWorker(config, worker_id="w1", burst=True, install_signal_handlers=False))
    assert sorted(log(redis_client)) == sorted(f"{users[i % 12]}|x{i}" for i in range(48))
    stats = q.get_stats()
    assert stats["tasks_completed"] == 48 and stats["dlq_size"] == 1 and stats["tasks_active"] == 0


def test_an_async_worker_fails_a_task_in_the_shard_it_was_leased_from(make_config: Any,
                                                                     redis_client: redis.Redis) -> None:
    """Tasks left in their tenant's former shard (its pin changed, not moved yet): the runner records a
    failure through the synchronous queue, from a thread; it shares the asyncio queue's leases, so the
    retry and the dead-lettering happen in the shard the task was leased from."""
    user = EACH[1]
    before = open_queue(worker_config(make_config))
    before.push(t.always_fails("former"), user_id=user)
    before.push(t.record("former"), user_id=user)
    config = make_config(workers=[{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 2, **FAST}],
                         worker_id="w1", shards=4, retry_backoff_base_seconds=0.01, shard_pins={user: 2})
    worker = AsyncWorker(config, worker_id="w1", burst=True, install_signal_handlers=False)
    started = time.monotonic()
    run_burst(worker)
    assert time.monotonic() - started < 10  # no lease had to expire
    assert log(redis_client) == [f"{user}|former"]
    stats = open_queue(config).get_stats()
    assert stats["tasks_completed"] == 1 and stats["dlq_size"] == 1 and stats["tasks_active"] == 0
    assert [e.user_id for e in before.shard_queues[1].get_dlq()] == [user]  # the former shard's DLQ
