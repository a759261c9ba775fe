"""The queue and a worker against a real Redis Cluster: three masters started on loopback ports.

Every key of a prefix shares one hash tag, so each script runs on the node owning that slot; the
transport's round trips fall back to redis-py's cluster pipeline (one command: the cluster client's own call).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from example_project.embedded_cluster import Cluster, cluster_port
from fairque_django import AsyncTaskQueue, Priority, Task, TaskQueue, Worker
from fairque_django.core.config import FairQueueConfig, RedisConfig
from fairque_django.core.connection import build_client, get_client, reset_clients
from fairque_django.core.observe import DeadLetters, TenantView, collect_metrics, health_status
from fairque_django.core.transport import NodesPending, Transport, pack
from fairque_django.core.worker import AsyncWorker
from tests.integration.test_worker import run_to_end
from tests.testapp import tasks as t


@pytest.fixture
def config() -> FairQueueConfig:
    return FairQueueConfig.from_dict({
        "workers": [{"id": "w1", "assigned_users": ["a", "b", "c"], "steal_targets": ["d"],
                     "poll_interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2}],
        "queue": {"stats_prefix": f"ct{time.monotonic_ns()}", "retry_backoff_base_seconds": 0.01},
    }, worker_id="w1")


def test_the_keys_of_a_prefix_share_one_slot(cluster: RedisCluster, config: FairQueueConfig) -> None:
    q = TaskQueue(config, client=cluster)
    q.push(Task.create(user_id="a", payload={}))
    keys = [k for node in cluster.get_primaries() for k in
            redis.Redis(host=node.host, port=node.port).keys(f"{q.keys.base}*")]
    assert len(keys) >= 5
    assert len({cluster.keyslot(k) for k in keys}) == 1


def test_scripts_flushed_on_every_master_are_loaded_again(cluster: RedisCluster, config: FairQueueConfig) -> None:
    """A one-command round trip (a push, a pop) goes through the cluster client's own call, not a
    pipeline: its NOSCRIPT reply comes back as a reply, so the script is loaded and run again."""
    q = TaskQueue(config, client=cluster)
    pushed = q.push(Task.create(user_id="a", payload={"n": 1}))["task_id"]
    for node in cluster.get_primaries():
        redis.Redis(host=node.host, port=node.port).script_flush()
    second = q.push(Task.create(user_id="b", payload={"n": 2}))["task_id"]
    for node in cluster.get_primaries():
        redis.Redis(host=node.host, port=node.port).script_flush()
    assert sorted(x.task_id for x in q.pop_many(2)) == sorted([pushed, second])


def test_queue_operations_on_a_cluster(cluster: RedisCluster, config: FairQueueConfig) -> None:
    q = TaskQueue(config, client=cluster)
    assert q.push(Task.create(user_id="a", priority=Priority.CRITICAL, payload={"n": 0}))["success"]
    batch = [Task.create(user_id="abc"[i % 3], payload={"n": i}) for i in range(1, 2501)]
    assert q.push_batch(batch)["pushed"] == 2500  # three script calls in one cluster pipeline
    assert q.push_batch(batch[:2])["duplicates"] == [batch[0].task_id, batch[1].task_id]

    first = q.pop()
    assert first is not None and first.priority == Priority.CRITICAL
    many = q.pop_many(6)
    assert [x.user_id for x in many] == ["b", "c", "a", "b", "c", "a"]  # the rotation goes on
    codes, more, _ = q.complete_and_pop_many([(x, 0.001, None) for x in [first, *many]], 3)
    assert codes == [1] * 7 and len(more) == 3

    doomed = more[0]
    assert q.fail(doomed, "nope", retry=False) == "dead"
    assert [e.task_id for e in q.get_dlq()] == [doomed.task_id]
    assert q.requeue_dead() == [doomed.task_id]
    q.release(more[1:])

    got: list[Task] = []
    while tasks := q.pop_many(16):
        got += tasks
        q.complete_and_pop_many([(x, None, None) for x in tasks], 0)
    assert len(got) == 2501 - 7
    stats = q.get_stats()
    assert stats["tasks_pushed"] == 2501 and stats["tasks_completed"] == 2501 - 1 + 1
    assert stats["tasks_active"] == 0 and stats["dlq_size"] == 0 and stats["tasks_pending"] == 0


def test_idle_wait_and_pop_wakes_on_a_push(cluster: RedisCluster, config: FairQueueConfig) -> None:
    q = TaskQueue(config, client=cluster)
    assert q.wait_and_pop("w1", timeout=0.2) == (None, None)  # BLPOP + pop in one pipeline
    pusher = threading.Timer(0.2, lambda: q.push(Task.create(user_id="b", payload={})))
    pusher.start()
    started = time.monotonic()
    task, _ = q.wait_and_pop("w1", timeout=3.0)
    pusher.join()
    assert task is not None and task.user_id == "b" and time.monotonic() - started < 2.0
    assert not cluster.zrange(q.keys.parked("w1"), 0, -1)  # handed over (or unparked): no park left


def test_a_worker_serves_a_cluster(cluster: RedisCluster, config: FairQueueConfig, redis_client: Any) -> None:
    q = TaskQueue(config, client=cluster)
    for i in range(40):
        q.push(t.record(f"x{i}"), user_id="abcd"[i % 4])
    q.push(t.always_fails("boom"), user_id="a")
    run_to_end(Worker(config, worker_id="w1", queue=q, burst=True, concurrency=2, install_signal_handlers=False))
    done = sorted(x.decode() for x in redis_client.lrange(t.LOG, 0, -1))
    assert done == sorted(f"{'abcd'[i % 4]}|x{i}" for i in range(40))  # the task log is on the plain Redis
    stats = q.get_stats()
    assert stats["tasks_completed"] == 40 and stats["dlq_size"] == 1 and stats["tasks_active"] == 0


# --------------------------------------------------------------------------- from the configuration


def test_a_cluster_config_builds_a_cluster_client(redis_cluster: Cluster, config: FairQueueConfig) -> None:
    dead = f"127.0.0.1:{cluster_port()}"  # nothing listens there: any one node answering is enough
    for redis_config in (RedisConfig(url=redis_cluster.url()),
                         RedisConfig(cluster=True, startup_nodes=[dead, *redis_cluster.startup_nodes[1:]]),
                         RedisConfig(cluster=True, host="127.0.0.1", port=redis_cluster.masters[2].port)):
        client = build_client(redis_config)
        try:
            assert isinstance(client, RedisCluster)
            assert {n.port for n in client.get_primaries()} == {m.port for m in redis_cluster.masters}
            q = TaskQueue(dataclasses.replace(config, redis=redis_config))
            assert q.client is get_client(redis_config) and isinstance(q.client, RedisCluster)
            task = Task.create(user_id="a", payload={})
            assert q.push(task)["success"]
            popped = q.pop()
            assert popped is not None and popped.task_id == task.task_id
            q.complete(popped)
        finally:
            client.close()
    reset_clients()


def test_the_observe_reads_on_a_cluster(cluster: RedisCluster, config: FairQueueConfig) -> None:
    """The admin's reads (the snapshot, a tenant's view, the DLQ pages, the health probe) on a cluster:
    their MULTI/EXEC pipelines hold keys of one slot (and TIME)."""
    q = TaskQueue(config, client=cluster)
    for i in range(5):
        q.push(Task.create(user_id="abc"[i % 3], payload={"n": i}))
    doomed = q.pop()
    assert doomed is not None and q.fail(doomed, "nope", retry=False) == "dead"
    metrics = collect_metrics(q)
    assert metrics.ready == 4 and metrics.dlq_size == 1
    detail = TenantView(q, "b").detail()
    assert sum(detail.depth.values()) == 2
    page = DeadLetters(q).page()
    assert [e.task_id for e in page.entries] == [doomed.task_id]
    healthy, body = health_status(q)
    assert body["redis"] is True and body["dlq_size"] == 1 and not healthy  # no worker is alive


def test_an_async_worker_serves_a_cluster_from_its_config(redis_cluster: Cluster, config: FairQueueConfig,
                                                          redis_client: Any) -> None:
    """AsyncTaskQueue / AsyncWorker build a redis.asyncio cluster client from a cluster config."""
    cfg = dataclasses.replace(config, redis=RedisConfig(url=redis_cluster.url()))

    async def push() -> None:
        async with AsyncTaskQueue(cfg) as q:
            assert isinstance(q.client, AsyncRedisCluster)
            for i in range(20):
                await q.push(t.record(f"y{i}"), user_id="abc"[i % 3])

    asyncio.run(push())
    AsyncWorker(cfg, worker_id="w1", burst=True, install_signal_handlers=False).start()
    done = sorted(x.decode() for x in redis_client.lrange(t.LOG, 0, -1))
    assert done == sorted(f"{'abc'[i % 3]}|y{i}" for i in range(20))
    stats = TaskQueue(cfg).get_stats()
    assert stats["tasks_completed"] == 20 and stats["tasks_pending"] == 0
    reset_clients()


def test_a_command_a_master_refuses_with_moved_is_sent_where_its_slot_lives(cluster: RedisCluster) -> None:
    """A prefetch's write to a master that no longer owns a key's slot (a resharding or failover the
    client has not seen yet) is answered MOVED, unrun: reading it sends the command again through the
    cluster client, which finds the slot's master."""
    key = "fq-moved:{t1}:k"
    owner = cluster.get_node_from_key(key)
    other = next(node for node in cluster.get_primaries() if node.name != owner.name)
    pool = cluster.get_redis_connection(other).connection_pool
    conn = pool.get_connection()
    commands = [["SET", key, "v"], ["INCR", key + "x"]]  # (the second: its own slot, on whichever master)
    conn.send_packed_command([pack(commands[0])])
    rest = cluster.get_redis_connection(cluster.get_node_from_key(key + "x")).connection_pool
    conn2 = rest.get_connection()
    conn2.send_packed_command([pack(commands[1])])
    pending = NodesPending(Transport(cluster, "{fq}:queue:stats"), [(pool, conn, [0]), (rest, conn2, [1])], commands)
    replies = pending.read()
    assert not any(isinstance(r, Exception) for r in replies), replies
    assert cluster.get(key) == b"v" and cluster.get(key + "x") == b"1"
    cluster.delete(key, key + "x")
