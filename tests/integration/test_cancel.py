"""Cancellation (issue 15) against a real Redis and real workers: queued, delayed and running
(cooperative) tasks, a tenant's whole backlog, races with pops, and the async API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest
import redis

import fairque_django
from fairque_django import (
    AsyncTaskQueue,
    AsyncWorker,
    CancelResult,
    FairQueueConfig,
    Priority,
    Task,
    TaskQueue,
    TaskResult,
    TaskStatus,
    task,
)
from tests.reliability.helpers import assert_stats_balance
from tests.support import eventually, running_worker

WORKERS = [
    {"id": "w1", "assigned_users": ["a", "b"], "steal_targets": ["c"], "heartbeat_interval_seconds": 0.1},
    {"id": "w2", "assigned_users": ["c"], "steal_targets": ["a"], "heartbeat_interval_seconds": 0.1},
]
LOOPS: Counter[str] = Counter()  # task id -> loops run (the tasks below run in this process)


@pytest.fixture
def config(make_config: Any) -> FairQueueConfig:
    return make_config(workers=WORKERS, default_max_retries=3, lease_timeout_seconds=30)


@pytest.fixture
def queue(config: FairQueueConfig) -> TaskQueue:
    return TaskQueue(config)


def me() -> str:
    running = fairque_django.core.context.running_task()
    assert running is not None
    return running.task.task_id


@task(name="tests.cancel.polls")
def polls(how: str) -> str:
    """Runs until told it was cancelled (up to 60 s), then stops as ``how`` says."""
    for _ in range(6000):
        LOOPS[me()] += 1
        if how == "raise":
            fairque_django.raise_if_cancelled()
        elif fairque_django.cancelled():
            if how == "fail":
                raise RuntimeError("stopping, badly")
            return "stopped early"  # returns anyway: still CANCELLED, never a success
        time.sleep(0.01)
    return "ran to the end"


@task(name="tests.cancel.apolls")
async def apolls() -> str:
    for _ in range(6000):
        LOOPS[me()] += 1
        fairque_django.raise_if_cancelled()
        await asyncio.sleep(0.01)
    return "ran to the end"


def handle(queue: TaskQueue, t: Task) -> TaskResult:
    return TaskResult(t.task_id, t.user_id or "", queue)


def ready_users(client: redis.Redis, queue: TaskQueue, part: str) -> list[str]:
    return [u.decode() for u in client.zrange(queue.keys.ready(part), 0, -1)]


# --------------------------------------------------------------------------- waiting tasks


def test_cancel_a_queued_task(queue: TaskQueue, redis_client: redis.Redis) -> None:
    first, second, other = Task.create("a", payload={"n": 1}), Task.create("a", payload={"n": 2}), Task.create("b")
    for t in (first, second, other):
        queue.push(t)
    assert queue.cancel(first.task_id) == CancelResult.CANCELLED == "cancelled"
    assert queue.cancel(first.task_id, user_id="a") == "cancelled"  # again: its record says so
    assert queue.cancel(first.task_id) == "not_found"  # (without a user, no record can be read)
    snap = handle(queue, first).refresh()
    assert snap.status is TaskStatus.CANCELLED and snap.is_finished
    with pytest.raises(fairque_django.TaskFailedError, match="cancelled"):
        _ = snap.return_value
    assert queue.get_task_state(first.task_id) is None  # the hash is gone; the record stays
    assert 0 < redis_client.ttl(queue.keys.result("a", first.task_id)) <= queue.config.queue.result_ttl_seconds
    # its user still has a task: it stays in the rotation; the next pop is the second task
    assert ready_users(redis_client, queue, "w1") == ["a", "b"]
    assert handle(queue, second).cancel() == "cancelled"  # the handle's own cancel
    # now a has nothing ready: it left the rotation and the steal copy of w2 (who may steal a)
    assert ready_users(redis_client, queue, "w1") == ["b"]
    assert [u.decode() for u in redis_client.zrange(queue.keys.steal_ready("w1", "w2"), 0, -1)] == []
    popped = TaskQueue(queue.config, worker_id="w1").pop()
    assert popped is not None and popped.task_id == other.task_id
    queue.complete(popped)
    stats = assert_stats_balance(queue, redis_client)
    assert (stats["tasks_cancelled"], stats["tasks_completed"], stats["users"]["a"]["cancelled"]) == (2, 1, 2)


def test_a_cancelled_user_comes_back_at_its_place(queue: TaskQueue, redis_client: redis.Redis) -> None:
    """Cancelling a user's last task keeps its virtual time: pushing again cannot jump the rotation."""
    w1 = TaskQueue(queue.config, worker_id="w1")
    queue.push_batch([Task.create("a"), Task.create("a"), Task.create("b"), Task.create("b")])
    for _ in range(2):  # a, then b: both at virtual time 0.5 now (a, weight 1)
        t = w1.pop()
        assert t is not None
        w1.complete(t)
    [left_a] = [i.decode() for i in redis_client.lrange(queue.keys.lane("a", Priority.NORMAL), 0, -1)]
    score = redis_client.zscore(queue.keys.ready("w1"), "a")
    assert queue.cancel(left_a) == "cancelled"
    assert float(redis_client.hget(queue.keys.vfinish("w1"), "a") or -1) == score
    again = Task.create("a")
    queue.push(again)
    assert redis_client.zscore(queue.keys.ready("w1"), "a") == score


