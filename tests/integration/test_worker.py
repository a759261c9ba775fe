"""Worker in-process (threads) against a real Redis: order, retries, DLQ, timeouts, XCom, shutdown."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from fairque_django import RedisUnavailableError, Task, TaskHandler, TaskQueue, Worker
from fairque_django.core.worker import worker_health
from fairque_django.core.worker.slot import Slot
from tests.support import eventually
from tests.testapp import tasks as t

LOG = t.LOG


def cfg(make_config: Any, **queue: Any) -> Any:
    return make_config(workers=[
        {"id": "w1", "assigned_users": ["a", "b", "c"], "steal_targets": ["d"],
         "max_concurrent_tasks": 1, "poll_interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2,
         "graceful_shutdown_timeout": 2},
        {"id": "w2", "assigned_users": ["d"], "max_concurrent_tasks": 1, "poll_interval_seconds": 0.2},
    ], worker_id="w1", **queue)


def run_burst(config: Any, handler: TaskHandler | None = None, **kw: Any) -> Worker:
    return run_to_end(Worker(config, handler, worker_id=kw.pop("worker_id", "w1"), burst=True,
                             install_signal_handlers=False, **kw))


def run_to_end(worker: Worker) -> Worker:
    """Run a burst worker in a thread until it stops by itself (within 30 s)."""
    th = threading.Thread(target=worker.start)
    th.start()
    th.join(30)
    assert not th.is_alive(), "burst worker did not finish"
    return worker


def run_until(worker: Worker, done: Callable[[], bool], what: str, timeout: float = 30) -> Worker:
    """Run a worker in a thread until ``done()`` (waited for up to ``timeout`` s), then stop it."""
    th = threading.Thread(target=worker.start, daemon=True)
    th.start()
    try:
        eventually(done, timeout=timeout, what=what)
    finally:
        worker.stop()
        th.join(30)
    return worker


def log(redis_client: redis.Redis, key: str = LOG) -> list[str]:
    return [x.decode() for x in redis_client.lrange(key, 0, -1)]


def test_round_robin_and_priorities(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    for i in range(6):
        q.push(t.record(f"a{i}"), user_id="a")
    q.push(t.record("b0"), user_id="b")
    q.push(t.record("c0"), user_id="c")
    q.push(t.urgent("x"), user_id="c")
    w = run_burst(config)
    order = log(redis_client)
    # round-robin over a, b, c; within c the critical lane first
    assert order == ["a|a0", "b|b0", "c|urgent-x", "a|a1", "c|c0", "a|a2", "a|a3", "a|a4", "a|a5"]
    assert w.processed == 9 and w.failed == 0


def test_steals_only_when_own_users_are_empty(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    q.push(t.record("d0"), user_id="d")
    q.push(t.record("a0"), user_id="a")
    q.push(t.record("a1"), user_id="a")
    run_burst(config)
    assert log(redis_client) == ["a|a0", "a|a1", "d|d0"]


def test_retry_then_success(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config, retry_backoff_base_seconds=0.05)
    q = TaskQueue(config)
    q.push(t.flaky("k", 2), user_id="a")
    run_burst(config)
    assert log(redis_client) == ["a|flaky-ok-3"]
    stats = q.get_stats()
    assert stats["tasks_failed"] == 2 and stats["tasks_retried"] == 2 and stats["tasks_completed"] == 1


def test_always_failing_task_lands_in_dlq_with_traceback(make_config: Any) -> None:
    config = cfg(make_config, retry_backoff_base_seconds=0.05)
    q = TaskQueue(config)
    task = t.always_fails("nope")
    q.push(task, user_id="b")
    run_burst(config)
    (entry,) = q.get_dlq()
    assert entry.task_id == task.task_id and entry.user_id == "b"
    assert entry.error_type == "ValueError" and "always fails: nope" in entry.error
    assert "Traceback" in entry.traceback and "always_fails" in entry.traceback
    assert entry.attempts == 2 and entry.failure_type == "error"


def test_unregistered_function_is_never_imported_or_run(make_config: Any, tmp_path: Any,
                                                        monkeypatch: Any) -> None:
    mark = tmp_path / "mark"
    monkeypatch.setenv("FAIRQUE_EVIL_MARK", str(mark))
    config = cfg(make_config)
    q = TaskQueue(config)
    evil = Task.create(user_id="a", func_name="tests.testapp.evil.run")
    system = Task.create(user_id="a", func_name="os.system", args=["touch " + str(tmp_path / "pwned")])
    q.push(evil)
    q.push(system)
    run_burst(config)
    assert "tests.testapp.evil" not in sys.modules
    assert not mark.exists() and not (tmp_path / "pwned").exists()
    entries = {e.task_id: e for e in q.get_dlq()}
    assert set(entries) == {evil.task_id, system.task_id}
    assert all(e.failure_type == "unregistered" and "not registered" in e.error for e in entries.values())
    assert all(e.attempts == 1 for e in entries.values())  # dead at once, not retried


def test_payload_only_task_needs_a_handler(make_config: Any, redis_client: redis.Redis) -> None:
    class Handler(TaskHandler):
        def _process_task(self, task: Task) -> bool:
            if task.payload.get("action") == "custom":
                redis_client.rpush(LOG, f"custom|{task.payload['n']}")
                return True
            return super()._process_task(task)

    config = cfg(make_config)
    q = TaskQueue(config)
    q.push(Task.create(user_id="a", payload={"action": "custom", "n": 1}))
    q.push(t.record("fn"), user_id="a")
    q.push(Task.create(user_id="b", payload={"action": "other"}))
    run_burst(config, Handler())
    assert log(redis_client) == ["custom|1", "b|fn"] or sorted(log(redis_client)) == ["a|fn", "custom|1"]
    (entry,) = q.get_dlq()
    assert "payload-only" in entry.error


def test_handler_hooks(make_config: Any) -> None:
    seen: list[tuple[str, str]] = []

    class Handler(TaskHandler):
        def on_task_success(self, task: Task, duration: float) -> None:
            seen.append(("ok", task.func_name or ""))

        def on_task_failure(self, task: Task, error: BaseException, duration: float) -> None:
            seen.append(("fail", type(error).__name__))

    config = cfg(make_config)
    q = TaskQueue(config)
    q.push(t.record("x"), user_id="a")
    q.push(t.always_fails("y"), user_id="a")
    run_burst(config, Handler(), max_tasks=None)
    assert ("ok", "tests.testapp.tasks.record") in seen and ("fail", "ValueError") in seen


def test_timeout_is_recorded_and_retried_or_dead(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    seen: list[str] = []

    class Handler(TaskHandler):
        def on_task_timeout(self, task: Task, duration: float) -> None:
            seen.append(task.task_id)

    task = t.spins(5)
    q.push(task, user_id="a")
    start = time.monotonic()
    run_burst(config, Handler())
    assert time.monotonic() - start < 4
    (entry,) = q.get_dlq()
    assert entry.failure_type == "timeout" and entry.error_type == "TaskTimeoutError"
    assert seen == [task.task_id]
    time.sleep(0.2)  # a negative check: the stopped code would have logged within this time
    assert "a|spun" not in log(redis_client)  # the spinning code was stopped


def test_xcom_is_scoped_per_user(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    q.push(t.xcom_write("secret", "A-data"), user_id="a")
    q.push(t.produce(7), user_id="a")
    run_burst(config)
    q.push(t.xcom_read("secret"), user_id="b")
    q.push(t.xcom_read("secret"), user_id="a")
    q.push(t.xcom_read("auto_key"), user_id="a")
    run_burst(config)
    assert sorted(log(redis_client)) == sorted(["b|<missing>", "a|A-data", "a|{'n': 7}"])


def test_results_are_stored_per_user(make_config: Any) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    task = t.add(2, 3)
    q.push(task, user_id="a")
    run_burst(config)
    assert q.get_result(task.task_id, user_id="a")["return_value"] == 5  # type: ignore[index]
    assert q.get_result(task.task_id, user_id="b") is None


def test_non_json_result_is_a_failure(make_config: Any) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    q.push(Task.create(user_id="a", func_name="tests.testapp.tasks.returns_object",
                       metadata={"store_result": True}, max_retries=0))
    run_burst(config)
    (entry,) = q.get_dlq()
    assert "JSON" in entry.error


def test_idle_worker_wakes_on_push(make_config: Any, redis_client: redis.Redis) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "poll_interval_seconds": 30,
                                   "max_concurrent_tasks": 2}], worker_id="w1")
    worker = Worker(config, install_signal_handlers=False)
    th = threading.Thread(target=worker.start)
    th.start()
    try:
        # both slots wait for work (parked: see docs/operations.md)
        eventually(lambda: sum(redis_client.zcard(k) for k in redis_client.keys("*:parked:*")) == 2,
                   what="both slots parked")
        q = TaskQueue(config)
        start = time.monotonic()
        q.push(t.record("wake"), user_id="a")
        eventually(lambda: redis_client.llen(LOG), timeout=10, interval=0.005, what="the pushed task ran")
        assert redis_client.llen(LOG) == 1
        assert time.monotonic() - start < 5  # far below the 30 s poll interval: woken by the push
    finally:
        worker.stop()
        th.join(10)


def stop_once_a_task_started(worker: Worker, redis_client: redis.Redis) -> None:
    """Start ``worker``, stop it gracefully as soon as a task has started, wait until it returned."""
    th = threading.Thread(target=worker.start)
    th.start()
    eventually(lambda: redis_client.llen(LOG + ":start"), interval=0.01, what="the task started")
    worker.stop()
    th.join(10)


def test_graceful_stop_finishes_running_task(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    q.push(t.record("slow", 0.5), user_id="a")
    stop_once_a_task_started(Worker(config, install_signal_handlers=False), redis_client)
    assert log(redis_client) == ["a|slow"]
    stats = q.get_stats()
    assert stats["tasks_completed"] == 1 and stats["tasks_failed"] == 0


def test_graceful_stop_hands_back_what_does_not_finish(make_config: Any, redis_client: redis.Redis) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "graceful_shutdown_timeout": 0.2}],
                         worker_id="w1")
    q = TaskQueue(config)
    task = t.record("slower", 2)
    q.push(task, user_id="a")
    stop_once_a_task_started(Worker(config, install_signal_handlers=False), redis_client)
    stats = q.get_stats()
    assert stats["tasks_failed"] == 0 and stats["tasks_released"] == 1
    assert q.get_task_state(task.task_id)["st"] == "queued"  # type: ignore[index]
    again = q.pop()
    assert again is not None and again.task_id == task.task_id and again.retry_count == 0
    # the abandoned first run still finishes in its thread; its late ack must change nothing
    eventually(lambda: q.get_stats()["tasks_late_acks"] == 1, what="the abandoned run's late ack")
    assert log(redis_client) == ["a|slower"]
    assert q.get_task_state(task.task_id)["st"] == "leased"  # type: ignore[index]  # still ours (again)
    assert q.get_stats()["tasks_completed"] == 0


def test_health_record(make_config: Any) -> None:
    config = cfg(make_config)
    worker = Worker(config, install_signal_handlers=False)
    th = threading.Thread(target=worker.start)
    th.start()
    try:
        q = TaskQueue(config)
        record = eventually(lambda: worker_health(q, "w1"), timeout=5, what="a health record")
        assert record["id"] == "w1" and record["kind"] == "threads" and record["assigned"] == ["a", "b", "c"]
        assert record["heartbeat_age"] < 5
    finally:
        worker.stop()
        th.join(10)
    assert worker_health(q, "w1") is None  # a stopped worker removes its record


def test_max_tasks(make_config: Any) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    for i in range(5):
        q.push(t.record(str(i)), user_id="a")
    worker = Worker(config, max_tasks=2, install_signal_handlers=False)
    th = threading.Thread(target=worker.start)
    th.start()
    th.join(10)
    assert not th.is_alive() and worker.processed == 2
    assert q.get_stats()["tasks_queued"] == 3


def test_prefetching_worker_serves_in_order_and_hands_back_what_it_held(make_config: Any,
                                                                        redis_client: redis.Redis) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a", "b"], "max_concurrent_tasks": 1,
                                   "poll_interval_seconds": 0.2, "graceful_shutdown_timeout": 5}], worker_id="w1")
    q = TaskQueue(config)
    for i in range(3):
        q.push(t.record(f"a{i}"), user_id="a")
        q.push(t.record(f"b{i}"), user_id="b")
    q.push(t.record("slow", 0.5), user_id="a")
    q.push(t.record("after-slow"), user_id="a")
    worker = Worker(config, install_signal_handlers=False, prefetch=True, prefetch_hold_seconds=5)
    th = threading.Thread(target=worker.start)
    th.start()
    eventually(lambda: b"a|slow" in redis_client.lrange(LOG + ":start", 0, -1), timeout=10, interval=0.01,
               what='"slow" started')
    worker.stop()  # while "slow" runs and "after-slow" is prefetched
    th.join(15)
    assert not th.is_alive()
    assert log(redis_client) == ["a|a0", "b|b0", "a|a1", "b|b1", "a|a2", "b|b2", "a|slow"]
    stats = q.get_stats()
    assert stats["tasks_completed"] == 7 and stats["tasks_failed"] == 0 and stats["tasks_active"] == 0
    assert stats["tasks_released"] == 1 and stats["tasks_queued"] == 1  # the prefetched one went back


def serve_until(worker: Worker, done: Any, what: str) -> None:
    """Run ``worker`` in a thread until ``done()`` is true, then stop it."""
    th = threading.Thread(target=worker.start)
    th.start()
    try:
        eventually(done, what=what)
    finally:
        worker.stop()
        th.join(10)


def warm_slow_quick(q: TaskQueue, slow: float) -> None:
    """Tenant a's queue: six short tasks (a slot learns to prefetch), one of ``slow`` seconds, one short."""
    for i in range(6):
        q.push(t.record(f"warm{i}"), user_id="a")
    q.push(t.record("slow", slow), user_id="a")
    q.push(t.record("quick"), user_id="a")


