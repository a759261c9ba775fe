"""Races: many threads push and many workers (threads, each with its own TaskQueue and worker
id) pop the same users at once.

What is checkable under concurrency, and why: every script runs atomically, so the pops form
one serial order even though the threads race. With every user preloaded with P tasks and no
expiry, a user cannot leave the rotation before its P-th task is served, so its virtual time
when serving its i-th task (i < P) is exactly i. Each pop takes the smallest (virtual time,
user id) among the users that worker may serve, and a user's virtual time only grows; hence:

- within one worker, its pops of preloaded tasks have strictly increasing (i, user) keys - no
  user is served twice (i, then i+1) while another user that worker may serve still waited at
  round <= i; this holds for a worker restricted to a few users too;
- across the unrestricted workers, a pop that finished before another started has the smaller
  key (the serial order respects real time).

Tasks pushed concurrently (i >= P) are checked for loss and single delivery only. A second test
uses 50 ms leases and stalls some workers past them: a task may then be delivered again, but the
redelivery never starts before the previous lease's deadline, and exactly one ack wins."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
import redis

from fairque_django import Task, TaskQueue
from tests.support.wait import eventually

from .helpers import assert_drained, assert_stats_balance

USERS = [f"u{n}" for n in range(8)]


@dataclass(frozen=True)
class Delivery:
    worker: str
    task_id: str
    user: str
    index: int
    started: float  # monotonic, before the pop call
    returned: float  # monotonic, after it
    lease_start_ms: int  # server time the pop ran (deadline - lease)
    deadline_ms: int
    ack: int = 1


def pusher(queue: TaskQueue, users: list[str], start: int, count: int, ids: list[str], pause: float) -> None:
    for i in range(start, start + count):
        for user in users:
            task = Task.create(user_id=user, payload={"i": i}, task_id=f"{user}-{i:03d}")
            assert queue.push(task)["success"]
            ids.append(task.task_id)
        time.sleep(pause)  # the scenario: pushes spread over time, interleaved with the pops


class PopWorker(threading.Thread):
    def __init__(self, queue: TaskQueue, worker_id: str, done: threading.Event, lease: float,
                 stall: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.queue = queue
        self.worker_id = worker_id
        self.done = done
        self.lease = lease
        self.stall = stall
        self.deliveries: list[Delivery] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.is_set():
                started = time.monotonic()
                task = self.queue.pop(self.worker_id, lease_seconds=self.lease)
                returned = time.monotonic()
                if task is None:
                    time.sleep(0.002)  # a worker's own poll interval, not a wait for the test
                    continue
                deadline = round((task.lease_deadline or 0) * 1000)
                first = task.attempts == 1
                if self.stall and first and int(hashlib.sha1(task.task_id.encode()).hexdigest(), 16) % 5 == 0:
                    time.sleep(self.stall)  # outlive the first lease: someone may take the task over
                code = self.queue.complete_code(task)
                self.deliveries.append(Delivery(self.worker_id, task.task_id, task.user_id or "",
                                                int(task.payload["i"]), started, returned,
                                                deadline - int(self.lease * 1000), deadline, code))
        except BaseException as exc:
            self.error = exc


def run_race(config: Any, worker_ids: list[str], *, preload: int, extra: int, lease: float,
             stall: float = 0.0, timeout: float = 90) -> tuple[list[str], list[Delivery], TaskQueue]:
    producer = TaskQueue(config)
    ids: list[str] = []
    pusher(producer, USERS, 0, preload, ids, 0)
    done = threading.Event()
    workers = [PopWorker(TaskQueue(config, worker_id=w), w, done, lease, stall) for w in worker_ids]
    pushers = [threading.Thread(target=pusher, args=(TaskQueue(config), USERS[k::4], preload, extra, ids, 0.003),
                                daemon=True) for k in range(4)]
    for thread in [*workers, *pushers]:
        thread.start()
    for thread in pushers:
        thread.join(timeout)
    total = len(USERS) * (preload + extra)
    try:
        eventually(lambda: len({d.task_id for w in workers for d in w.deliveries if d.ack == 1}) >= total,
                   timeout=timeout, what=f"{total} tasks acknowledged")
    finally:
        done.set()
    for w in workers:
        w.join(10)
        assert w.error is None, w.error
    assert len(ids) == total
    return ids, [d for w in workers for d in w.deliveries], producer


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_racing_pushers_and_poppers_deliver_each_task_once_in_round_robin_order(make_config: Any,
                                                                               redis_client: redis.Redis) -> None:
    restricted = ["u0", "u3", "u5"]
    config = make_config(workers=[
        *({"id": f"c{n}", "steal_targets": ["*"]} for n in range(4)),
        {"id": "picky", "steal_targets": restricted},
    ], lease_timeout_seconds=60)
    preload = 30
    ids, deliveries, producer = run_race(config, ["c0", "c1", "c2", "c3", "picky"], preload=preload, extra=30,
                                         lease=60)

    by_task: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_task[d.task_id].append(d)
    assert set(by_task) == set(ids), "lost tasks"
    assert {t: len(ds) for t, ds in by_task.items() if len(ds) > 1} == {}, "a task was delivered twice"
    assert all(d.ack == 1 for d in deliveries)

    per_worker: dict[str, list[Delivery]] = defaultdict(list)
    for d in sorted(deliveries, key=lambda d: d.started):
        per_worker[d.worker].append(d)
    for worker, seq in per_worker.items():
        keys = [(d.index, d.user) for d in seq if d.index < preload]
        bad = [(a, b) for a, b in pairwise(keys) if not a < b]
        assert bad == [], f"{worker} broke the rotation: {bad[:5]}"
        if worker == "picky":
            assert {d.user for d in seq} <= set(restricted)
    # real-time order across the unrestricted workers
    free = sorted((d for d in deliveries if d.worker != "picky" and d.index < preload), key=lambda d: d.started)
    violations = [(x, y) for i, x in enumerate(free) for y in free[i + 1:]
                  if x.returned < y.started and not (x.index, x.user) < (y.index, y.user)]
    assert violations == [], violations[:3]
    print(f"\nrace: {len(ids)} tasks, {len(deliveries)} deliveries, "
          f"pops per worker {({w: len(s) for w, s in sorted(per_worker.items())})}")

    stats = assert_stats_balance(producer, redis_client)
    assert stats["tasks_pushed"] == stats["tasks_completed"] == len(ids) and stats["tasks_late_acks"] == 0
    assert_drained(redis_client, config.queue.stats_prefix)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_expired_leases_are_never_held_twice_and_one_ack_wins(make_config: Any, redis_client: redis.Redis) -> None:
    config = make_config(workers=[{"id": f"c{n}", "steal_targets": ["*"]} for n in range(4)],
                         lease_timeout_seconds=60, default_max_retries=100)
    ids, deliveries, producer = run_race(config, ["c0", "c1", "c2", "c3"], preload=10, extra=15, lease=0.05,
                                         stall=0.08)
    by_task: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_task[d.task_id].append(d)
    assert set(by_task) == set(ids), "lost tasks"
    overlaps = []
    for task_id, ds in by_task.items():
        ds.sort(key=lambda d: d.lease_start_ms)
        overlaps += [(task_id, a, b) for a, b in pairwise(ds) if b.lease_start_ms < a.deadline_ms]
        assert sum(d.ack == 1 for d in ds) == 1, (task_id, ds)  # exactly one acknowledgement wins
    assert overlaps == [], overlaps[:3]
    redelivered = sum(len(ds) - 1 for ds in by_task.values())
    rejected = sum(d.ack == 0 for d in deliveries)
    stats = assert_stats_balance(producer, redis_client)
    print(f"\nshort leases: {len(ids)} tasks, {redelivered} redeliveries after expiry, {rejected} late acks rejected")
    assert redelivered > 0, "no lease expired: the test did not exercise takeovers"
    assert stats["tasks_completed"] == len(ids) and stats["tasks_pending"] == 0
    assert stats["tasks_expired"] == redelivered and stats["tasks_late_acks"] == rejected
    assert_drained(redis_client, config.queue.stats_prefix)
