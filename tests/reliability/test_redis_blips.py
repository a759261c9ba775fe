"""A short Redis outage (a restart on the same port) is ridden through by every call of both queues:
each round trip is retried by the one retry policy (core.retry), none raises; a hung Redis bounds
the time of a call and of a fresh process's health check."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import redis

from fairque_django import AsyncTaskQueue, RedisUnavailableError, TaskQueue
from fairque_django.core.connection import reset_clients
from tests.support.processes import Workers

from . import tasks
from .helpers import RedisServer, redis_server
from .relconfig import core_config, user

T = TypeVar("T")
GAP = 0.25  # seconds between the server's exit and its restart (the retries wait 0.1 + 0.2 + 0.4 s)
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")  # a restart keeps every key


@contextmanager
def outage(server: RedisServer) -> Iterator[None]:
    """The server exits cleanly now and starts again on its port ``GAP`` seconds later; the body
    runs meanwhile (its first attempt finds nothing listening)."""
    server.shutdown()
    restart = threading.Thread(target=lambda: (time.sleep(GAP), server.start()))
    restart.start()
    try:
        yield
    finally:
        restart.join(30)


def through_outage(server: RedisServer, call: Callable[[], T]) -> T:
    with outage(server):
        return call()


def test_every_call_of_the_queue_rides_through_a_restart(rel_env: dict[str, str]) -> None:
    with redis_server(*PERSISTENT) as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_LEASE="30")
        queue = TaskQueue(core_config(rel_env))
        first, second = (tasks.work.create_task((i,), user_id=user(0)) for i in range(2))
        assert through_outage(server, lambda: queue.push(first))["success"]
        batch = [tasks.work.create_task((i,), user_id=user(0)) for i in range(2, 6)]
        assert through_outage(server, lambda: queue.push_batch(batch))["pushed"] == 4
        assert queue.push(second)["success"]
        popped = through_outage(server, lambda: queue.pop("rel-1"))
        assert popped is not None and popped.task_id == first.task_id
        assert through_outage(server, lambda: queue.extend([popped])) == []
        assert through_outage(server, lambda: queue.complete_code(popped)) == 1
        again = queue.pop("rel-1")
        assert again is not None
        assert through_outage(server, lambda: queue.fail(again, "boom")) == "retry"
        stats = through_outage(server, queue.get_stats)
        assert stats["tasks_completed"] == 1 and stats["tasks_failed"] == 1 and stats["tasks_pushed"] == 6
        reset_clients()


def test_every_call_of_the_async_queue_rides_through_a_restart(rel_env: dict[str, str]) -> None:
    async def through(server: RedisServer, call: Callable[[], Awaitable[T]]) -> T:
        with outage(server):
            return await call()

    async def scenario(server: RedisServer) -> None:
        async with AsyncTaskQueue(core_config(rel_env)) as queue:
            first, second = (tasks.work.create_task((i,), user_id=user(0)) for i in range(2))
            assert (await through(server, lambda: queue.push(first)))["success"]
            batch = [tasks.work.create_task((i,), user_id=user(0)) for i in range(2, 6)]
            assert (await through(server, lambda: queue.push_batch(batch)))["pushed"] == 4
            assert (await queue.push(second))["success"]
            popped = await through(server, lambda: queue.pop("rel-1"))
            assert popped is not None and popped.task_id == first.task_id
            assert await through(server, lambda: queue.extend([popped])) == []
            assert await through(server, lambda: queue.complete_code(popped)) == 1
            again = await queue.pop("rel-1")
            assert again is not None
            assert await through(server, lambda: queue.fail(again, "boom")) == "retry"
            stats = await through(server, queue.get_stats)
            assert stats["tasks_completed"] == 1 and stats["tasks_failed"] == 1 and stats["tasks_pushed"] == 6

    with redis_server(*PERSISTENT) as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_LEASE="30")
        asyncio.run(scenario(server))



def lose_replies(queue: TaskQueue, script: Any = None) -> list[bool]:
    """Make the queue's next script call (of ``script`` only, if given) run in Redis and then lose
    its reply (the connection cut after the call was made); set ``cut[0]`` again to repeat."""
    original = queue.transport.run
    cut = [True]

    def run_then_lose_the_reply(called: Any, args: list[Any]) -> Any:
        reply = original(called, args)
        if cut[0] and (script is None or called is script):
            cut[0] = False
            raise redis.ConnectionError("connection lost after the call ran")
        return reply

    queue.transport.run = run_then_lose_the_reply  # type: ignore[method-assign]
    return cut


def test_a_push_whose_reply_was_lost_reports_success_when_retried(rel_env: dict[str, str]) -> None:
    """The first attempt runs in Redis but its reply never arrives (the connection is cut after the
    call was made): the retry finds the task stored and reports success, not a duplicate."""
    with redis_server() as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url())
        queue = TaskQueue(core_config(rel_env))
        task = tasks.work.create_task((1,), user_id=user(1))
        cut = lose_replies(queue)
        reply = queue.push(task)
        assert reply["success"] and not reply["duplicate"], reply
        assert queue.get_stats()["tasks_pushed"] == 1
        # an ack whose reply was lost: the retry finds the task gone, which is the ack done
        popped = queue.pop("rel-2")
        assert popped is not None
        cut[0] = True
        assert queue.complete_code(popped) == 1
        reset_clients()


def test_a_pop_whose_reply_was_lost_leases_a_task_that_comes_back_at_lease_expiry(rel_env: dict[str, str]) -> None:
    """pop is not idempotent: the attempt whose reply was lost leased a task nobody runs; the retry
    leases the next one. The lost one is taken back when its lease expires (that attempt counted)."""
    with redis_server() as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url())
        queue = TaskQueue(core_config(rel_env))
        first, second = (tasks.work.create_task((i,), user_id=user(1)) for i in range(2))
        queue.push_batch([first, second])
        lose_replies(queue, queue.scripts.pop)  # (not the steal sync that runs first)
        popped = queue.pop("rel-2", lease_seconds=1)
        assert popped is not None and popped.task_id == second.task_id  # the retry's
        assert queue.get_task_state(first.task_id)["st"] == "leased"  # type: ignore[index]
        queue.complete(popped)
        assert queue.pop("rel-2") is None  # until the lost lease expires
        time.sleep(1.2)
        back = queue.pop("rel-2")
        assert back is not None and back.task_id == first.task_id
        assert back.attempts == 2, back
        reset_clients()


def hung_health_seconds(server: RedisServer, run: Callable[[], Any]) -> float:
    server.pause()
    try:
        start = time.monotonic()
        run()
        return time.monotonic() - start
    finally:
        server.resume()


@pytest.mark.timeout(120)
def test_a_call_to_a_hung_redis_from_a_fresh_client_is_bounded(rel_env: dict[str, str]) -> None:
    """SIGSTOP: connecting succeeds (the kernel accepts) but the handshake is never answered. Before
    the one policy, redis-py's connect retries nested in its command retries: 16 attempts."""
    timeout = 0.5
    with redis_server() as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_SOCKET_TIMEOUT=str(timeout))
        reset_clients()
        queue = TaskQueue(core_config(rel_env))

        def stats() -> None:
            with pytest.raises(RedisUnavailableError):
                queue.get_stats()

        took = hung_health_seconds(server, stats)
        print(f"\nget_stats of a fresh client against a hung Redis raised after {took:.2f}s")
        assert took < 2 * timeout + 1
        reset_clients()


@pytest.mark.timeout(120)
def test_a_fresh_health_check_of_a_hung_redis_fails_within_its_bound(rel_env: dict[str, str],
                                                                     workers: Workers) -> None:
    timeout = 2.0
    with redis_server() as server:
        server.start()
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_SOCKET_TIMEOUT=str(timeout))
        start = time.monotonic()
        healthy = workers.manage("fairque_health", "rel-1")  # Redis up: the process's own cost
        baseline = time.monotonic() - start
        assert healthy.returncode == 1 and "unhealthy" not in healthy.stderr, healthy.stderr  # never seen

        result: list[Any] = []
        took = hung_health_seconds(server, lambda: result.append(workers.manage("fairque_health", "rel-1")))
        print(f"\nfairque_health against a hung Redis: exit {result[0].returncode} after {took:.2f}s "
              f"(the same against a live Redis: {baseline:.2f}s)")
        assert result[0].returncode == 1 and "unhealthy" in result[0].stderr, result[0].stderr
        assert took < baseline + 2 * timeout + 1  # the process's own start (slow on a loaded host) + the bound
