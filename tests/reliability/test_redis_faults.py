"""The fault suite on the Redis side, under load with real worker processes: Redis killed with -9
(AOF ``everysec``), frozen with SIGSTOP, restarted empty; and two processes with one worker id.

The promise each test checks is in docs/reliability.md ("Faults tried"): no acknowledged push
lost, no task completed twice because an acknowledgement failed, workers that recover by
themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from fairque_django import TaskQueue
from fairque_django.core.connection import reset_clients
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import RedisServer, assert_drained, assert_stats_balance, redis_server, runs, scan
from .producer import Producer
from .relconfig import core_config, user

BACKLOG = 600
FAULTS = 2  # each fault is applied this many times during the run


def kill_and_restart(server: RedisServer) -> None:
    """kill -9 (nothing flushed by Redis itself), down for 1 s, started again on its AOF."""
    server.kill()
    time.sleep(1.0)  # the scenario: Redis stays down a while
    server.start()


def freeze_and_thaw(server: RedisServer) -> None:
    """SIGSTOP: connections are accepted by the kernel and nothing answers for 2 s."""
    server.pause()
    time.sleep(2.0)  # the scenario: a hung Redis, longer than the clients' socket timeout
    server.resume()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", [kill_and_restart, freeze_and_thaw], ids=["kill -9 (AOF everysec)", "SIGSTOP"])
def test_redis_faults_under_load_lose_nothing_and_complete_nothing_twice(
        fault: Callable[[RedisServer], None], redis_client: redis.Redis, rel_env: dict[str, str],
        workers: Workers) -> None:
    with redis_server("--appendonly", "yes", "--appendfsync", "everysec") as server:
        server.start()
        # 5 s leases outlast each outage, so a failed ack is resent before anyone may take the task over
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_LEASE="5", FAIRQUE_REL_CONCURRENCY="3",
                       FAIRQUE_REL_SOCKET_TIMEOUT="0.5", FAIRQUE_REL_POLL="0.2", FAIRQUE_REL_HEARTBEAT="1")
        config = core_config(rel_env)
        queue = TaskQueue(config)
        backlog = [tasks.work.create_task((i, 0.003), user_id=user(i % 20)) for i in range(BACKLOG)]
        queue.push_batch(backlog)
        procs = [workers.start(wid) for wid in ("rel-1", "rel-2")]
        producer = Producer(queue, interval=0.005)
        producer.start()
        for n in range(FAULTS):
            eventually(lambda n=n: redis_client.hlen(tasks.RUNS) >= 100 * (n + 1), timeout=60, what="workers serving")
            fault(server)
            after = len(producer.acked)
            eventually(lambda after=after: len(producer.acked) >= after + 20, timeout=30,
                       what="pushes acknowledged again")
        producer.stop.set()
        producer.join(60)
        assert producer.error is None, producer.error
        acked = [t.task_id for t in backlog] + producer.acked

        eventually(lambda: all(runs(redis_client, tasks.RUNS).get(tid, 0) >= 1 for tid in acked), timeout=90,
                   what="every acknowledged push ran", interval=0.3)
        eventually(lambda: queue.get_stats()["tasks_pending"] == 0, timeout=30, what="queue drained")
        for proc in procs:
            assert proc.alive(), proc.log()[-3000:]  # recovered by itself, never exited
            assert proc.terminate(30) == 0, proc.log()[-3000:]
        # the outages outlast a task many times over: acknowledgements did fail and were kept
        acks_kept = sum(proc.log().count("could not acknowledge") for proc in procs)

        counts = runs(redis_client, tasks.RUNS)
        twice = sorted(tid for tid, n in counts.items() if n > 1)
        stats = assert_stats_balance(queue, server.client())
        print(f"\n{fault.__name__} x{FAULTS}: {len(acked)} pushes acknowledged "
              f"({producer.duplicates} retried pushes answered duplicate), {len(twice)} completed twice, "
              f"late acks {stats['tasks_late_acks']}, expired leases {stats['tasks_expired']}, "
              f"{acks_kept} failed acknowledgements kept and resent")
        assert acks_kept > 0
        # no worker was killed: a task completed twice could only come from a dropped ack
        assert twice == []
        assert set(counts) == set(acked)
        assert stats["tasks_pushed"] == len(acked)
        assert stats["tasks_completed"] == len(acked) and stats["dlq_size"] == 0
        assert_drained(server.client(), config.queue.stats_prefix)
        reset_clients()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_redis_restarted_empty_workers_serve_new_work(redis_client: redis.Redis, rel_env: dict[str, str],
                                                       workers: Workers) -> None:
    """No persistence: what was in Redis is gone (documented), but workers holding tasks and acks
    for vanished keys carry on and serve what is pushed afterwards, each task once."""
    with redis_server() as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_LEASE="5", FAIRQUE_REL_SOCKET_TIMEOUT="0.5",
                       FAIRQUE_REL_POLL="0.2")
        config = core_config(rel_env)
        queue = TaskQueue(config)
        queue.push_batch([tasks.work.create_task((i, 0.05), user_id=user(i % 8)) for i in range(200)])
        procs = [workers.start(wid) for wid in ("rel-1", "rel-2")]
        eventually(lambda: redis_client.hlen(tasks.RUNS) >= 20, timeout=60, what="workers serving")
        kill_and_restart(server)  # no AOF, no RDB: it comes back empty
        base = f"{{{config.queue.stats_prefix}}}"
        assert scan(server.client(), f"{base}:t:*") == []  # the backlog is gone with the data

        fresh = [tasks.work.create_task((i, 0.005), user_id=user(i % 8)) for i in range(200)]
        assert queue.push_batch(fresh)["pushed"] == 200
        ids = [t.task_id for t in fresh]
        eventually(lambda: all(runs(redis_client, tasks.RUNS).get(tid, 0) >= 1 for tid in ids), timeout=60,
                   what="the tasks pushed after the empty restart ran", interval=0.3)
        eventually(lambda: queue.get_stats()["tasks_pending"] == 0, timeout=30, what="queue drained")
        for proc in procs:
            assert proc.alive(), proc.log()[-3000:]
            assert proc.terminate(30) == 0, proc.log()[-3000:]
        counts = runs(redis_client, tasks.RUNS)
        assert all(counts[tid] == 1 for tid in ids)
        stats = assert_stats_balance(queue, server.client())
        assert stats["tasks_pushed"] == 200 and stats["tasks_completed"] == 200
        assert_drained(server.client(), config.queue.stats_prefix)
        reset_clients()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_processes_with_one_worker_id_run_each_task_once(redis_client: redis.Redis, rel_env: dict[str, str],
                                                              workers: Workers) -> None:
    """A misdeployment: both processes serve the partition; leases (one token per slot) keep every
    task to one run, and the worker stays healthy."""
    rel_env.update(FAIRQUE_REL_CONCURRENCY="2", FAIRQUE_REL_POLL="0.2")
    config = core_config(rel_env)
    queue = TaskQueue(config)
    pushed = queue.push_batch([tasks.work.create_task((i, 0.01), user_id=user(4 * i)) for i in range(300)])
    ids = pushed["task_ids"]
    assert all(user(4 * i).startswith("t1:") for i in range(3))  # all of rel-1's partition
    twins = [workers.start("rel-1") for _ in range(2)]
    eventually(lambda: all(runs(redis_client, tasks.RUNS).get(tid, 0) >= 1 for tid in ids), timeout=90,
               what="every task ran", interval=0.3)
    health = workers.manage("fairque_health", "rel-1")
    assert health.returncode == 0, health.stdout + health.stderr
    for proc in twins:
        assert proc.alive(), proc.log()[-3000:]
        assert proc.terminate(30) == 0, proc.log()[-3000:]
    counts = runs(redis_client, tasks.RUNS)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    stats = assert_stats_balance(queue, redis_client)
    assert stats["tasks_completed"] == 300 and stats["tasks_late_acks"] == 0
    assert_drained(redis_client, config.queue.stats_prefix)