def test_a_prefetched_task_does_not_wait_behind_a_long_one(make_config: Any, redis_client: redis.Redis) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "max_concurrent_tasks": 2,
                                   "poll_interval_seconds": 5}], worker_id="w1")
    q = TaskQueue(config)
    warm_slow_quick(q, 1.0)  # short tasks first: both slots learn to prefetch
    worker = Worker(config, install_signal_handlers=False)  # prefetch on, 50 ms hold
    th = threading.Thread(target=worker.start)
    th.start()
    try:
        eventually(lambda: len(log(redis_client)) >= 8, timeout=10, interval=0.01, what="all eight ran")
    finally:
        worker.stop()
        th.join(15)
    # whichever slot leased "quick" (prefetched, or the rest of its batch) while running "slow" handed
    # it back: the other slot ran it meanwhile
    ran = log(redis_client)
    assert ran[-1] == "a|slow" and sorted(ran) == sorted([*(f"a|warm{i}" for i in range(6)), "a|slow", "a|quick"])
    stats = q.get_stats()
    assert stats["tasks_completed"] == 8 and stats["tasks_released"] == 0 and stats["tasks_active"] == 0


def second_when_slow_runs(first: Worker, second: Worker, redis_client: redis.Redis, tasks: int) -> None:
    """Run ``first``; once its task "slow" started (it ran all before), ``second`` too, until
    ``tasks`` tasks ran; then stop both."""
    threads = [threading.Thread(target=first.start)]
    threads[0].start()
    try:
        eventually(lambda: b"a|slow" in redis_client.lrange(LOG + ":start", 0, -1), timeout=10, interval=0.01,
                   what='"slow" started')
        threads.append(threading.Thread(target=second.start))
        threads[1].start()
        eventually(lambda: len(log(redis_client)) == tasks, timeout=10, interval=0.01, what=f"all {tasks} ran")
    finally:
        first.stop()
        second.stop()
        for th in threads:
            th.join(15)


