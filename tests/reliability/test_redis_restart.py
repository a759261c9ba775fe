"""Redis restarts under load: acknowledged pushes survive (AOF), producers retry, workers
reconnect by themselves and every task runs."""

from __future__ import annotations

import time

import pytest
import redis

from fairque_django import TaskQueue
from fairque_django.core.connection import reset_clients
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import RedisServer, assert_drained, assert_stats_balance, redis_server, runs
from .producer import Producer
from .relconfig import core_config, user


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_redis_restart_mid_run_loses_no_acknowledged_push(redis_client: redis.Redis, rel_env: dict[str, str],
                                                          workers: Workers) -> None:
    with redis_server("--appendonly", "yes", "--appendfsync", "everysec") as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_LEASE="5", FAIRQUE_REL_CONCURRENCY="2",
                       FAIRQUE_REL_SOCKET_TIMEOUT="1", FAIRQUE_REL_POLL="0.2")
        config = core_config(rel_env)
        queue = TaskQueue(config)
        backlog = [tasks.work.create_task((i, 0.02), user_id=user(i % 20)) for i in range(400)]
        queue.push_batch(backlog)
        procs = [workers.start(wid) for wid in ("rel-1", "rel-2")]
        producer = Producer(queue)
        producer.start()
        eventually(lambda: redis_client.hlen(tasks.RUNS) >= 50, timeout=30, what="workers serving")

        acked_before = [t.task_id for t in backlog] + list(producer.acked)
        server.shutdown()
        down_at = time.monotonic()
        time.sleep(1.5)  # the scenario: Redis stays down a while
        server.start()
        print(f"\nredis restart: down for {time.monotonic() - down_at:.1f}s")
        # everything acknowledged before the restart is still there (or has already run)
        check = server.client()
        base = f"{{{config.queue.stats_prefix}}}"
        gone = [tid for tid in acked_before if not check.exists(f"{base}:t:{tid}")]
        check.close()
        done = runs(redis_client, tasks.RUNS)  # read after: a task runs (recorded) before its hash goes
        missing = [tid for tid in gone if tid not in done]
        assert missing == [], f"{len(missing)} acknowledged tasks lost by the restart"

        after = len(producer.acked)  # producers keep going after the restart
        eventually(lambda: len(producer.acked) >= after + 50, timeout=30, what="pushes acknowledged after the restart")
        producer.stop.set()
        producer.join(60)
        assert producer.error is None, producer.error
        acked = [t.task_id for t in backlog] + producer.acked
        eventually(lambda: all(runs(redis_client, tasks.RUNS).get(tid, 0) >= 1 for tid in acked), timeout=60,
                   what="every acknowledged task ran", interval=0.2)
        eventually(lambda: queue.get_stats()["tasks_pending"] == 0, timeout=30, what="queue drained")
        logs = [p.log() for p in procs]
        for proc in procs:
            assert proc.alive(), proc.log()[-3000:]  # reconnected by itself, never exited
            assert proc.terminate(30) == 0, proc.log()[-3000:]
        for log in logs:
            assert "Redis unreachable" in log or "heartbeat failed" in log, log[-3000:]
        after = [tid for tid in producer.acked if tid not in acked_before]
        assert after, "the producer pushed nothing after the restart"
        counts = runs(redis_client, tasks.RUNS)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        print(f"redis restart: {len(acked)} tasks acknowledged ({len(after)} after the restart, "
              f"{producer.duplicates} retried pushes answered duplicate), {duplicates} duplicate executions")
        stats = assert_stats_balance(queue, server.client())
        assert stats["tasks_pushed"] == len(acked)
        assert stats["tasks_completed"] == len(acked) and stats["dlq_size"] == 0
        assert_drained(server.client(), config.queue.stats_prefix)
        reset_clients()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fsync", ["always"])
def test_redis_crash_with_appendfsync_always_keeps_every_acknowledged_push(redis_client: redis.Redis,
                                                                           rel_env: dict[str, str], fsync: str) -> None:
    """SIGKILL (no clean shutdown): with ``appendfsync always`` every acknowledged push survives."""
    server: RedisServer
    with redis_server("--appendonly", "yes", "--appendfsync", fsync) as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url())
        config = core_config(rel_env)
        queue = TaskQueue(config)
        acked = []
        for i in range(300):
            task = tasks.work.create_task((i,), user_id=user(i % 10))
            assert queue.push(task)["success"]
            acked.append(task.task_id)
        server.kill()
        server.start()
        stats = assert_stats_balance(queue, server.client())
        assert stats["tasks_pushed"] == 300 and stats["tasks_queued"] == 300
        client = server.client()
        base = f"{{{config.queue.stats_prefix}}}"
        assert all(client.exists(f"{base}:t:{tid}") for tid in acked)
        # and they are still served, in order
        popped = [queue.pop("rel-1") for _ in range(3)]
        assert all(t is not None for t in popped)
        reset_clients()