def test_cancel_a_delayed_task(queue: TaskQueue, redis_client: redis.Redis) -> None:
    later = Task.create("a", delay_seconds=30)
    queue.push(later)
    assert queue.get_task_state(later.task_id)["st"] == "delayed"  # type: ignore[index]
    assert queue.cancel(later.task_id, user_id="b") == "not_found"  # another tenant's: invisible
    assert queue.cancel(later.task_id, user_id="a") == "cancelled"
    assert redis_client.zcard(queue.keys.delayed) == 0
    assert handle(queue, later).refresh().status is TaskStatus.CANCELLED
    assert_stats_balance(queue, redis_client)


def test_dead_finished_and_unknown_tasks_are_not_cancellable(queue: TaskQueue, redis_client: redis.Redis) -> None:
    dead, done = Task.create("a", max_retries=0), Task.create("a")
    queue.push(dead)
    w1 = TaskQueue(queue.config, worker_id="w1")
    t = w1.pop()
    assert t is not None and w1.fail(t, "boom") == "dead"
    assert queue.cancel(dead.task_id) == CancelResult.FINISHED  # the DLQ API deletes dead tasks
    assert queue.dlq_size() == 1
    queue.push(done)
    t = w1.pop()
    assert t is not None
    queue.store_result(t, {"status": "SUCCESSFUL", "return_value": 1})
    w1.complete(t)
    assert queue.cancel(done.task_id, user_id="a") == CancelResult.FINISHED
    assert queue.cancel(done.task_id) == CancelResult.NOT_FOUND
    assert queue.cancel("no-such-task") == CancelResult.NOT_FOUND
    assert handle(queue, done).refresh().status is TaskStatus.SUCCESSFUL
    assert queue.get_stats()["tasks_cancelled"] == 0


# --------------------------------------------------------------------------- running tasks


@pytest.mark.parametrize("how", ["poll", "raise", "fail"])
def test_cancel_a_running_task(config: FairQueueConfig, queue: TaskQueue, redis_client: redis.Redis,
                               how: str) -> None:
    """A real worker: the task polls cancelled() (or raise_if_cancelled()) and stops; however it
    ends, its handle reads CANCELLED, it is not retried and never counts as completed."""
    t = polls.create_task([how], user_id="a")
    queue.push(t)
    with running_worker(config, "w1") as worker:
        eventually(lambda: LOOPS[t.task_id] > 3, what="the task runs")
        assert queue.get_task_state(t.task_id)["st"] == "leased"  # type: ignore[index]
        assert handle(queue, t).cancel() == CancelResult.CANCELLING
        assert queue.cancel(t.task_id) == "cancelling"  # idempotent
        result = handle(queue, t)
        eventually(lambda: result.refresh().is_finished, timeout=20, what="the cancelled task ends")
        # (the worker counts it once it reads the ack's reply: a moment after Redis finished it)
        eventually(lambda: worker.cancelled == 1, what="the worker counts it cancelled")
        assert worker.processed == 0
    assert result.status is TaskStatus.CANCELLED and result.attempts == 1
    loops = LOOPS[t.task_id]
    time.sleep(0.3)
    assert LOOPS[t.task_id] == loops < 6000  # stopped early, and not run again
    stats = assert_stats_balance(queue, redis_client)
    assert (stats["tasks_popped"], stats["tasks_completed"], stats["tasks_cancelled"]) == (1, 0, 1)
    assert (stats["tasks_retried"], stats["dlq_size"], stats["tasks_pending"]) == (0, 0, 0)


