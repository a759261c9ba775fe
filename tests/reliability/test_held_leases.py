"""Tasks a slot holds (the rest of a batch) whose lease ran out meanwhile: the worker stood still
(a stopped process, a heartbeat that could not reach Redis) longer than the lease, and another
worker took them over and ran them. The slot must not run them again: it asks Redis first."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis

from fairque_django import RedisUnavailableError, TaskQueue, Worker
from tests.support import eventually
from tests.testapp import tasks as t

LEASE = 1.0


class HeartbeatCut(TaskQueue):
    """A queue whose lease renewals fail while ``cut`` is set (the heartbeat cannot reach Redis)."""

    cut = False

    def extend_leases(self, tasks: Any, lease_seconds: float | None = None) -> Any:
        if self.cut:
            raise RedisUnavailableError("extend: Redis is unreachable (a test's outage)")
        return super().extend_leases(tasks, lease_seconds)


@pytest.mark.timeout(60)
def test_held_tasks_whose_leases_ran_out_are_not_run_twice(make_config: Any, redis_client: redis.Redis,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "max_concurrent_tasks": 1,
                                   "poll_interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2}],
                         worker_id="w1", lease_timeout_seconds=LEASE)
    q = TaskQueue(config)
    tags = ["x0", "stall", *(f"y{i}" for i in range(5))]  # x0 alone, then a batch: "stall" and the y's
    for tag in tags:
        q.push(t.record(tag), user_id="a")
    queue = HeartbeatCut(config, worker_id="w1")
    other = TaskQueue(config, worker_id="w1")  # another slot: its pops carry tokens of their own
    taken_over: list[str] = []
    calls: list[int] = []

    def around() -> None:  # before and after each task; before "stall" (3rd call) the worker stands still
        calls.append(1)
        if len(calls) != 3:
            return
        queue.cut = True
        time.sleep(LEASE * 1.5)  # the leases of the batch run out unrenewed
        got = other.pop_many(16)  # lease recovery hands them to another slot, which runs them
        for task in got:
            if task.args[0] != "stall":  # (that one the worker runs now: its lease is lost as it runs)
                t.log_client().rpush(t.LOG, f"a|{task.args[0]}")
                taken_over.append(str(task.args[0]))
        other.complete_and_pop_many([(task, 0.001, None) for task in got], 0)
        queue.cut = False

    # no prefetch, a hold longer than the stall: the slot keeps the rest of its batch, nothing hands it back
    worker = Worker(config, queue=queue, around_task=around, install_signal_handlers=False, prefetch=False,
                    prefetch_hold_seconds=5.0, prefetch_batch_seconds=5.0)  # (batches of 16: up to 5 s' worth)
    th = threading.Thread(target=worker.start)
    with caplog.at_level(logging.INFO, logger="fairque_django.worker"):
        th.start()
        try:
            eventually(lambda: q.get_stats()["tasks_completed"] == len(tags), timeout=30,
                       what="every task acknowledged")
            time.sleep(0.5)  # (a second run would show by now)
        finally:
            worker.stop()
            th.join(15)
    assert taken_over, "no lease ran out: the stall did not happen as planned"
    ran = [x.decode() for x in redis_client.lrange(t.LOG, 0, -1)]
    assert sorted(ran) == sorted(f"a|{tag}" for tag in tags), ran  # each once
    assert any("handed back after all" in r.getMessage() for r in caplog.records)
    stats = q.get_stats()
    assert stats["tasks_completed"] == len(tags) and stats["tasks_active"] == 0
    assert stats["tasks_expired"] == len(taken_over) + 1  # the y's and "stall" itself
