"""SIGTERM while long tasks run: they finish within graceful_shutdown_timeout, or are handed
back to their queue uncounted; the worker exits 0 and nothing is counted as failed."""

from __future__ import annotations

import time

import pytest
import redis

from fairque_django import TaskQueue
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import assert_stats_balance, runs
from .relconfig import core_config

USER = "t1:7"  # assigned to rel-1


@pytest.mark.timeout(120)
def test_sigterm_lets_running_tasks_finish(redis_client: redis.Redis, rel_env: dict[str, str],
                                           workers: Workers) -> None:
    rel_env.update(FAIRQUE_REL_GRACEFUL="6", FAIRQUE_REL_CONCURRENCY="3", FAIRQUE_REL_LEASE="2")
    queue = TaskQueue(core_config(rel_env))
    running = [tasks.work.create_task((i, 1.5), user_id=USER) for i in range(3)]
    waiting = [tasks.work.create_task((i, 0), user_id=USER) for i in range(3, 6)]
    queue.push_batch(running + waiting)
    proc = workers.start("rel-1", "--concurrency", "3")
    eventually(lambda: redis_client.hlen(tasks.STARTS) >= 3, timeout=30, what="three long tasks started")
    sent = time.monotonic()
    code = proc.terminate(30)
    took = time.monotonic() - sent
    log = proc.log()
    assert code == 0, log
    print(f"\ngraceful stop (tasks finish): exit 0 after {took:.2f}s")
    assert took < 6 + 2, log  # the 1.5 s tasks finished well within the 6 s budget
    assert runs(redis_client, tasks.RUNS) == {t.task_id: 1 for t in running}  # finished, nothing new taken
    stats = assert_stats_balance(queue, redis_client)
    assert stats["tasks_completed"] == 3 and stats["tasks_failed"] == 0 and stats["tasks_released"] == 0
    assert stats["tasks_queued"] == 3 and stats["tasks_active"] == 0
    assert "SIGTERM received" in log


@pytest.mark.timeout(120)
def test_sigterm_hands_back_tasks_that_outlive_the_grace_period(redis_client: redis.Redis, rel_env: dict[str, str],
                                                                workers: Workers) -> None:
    rel_env.update(FAIRQUE_REL_GRACEFUL="1", FAIRQUE_REL_CONCURRENCY="3", FAIRQUE_REL_LEASE="2")
    queue = TaskQueue(core_config(rel_env))
    long = [tasks.slow_first.create_task((30,), user_id=USER) for _ in range(3)]
    queue.push_batch(long)
    proc = workers.start("rel-1", "--concurrency", "3")
    eventually(lambda: redis_client.hlen(tasks.STARTS) >= 3, timeout=30, what="three long tasks started")
    sent = time.monotonic()
    code = proc.terminate(30)
    took = time.monotonic() - sent
    log = proc.log()
    print(f"\ngraceful stop (hand back): exit {code} after {took:.2f}s (graceful_shutdown_timeout 1s)")
    assert code == 0, log
    stats = assert_stats_balance(queue, redis_client)
    assert stats["tasks_failed"] == 0 and stats["tasks_released"] == 3 and stats["tasks_expired"] == 0
    assert stats["tasks_queued"] == 3 and stats["tasks_active"] == 0
    for t in long:
        state = queue.get_task_state(t.task_id)
        assert state is not None and state["st"] == "queued" and state["a"] == "0", state  # attempt not counted
    assert "handed 3 unfinished task(s) back" in log
    # the heartbeat must not spin once stop is set (one renewal per interval, not thousands)
    lost_lines = log.count("was lost while it ran")
    assert lost_lines <= 3 * 10, f"{lost_lines} 'lease lost' warnings after the hand-back: the heartbeat spins"
    # the process must be gone soon after the grace period: leases are already handed back
    assert took < 1 + 2, f"worker needed {took:.1f}s to exit after a 1 s grace period\n{log}"

    # a new worker runs them (quickly: slow_first only sleeps on the first start)
    again = workers.start("rel-1", "--concurrency", "3")
    eventually(lambda: len(runs(redis_client, tasks.RUNS)) == 3, timeout=30, what="handed-back tasks ran")
    assert again.terminate(30) == 0
    stats = assert_stats_balance(queue, redis_client)
    assert stats["tasks_completed"] == 3 and stats["tasks_failed"] == 0 and stats["tasks_pending"] == 0
    assert runs(redis_client, tasks.RUNS) == {t.task_id: 1 for t in long}