def test_a_cancelled_task_that_finishes_before_the_heartbeat_reads_cancelled(
        queue: TaskQueue, redis_client: redis.Redis) -> None:
    """Cancelled after it returned, before its ack: the ack finishes it as cancelled (code 2), the
    success record it stored is replaced."""
    t = Task.create("a")
    queue.push(t)
    w1 = TaskQueue(queue.config, worker_id="w1")
    leased = w1.pop()
    assert leased is not None
    assert queue.cancel(t.task_id) == "cancelling"
    codes, _, _ = w1.complete_and_pop_many([(leased, 0.01, '{"status":"SUCCESSFUL","return_value":1}')], 0)
    assert codes == [2]
    assert handle(queue, t).refresh().status is TaskStatus.CANCELLED
    stats = assert_stats_balance(queue, redis_client)
    assert (stats["tasks_completed"], stats["tasks_cancelled"]) == (0, 1)


@pytest.mark.parametrize("ending", ["lease expiry", "release"])
def test_a_flagged_task_whose_worker_goes_away_is_not_retried(queue: TaskQueue, redis_client: redis.Redis,
                                                             ending: str) -> None:
    t = Task.create("a")
    queue.push(t)
    w1 = TaskQueue(queue.config, worker_id="w1")
    leased = w1.pop(lease_seconds=0.05 if ending == "lease expiry" else 30)
    assert leased is not None and queue.cancel(t.task_id) == "cancelling"
    if ending == "release":
        assert w1.release([leased]) == 0  # not handed back: finished as cancelled
    else:
        time.sleep(0.1)
        redis_client.delete(queue.keys.gate)  # the next pop runs the timers now
        assert w1.pop() is None  # the expired lease is taken back: as cancelled, not retried
    assert handle(queue, t).refresh().status is TaskStatus.CANCELLED
    stats = assert_stats_balance(queue, redis_client)
    assert (stats["tasks_cancelled"], stats["tasks_expired"], stats["tasks_retried"]) == (1, 0, 0)


def test_a_garbage_cancel_flag_still_cancels(queue: TaskQueue, redis_client: redis.Redis) -> None:
    """The flag holds the result TTL; garbage there still means cancelled, kept for the default hour."""
    t = Task.create("a")
    queue.push(t)
    w1 = TaskQueue(queue.config, worker_id="w1")
    leased = w1.pop()
    assert leased is not None
    redis_client.hset(queue.keys.task(t.task_id), "cx", "garbage")
    assert w1.extend_leases([leased]) == ([], [t.task_id])
    assert w1.complete_code(leased) == 2
    assert 3000 < redis_client.ttl(queue.keys.result("a", t.task_id)) <= 3600


# --------------------------------------------------------------------------- a tenant's backlog


def test_cancel_tenant_over_10000_queued_tasks(queue: TaskQueue, redis_client: redis.Redis) -> None:
    crowd = [Task.create("a", priority=6 if i % 10 == 0 else 3) for i in range(10_000)]
    queue.push_batch(crowd)
    queue.push_batch([Task.create("a", delay_seconds=60) for _ in range(50)])
    bystanders = [Task.create("b") for _ in range(20)] + [Task.create("c", delay_seconds=60)]
    queue.push_batch(bystanders)
    running = Task.create("a")
    queue.push(running, "a")
    # (the running one: the first of a's lane is a critical task; lease one task of a)
    leased = TaskQueue(queue.config, worker_id="w1").pop()
    assert leased is not None and leased.user_id in ("a", "b")
    calls_before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    started = time.perf_counter()
    counts = queue.cancel_tenant("a", chunk=1000)
    took = time.perf_counter() - started
    calls = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) - calls_before
    waiting_a = 10_000 + 50 + 1 - (1 if leased.user_id == "a" else 0)
    assert counts == {"cancelled": waiting_a, "cancelling": 0}, counts
    assert calls >= 10  # bounded work per script call: at least one call per 1000 tasks
    print(f"cancel_tenant: {waiting_a} tasks in {took:.2f}s, {calls} script calls")
    assert not redis_client.exists(*queue.keys.lanes("a"), queue.keys.gone("a"))
    assert "a" not in ready_users(redis_client, queue, "w1")
    assert queue.user_depth("b")["normal"] == 20 - (1 if leased.user_id == "b" else 0)
    assert redis_client.zcard(queue.keys.delayed) == 1  # c's
    if leased.user_id == "a":
        assert queue.cancel_tenant("a", running=True) == {"cancelled": 0, "cancelling": 1}
    stats = assert_stats_balance(queue, redis_client)
    assert stats["users"]["a"]["cancelled"] == waiting_a


