"""Redis down or hung: pushes fail promptly with RedisUnavailableError and write nothing; a worker
started meanwhile waits, logs and retries, is reported unhealthy, then serves once Redis is up."""

from __future__ import annotations

import time

import pytest
import redis

from example_project.embedded_redis import free_port
from fairque_django import RedisUnavailableError, TaskQueue
from fairque_django.core.connection import reset_clients
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import assert_stats_balance, redis_server, runs
from .producer import push_with_retry
from .relconfig import core_config, user


@pytest.mark.timeout(60)
def test_push_to_a_down_redis_fails_fast_and_writes_nothing(redis_client: redis.Redis,
                                                            rel_env: dict[str, str]) -> None:
    with redis_server() as server:  # not started yet: nothing listens on its port
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_SOCKET_TIMEOUT="1")
        queue = TaskQueue(core_config(rel_env))
        for action in ("push", "push_batch", "pop"):
            start = time.monotonic()
            with pytest.raises(RedisUnavailableError, match="unreachable"):
                if action == "push":
                    queue.push(tasks.work.create_task((1,), user_id=user(1)))
                elif action == "push_batch":
                    queue.push_batch([tasks.work.create_task((i,), user_id=user(i)) for i in range(5)])
                else:
                    queue.pop("rel-1")
            took = time.monotonic() - start
            print(f"\n{action} against a down Redis raised after {took:.2f}s")
            assert took < 3, f"{action} took {took:.1f}s to fail"
        server.start()
        assert server.client().dbsize() == 0  # nothing was written
        # and once Redis is back the same queue object works again
        assert queue.push(tasks.work.create_task((2,), user_id=user(2)))["success"]
        assert_stats_balance(queue, server.client())
        reset_clients()


@pytest.mark.timeout(60)
def test_push_to_a_hung_redis_times_out_and_a_retry_stores_the_task_once(redis_client: redis.Redis,
                                                                         rel_env: dict[str, str]) -> None:
    """A server that accepts connections but does not answer (SIGSTOP): push gives up after
    the socket timeout (bounded), and the outcome is unknown - the command may still run when the
    server resumes. Re-pushing the same task is idempotent: it is stored exactly once."""
    with redis_server() as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_SOCKET_TIMEOUT="0.5")
        queue = TaskQueue(core_config(rel_env))
        queue.push(tasks.work.create_task((0,), user_id=user(0)))  # scripts loaded, connection open
        task = tasks.work.create_task((1,), user_id=user(1))
        server.pause()
        try:
            start = time.monotonic()
            with pytest.raises(RedisUnavailableError):
                queue.push(task)
            took = time.monotonic() - start
        finally:
            server.resume()
        print(f"\npush against a hung Redis raised after {took:.2f}s (socket_timeout 0.5 s, 3 retries)")
        assert took < 4 * 0.5 + 2
        time.sleep(0.3)  # no condition to await: was the timed-out push applied once Redis resumed? (printed)
        written = queue.get_task_state(task.task_id) is not None
        print(f"the timed-out push was {'applied anyway once Redis resumed' if written else 'not applied'}")
        reply = push_with_retry(queue, task)
        assert reply["task_id"] == task.task_id
        stats = assert_stats_balance(queue, server.client())
        assert stats["tasks_pushed"] == 2 and stats["tasks_queued"] == 2
        reset_clients()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_worker_started_while_redis_is_down_waits_then_serves(redis_client: redis.Redis, rel_env: dict[str, str],
                                                              workers: Workers) -> None:
    port = free_port()
    with redis_server(port=port) as server:
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_SOCKET_TIMEOUT="1",
                       FAIRQUE_REL_HEARTBEAT="0.5", FAIRQUE_REL_LEASE="3")
        proc = workers.start("rel-1")
        eventually(lambda: "Redis unreachable" in proc.log(), timeout=30,
                   what="the worker logs that Redis is unreachable")
        time.sleep(2)  # the scenario: Redis stays down a while, and the worker must survive it
        assert proc.alive(), proc.log()
        health = workers.manage("fairque_health", "rel-1")
        assert health.returncode == 1, health.stdout + health.stderr
        assert "unhealthy" in health.stderr or "not alive" in health.stderr
        print(f"\nhealth while Redis is down: exit {health.returncode}: {health.stderr.strip()}")

        server.start()
        eventually(lambda: workers.manage("fairque_health", "rel-1").returncode == 0, timeout=30,
                   what="the worker is reported healthy once Redis is up", interval=0.5)
        queue = TaskQueue(core_config(rel_env))
        pushed = [tasks.work.create_task((i,), user_id=user(i)) for i in range(8)]
        queue.push_batch(pushed)
        eventually(lambda: len(runs(redis_client, tasks.RUNS)) == 8, timeout=30, what="tasks ran after Redis came up")
        assert proc.terminate(30) == 0, proc.log()
        log = proc.log()
        retries = log.count("Redis unreachable")
        print(f"worker log while Redis was down: {retries} 'Redis unreachable' lines")
        stats = assert_stats_balance(queue, server.client())
        assert stats["tasks_completed"] == 8 and stats["tasks_failed"] == 0
        reset_clients()