def test_a_prefetched_task_handed_back_is_taken_by_another_worker(make_config: Any,
                                                                  redis_client: redis.Redis) -> None:
    """The watchdog reads the reply of a prefetch whose slot still runs after the hold time and
    hands its task back: another worker process (here: a second Worker) runs it meanwhile."""
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "max_concurrent_tasks": 1,
                                   "poll_interval_seconds": 0.2}], worker_id="w1")
    q = TaskQueue(config)
    warm_slow_quick(q, 1.5)  # short tasks first: the slot learns to prefetch
    first = Worker(config, install_signal_handlers=False)  # prefetch on, 50 ms hold
    second = Worker(config, install_signal_handlers=False)
    second_when_slow_runs(first, second, redis_client, 8)
    assert log(redis_client)[-2:] == ["a|quick", "a|slow"]  # "quick" did not wait behind "slow"
    assert (first.processed, second.processed) == (7, 1)
    stats = q.get_stats()
    # "quick" was leased twice: by the first worker's prefetch, then by the second worker
    assert stats["tasks_popped"] == 9 and stats["tasks_released"] == 0  # handed back quietly
    assert stats["tasks_completed"] == 8 and stats["tasks_active"] == 0 and stats["tasks_expired"] == 0


def test_a_prefetch_refused_for_lack_of_its_script_loads_it_and_runs(make_config: Any,
                                                                     redis_client: redis.Redis) -> None:
    """SCRIPT FLUSH (a Redis restart or failover) while a task runs: the prefetch the slot sends
    next is answered NOSCRIPT, loaded and run again; nothing is lost or run twice."""
    config = cfg(make_config, lease_timeout_seconds=5)
    tags = [f"x{i}" for i in range(12)]
    q = TaskQueue(config)
    for tag in tags:
        q.push(t.record(tag), user_id="a")
    calls = 0

    def flush_scripts() -> None:  # around each task: before and after it
        nonlocal calls
        calls += 1
        if calls in (9, 13):  # in tasks 5 and 7: slots prefetch by then
            redis_client.script_flush()

    # one task a prefetch: each of those tasks runs with a prefetch of its own under way
    worker = Worker(config, worker_id="w1", around_task=flush_scripts, install_signal_handlers=False,
                    prefetch_batch_seconds=0)
    refused: list[int] = []
    checked = worker.queue.transport.checked

    def spy(calls: Any, replies: list[Any]) -> list[Any]:
        refused.append(sum(isinstance(r, redis.exceptions.NoScriptError) for r in replies))
        return checked(calls, replies)

    worker.queue.transport.checked = spy  # type: ignore[method-assign]
    serve_until(worker, lambda: q.get_stats()["tasks_completed"] == len(tags), "all acknowledged")
    assert refused.count(1) >= 2  # two acks + pops were refused (ack_pop.lua, one script call each: the prefetches)
    assert log(redis_client) == [f"a|{tag}" for tag in tags]
    stats = q.get_stats()
    assert stats["tasks_completed"] == len(tags) and stats["tasks_expired"] == 0 and stats["tasks_active"] == 0


