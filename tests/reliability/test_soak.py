"""Load soak: 50,000 tasks for 200 users on 4 worker processes x 4 threads, with 5% failures
per attempt (deterministic by task id and retry number) and max_retries=2. It finishes within
a fixed bound, loses nothing, and the DLQ holds exactly the tasks that failed all 3 attempts."""

from __future__ import annotations

import time

import pytest
import redis

from fairque_django import TaskQueue
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import assert_drained, assert_stats_balance, runs
from .relconfig import WORKER_IDS, core_config, user

N_TASKS = 50_000
N_USERS = 200
BOUND_SECONDS = 240


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_soak_50k_tasks_with_failures_and_retries(redis_client: redis.Redis, rel_env: dict[str, str],
                                                  workers: Workers) -> None:
    rel_env.update(FAIRQUE_REL_LEASE="30", FAIRQUE_REL_CONCURRENCY="4", FAIRQUE_REL_BACKOFF="0.05",
                   FAIRQUE_REL_HEARTBEAT="2", FAIRQUE_REL_POLL="0.5")
    queue = TaskQueue(core_config(rel_env))
    batch = []
    for i in range(N_TASKS):
        task = tasks.maybe_fails.create_task((i,), user_id=user(i % N_USERS))
        task.task_id = f"soak-{i:05d}"
        batch.append(task)
    ids = [t.task_id for t in batch]
    doomed = {tid for tid in ids if all(tasks.fails_at(tid, r) for r in range(3))}
    retried = sum(tasks.fails_at(tid, 0) for tid in ids)
    assert doomed, "the failure pattern must doom some tasks"

    start = time.monotonic()
    assert queue.push_batch(batch)["pushed"] == N_TASKS
    pushed_in = time.monotonic() - start
    procs = [workers.start(wid, "--loglevel", "WARNING") for wid in WORKER_IDS]

    def finished() -> bool:
        stats = queue.get_stats()
        return stats["tasks_pending"] == 0 and stats["tasks_completed"] + stats["dlq_size"] == N_TASKS

    eventually(finished, timeout=BOUND_SECONDS, what=f"{N_TASKS} tasks finished", interval=1.0)
    took = time.monotonic() - start
    for proc in procs:
        assert proc.terminate(60) == 0, proc.log()[-3000:]

    counts = runs(redis_client, tasks.RUNS)
    stats = assert_stats_balance(queue, redis_client)
    dead = {e.task_id for e in queue.get_dlq(limit=N_TASKS)}
    print(f"\nsoak: {N_TASKS} tasks / {N_USERS} users in {took:.1f}s (push {pushed_in:.1f}s, "
          f"{N_TASKS / took:.0f} tasks/s), {stats['tasks_failed']} failed attempts, "
          f"{stats['tasks_retried']} retries, {len(dead)} dead")
    # (should a task run twice or not at all, the failures no plan asked for say why)
    unplanned = [line for proc in procs for line in proc.log().splitlines()
                 if "Error" in line and "planned failure" not in line]
    twice = {tid: n for tid, n in counts.items() if n != 1}
    assert dead == doomed, (dead ^ doomed, unplanned[:20])
    assert set(counts) == set(ids) - doomed and not twice, (twice, len(set(ids) - doomed - set(counts)), stats,
                                                            unplanned[:20])
    assert stats["tasks_completed"] == N_TASKS - len(doomed)
    assert stats["tasks_failed"] >= retried and stats["tasks_expired"] == 0
    for entry in queue.get_dlq(limit=N_TASKS):
        assert entry.attempts == 3 and entry.error_type == "RuntimeError" and "planned failure" in entry.error
    assert_drained(redis_client, queue.config.queue.stats_prefix)