def test_cancel_tenant_checks_the_user_id(queue: TaskQueue) -> None:
    with pytest.raises(fairque_django.TaskValidationError):
        queue.cancel_tenant("bad {user}")


# --------------------------------------------------------------------------- races


def test_cancel_racing_with_pops_runs_or_cancels_each_task_once(queue: TaskQueue,
                                                               redis_client: redis.Redis) -> None:
    """Two threads pop and ack while another cancels every task: each task is either run to its
    ack or cancelled, never both, never lost; the counters say the same."""
    tasks = [Task.create("a" if i % 2 else "b") for i in range(600)]
    queue.push_batch(tasks)
    acks: dict[str, int] = {}
    answers: dict[str, str] = {}
    lock = threading.Lock()
    go = threading.Event()

    def popper() -> None:
        q = TaskQueue(queue.config, worker_id="w1")
        go.wait()
        while (t := q.pop()) is not None:
            code = q.complete_code(t)
            with lock:
                assert t.task_id not in acks, f"{t.task_id} popped twice"
                acks[t.task_id] = code

    def canceller() -> None:
        q = TaskQueue(queue.config)
        go.wait()
        for t in reversed(tasks):
            answers[t.task_id] = q.cancel(t.task_id).value

    threads = [threading.Thread(target=popper), threading.Thread(target=popper), threading.Thread(target=canceller)]
    for th in threads:
        th.start()
    go.set()
    for th in threads:
        th.join(120)
    for t in tasks:
        said, code = answers[t.task_id], acks.get(t.task_id)
        if said == "cancelled":
            assert code is None, f"{t.task_id} cancelled while queued, and run"
        elif said == "cancelling":
            assert code == 2, f"{t.task_id} flagged while leased: its ack finishes it as cancelled"
        else:
            assert said == "not_found" and code == 1, (t.task_id, said, code)
    stats = assert_stats_balance(queue, redis_client)
    cancelled = sum(1 for a in answers.values() if a in ("cancelled", "cancelling"))
    assert stats["tasks_cancelled"] == cancelled and stats["tasks_completed"] == len(tasks) - cancelled
    assert stats["tasks_pending"] == 0
    print(f"race: {Counter(answers.values())}")


# --------------------------------------------------------------------------- asyncio


def test_async_cancel_and_cancel_tenant(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    async def main() -> None:
        async with AsyncTaskQueue(config) as q:
            one, two, three = Task.create("a"), Task.create("a", delay_seconds=30), Task.create("c")
            for t in (one, two, three):
                await q.push(t)
            assert await q.cancel(one.task_id, user_id="a") == "cancelled"
            assert await TaskResult(two.task_id, "a", q).acancel() == "cancelled"
            assert (await TaskResult(one.task_id, "a", q).arefresh()).status is TaskStatus.CANCELLED
            assert await q.cancel_tenant("c") == {"cancelled": 1, "cancelling": 0}
            assert (await q.get_stats())["tasks_cancelled"] == 3

    asyncio.run(main())
    assert_stats_balance(TaskQueue(config), redis_client)


def test_async_worker_task_sees_its_cancel(config: FairQueueConfig, queue: TaskQueue,
                                          redis_client: redis.Redis) -> None:
    t = apolls.create_task([], user_id="a")
    queue.push(t)

    async def main() -> AsyncWorker:
        worker = AsyncWorker(config, worker_id="w1", install_signal_handlers=False)
        serving = asyncio.create_task(worker.run())
        while LOOPS[t.task_id] < 3:
            await asyncio.sleep(0.01)
        async with AsyncTaskQueue(config) as q:
            assert await q.cancel(t.task_id) == "cancelling"
            result = TaskResult(t.task_id, "a", q)
            while not (await result.arefresh()).is_finished:
                await asyncio.sleep(0.02)
            assert result.status is TaskStatus.CANCELLED
        worker.stop()
        await asyncio.wait_for(serving, 20)
        return worker

    worker = asyncio.run(main())
    assert worker.cancelled == 1 and worker.processed == 0
    stats = assert_stats_balance(queue, redis_client)
    assert (stats["tasks_completed"], stats["tasks_cancelled"], stats["tasks_retried"]) == (0, 1, 0)