def push_in_turn(q: TaskQueue, rounds: int) -> None:
    """``rounds`` tiny tasks for each of the users a, b, c, pushed in turn."""
    for i in range(rounds):
        for u in "abc":
            q.push(t.record(f"{u}{i}"), user_id=u)


def lease_counts(worker: Worker, method: str) -> list[int]:
    """The ``count`` of every call the worker's queue gets to ``method`` from now on."""
    counts: list[int] = []
    real = getattr(worker.queue, method)

    def spy(done: Any, count: int, **kw: Any) -> Any:
        counts.append(count)
        return real(done, count, **kw)

    setattr(worker.queue, method, spy)
    return counts


def test_a_prefetching_slot_leases_tiny_tasks_a_few_at_a_time_in_fair_order(make_config: Any,
                                                                            redis_client: redis.Redis) -> None:
    """The default mode: a slot whose tasks take well under ``prefetch_batch_seconds`` prefetches
    several at once (each chosen as a single pop would: round-robin holds), the next batch sent
    before the last task of the one it runs."""
    config = cfg(make_config)
    q = TaskQueue(config)
    push_in_turn(q, 40)
    worker = Worker(config, worker_id="w1", concurrency=1, install_signal_handlers=False,
                    prefetch_batch_seconds=0.05)  # (wide: a loaded host's tiny tasks still batch)
    assert worker.prefetch
    counts = lease_counts(worker, "send_complete_and_pop")
    serve_until(worker, lambda: q.get_stats()["tasks_completed"] == 120, "all acknowledged")
    assert log(redis_client) == [f"{u}|{u}{i}" for i in range(40) for u in "abc"]  # once each, in turn
    assert max(counts) > 1 and len(counts) < 60  # several tasks per prefetch
    stats = q.get_stats()
    assert stats["tasks_popped"] == 120 and stats["tasks_active"] == 0 and stats["tasks_released"] == 0


def test_the_rest_of_a_prefetched_batch_does_not_wait_behind_a_long_task(
        make_config: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """One slot leases a batch in which a task runs long: the watchdog hands the rest back after
    the hold time, and a second worker runs it meanwhile."""
    handed: list[int] = []
    real = Slot._return_ahead

    def spy(slot: Slot, tasks: list[Any]) -> None:
        handed.append(len(tasks))
        real(slot, tasks)

    monkeypatch.setattr(Slot, "_return_ahead", spy)
    config = make_config(workers=[{"id": "w1", "assigned_users": ["a"], "max_concurrent_tasks": 1,
                                   "poll_interval_seconds": 0.2}], worker_id="w1")
    q = TaskQueue(config)
    for i in range(6):
        q.push(t.record(f"warm{i}"), user_id="a")
    q.push(t.record("slow", 1.5), user_id="a")
    for i in range(3):
        q.push(t.record(f"after{i}"), user_id="a")
    # batches of (about) 16: "slow" is not the last of its batch
    first = Worker(config, install_signal_handlers=False, prefetch_batch_seconds=0.5)
    second = Worker(config, install_signal_handlers=False)
    second_when_slow_runs(first, second, redis_client, 10)
    ran = log(redis_client)
    assert ran[-1] == "a|slow" and ran[-4:-1] == ["a|after0", "a|after1", "a|after2"]  # not behind "slow"
    assert second.processed == 3 and handed == [3]  # the rest of the batch, by the watchdog
    stats = q.get_stats()
    assert stats["tasks_completed"] == 10 and stats["tasks_active"] == 0 and stats["tasks_expired"] == 0
    assert stats["tasks_released"] == 0  # handed back quietly


def test_burst_slots_lease_short_tasks_in_batches(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    push_in_turn(q, 70)
    worker = Worker(config, worker_id="w1", burst=True, concurrency=2, install_signal_handlers=False)
    counts = lease_counts(worker, "complete_and_pop_many")
    run_to_end(worker)
    done = log(redis_client)
    assert sorted(done) == sorted(f"{u}|{u}{i}" for i in range(70) for u in "abc")  # each exactly once
    assert worker.processed == 210
    stats = q.get_stats()
    assert stats["tasks_completed"] == 210 and stats["tasks_active"] == 0
    # (a task slowed past the hold time by a loaded machine hands the rest of its batch back
    # uncounted: those are popped again)
    assert stats["tasks_popped"] >= 210
    assert max(counts) > 1 and len(counts) < 105  # several tasks per round trip


def test_a_long_task_hands_the_rest_of_its_batch_back(make_config: Any, redis_client: redis.Redis) -> None:
    config = cfg(make_config)
    q = TaskQueue(config)
    tags = [f"q{i}" for i in range(10)] + ["slow"] + [f"r{i}" for i in range(5)]
    for tag in tags:
        q.push(t.record(tag, sleep=0.2 if tag == "slow" else 0.0), user_id="a")
    worker = Worker(config, worker_id="w1", burst=True, install_signal_handlers=False)
    released: list[tuple[list[str], bool]] = []
    real = worker.queue.release

    def spy(tasks: Any, *, count: bool = True) -> int:
        released.append(([x.args[0] for x in tasks], count))
        return real(tasks, count=count)

    worker.queue.release = spy  # type: ignore[method-assign]
    run_to_end(worker)
    assert log(redis_client) == [f"a|{tag}" for tag in tags]  # FIFO, each once
    # quietly, for anyone to take (a loaded host may slow a "q" task past the hold time too: that one
    # hands the rest of its batch back as well, and the batch popped again hands the r's back)
    assert ([f"r{i}" for i in range(5)], False) in released and all(not counted for _, counted in released)
    stats = q.get_stats()
    assert stats["tasks_completed"] == 16 and stats["tasks_released"] == 0 and stats["tasks_active"] == 0


class AcksFailOnce(TaskQueue):
    """A TaskQueue whose second acknowledging round trip finds Redis unreachable (nothing is sent),
    be it a plain one or one a prefetching slot sends before its task runs."""

    acks = 0

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.failures: list[str] = []

    def _fails(self, done: Any, how: str) -> None:
        if done:
            self.acks += 1
            if self.acks == 2:
                self.failures.append(how)
                raise RedisUnavailableError("injected: connection refused")

    def complete_and_pop_many(self, done: Any, count: int, **kw: Any) -> Any:
        self._fails(done, "round trip")
        return super().complete_and_pop_many(done, count, **kw)

    def send_complete_and_pop(self, done: Any, count: int, **kw: Any) -> Any:
        self._fails(done, "prefetch")
        return super().send_complete_and_pop(done, count, **kw)


@pytest.mark.parametrize("burst", [False, True], ids=["prefetching", "batching"])
def test_a_failed_ack_is_sent_again_not_dropped(make_config: Any, redis_client: redis.Redis, burst: bool) -> None:
    config = cfg(make_config, lease_timeout_seconds=2)
    tags = [f"x{i}" for i in range(12)]
    q = TaskQueue(config)
    for tag in tags:
        q.push(t.record(tag), user_id="a")
    queue = AcksFailOnce(config, worker_id="w1")
    worker = Worker(config, worker_id="w1", queue=queue, burst=burst, install_signal_handlers=False)
    if burst:
        run_to_end(worker)
    else:
        serve_until(worker, lambda: q.get_stats()["tasks_completed"] == len(tags), "all acknowledged")
    # a prefetching slot sends its second ack with a prefetch, before its task runs
    assert queue.failures == ["round trip" if burst else "prefetch"]
    assert log(redis_client) == [f"a|{tag}" for tag in tags]  # each ran once: no lease had to expire
    assert worker.processed == len(tags)
    stats = q.get_stats()
    assert stats["tasks_completed"] == len(tags) and stats["tasks_expired"] == 0 and stats["tasks_active"] == 0


def test_a_pool_too_small_for_a_connection_per_slot_turns_prefetch_off(
        make_config: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """Each prefetching slot keeps a connection: with ``redis.max_connections`` below concurrency + 4
    the worker does not prefetch (it says so) and still serves every task."""
    from fairque_django.core.config import FairQueueConfig
    from fairque_django.core.connection import get_client
    base = make_config(workers=[{"id": "w1", "assigned_users": ["*"]}])
    roomy = Worker(base, worker_id="w1", concurrency=4, install_signal_handlers=False)
    assert roomy.prefetch is True  # no bound
    data = base.to_dict()
    data["redis"] = {**data["redis"], "max_connections": 6}
    tight_config = FairQueueConfig.from_dict(data, worker_id="w1")
    tight_queue = TaskQueue(tight_config, client=get_client(tight_config.redis))
    with caplog.at_level("WARNING", logger="fairque_django.worker"):
        tight = Worker(tight_config, worker_id="w1", queue=tight_queue, concurrency=4, install_signal_handlers=False)
    assert tight.prefetch is False and "prefetch is off" in caplog.text
    tight_queue.push_batch([t.add.create_task((i, 1), user_id=f"u{i % 3}") for i in range(30)])
    run_until(tight, lambda: tight_queue.get_stats()["tasks_completed"] == 30, "all served", timeout=20)
