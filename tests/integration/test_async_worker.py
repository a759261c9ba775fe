"""AsyncWorker against a real Redis: async tasks run concurrently on one loop, sync ones in threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from fairque_django import AsyncTaskQueue, RedisUnavailableError, Task, TaskHandler, TaskQueue
from fairque_django.core.worker import AsyncWorker, worker_health
from tests.support import eventually
from tests.testapp import tasks as t


def config(make_config: Any, concurrency: int = 10) -> Any:
    return make_config(workers=[{"id": "w1", "assigned_users": ["a", "b"], "max_concurrent_tasks": concurrency,
                                 "poll_interval_seconds": 0.2}], worker_id="w1", retry_backoff_base_seconds=0.05)


def log(r: redis.Redis) -> list[str]:
    return [x.decode() for x in r.lrange(t.LOG, 0, -1)]


def test_async_tasks_run_concurrently(make_config: Any, redis_client: redis.Redis) -> None:
    cfg = config(make_config)
    q = TaskQueue(cfg)
    for i in range(8):
        q.push(t.async_record(f"x{i}", 0.5), user_id="a" if i % 2 else "b")
    start = time.monotonic()
    AsyncWorker(cfg, burst=True, install_signal_handlers=False).start()
    elapsed = time.monotonic() - start
    assert sorted(log(redis_client)) == sorted(f"{'a' if i % 2 else 'b'}|x{i}" for i in range(8))
    assert elapsed < 8 * 0.5  # overlapped on one loop, not one after another
    assert q.get_stats()["tasks_completed"] == 8


def test_sync_tasks_retries_and_dlq(make_config: Any, redis_client: redis.Redis) -> None:
    cfg = config(make_config, concurrency=1)
    q = TaskQueue(cfg)
    q.push(t.record("s1"), user_id="a")
    q.push(t.flaky("async", 1), user_id="b")
    q.push(t.always_fails("async"), user_id="a")
    q.push(t.produce(3), user_id="b")
    worker = AsyncWorker(cfg, burst=True, install_signal_handlers=False)
    worker.start()
    assert "a|s1" in log(redis_client) and "b|flaky-ok-2" in log(redis_client)
    (entry,) = q.get_dlq()
    assert entry.error_type == "ValueError" and "Traceback" in entry.traceback
    from fairque_django import xcom_pull

    with TaskQueue(cfg):
        assert xcom_pull("auto_key", user_id="b") == {"n": 3}
        assert xcom_pull("auto_key", user_id="a") is None


def test_interop_async_push_sync_worker_queue(make_config: Any) -> None:
    import asyncio

    cfg = config(make_config)

    async def push() -> None:
        async with AsyncTaskQueue(cfg) as aq:
            await aq.push(t.add(1, 2), user_id="a")

    asyncio.run(push())
    AsyncWorker(cfg, burst=True, install_signal_handlers=False).start()
    q = TaskQueue(cfg)
    assert q.get_stats()["tasks_completed"] == 1


# --- registration, heartbeat, and slots that survive what goes wrong --------------------------

def run_burst(worker: AsyncWorker, timeout: float = 30) -> AsyncWorker:
    """Run a burst AsyncWorker in a thread; fail (instead of hanging) if it does not end."""
    th = threading.Thread(target=worker.start, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), "burst worker did not finish"
    return worker


def test_registers_and_heartbeats_like_the_thread_worker(make_config: Any) -> None:
    cfg = make_config(workers=[{"id": "w1", "assigned_users": ["a", "b"], "max_concurrent_tasks": 3,
                                "poll_interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2}],
                      worker_id="w1")
    q = TaskQueue(cfg)
    worker = AsyncWorker(cfg, install_signal_handlers=False)
    th = threading.Thread(target=worker.start, daemon=True)
    th.start()
    try:
        first = eventually(lambda: worker_health(q, "w1"), what="a health record")
        assert first["id"] == "w1" and first["kind"] == "async" and first["assigned"] == ["a", "b"]
        assert first["concurrency"] == 3 and first["heartbeat_age"] < 5 and first["current"] == []
        assert q.client.zscore(q.keys.workers, "w1") is not None  # registered: the health views see it
        q.push(t.record("x"), user_id="a")
        # it keeps beating: a later record counts the task it ran
        eventually(lambda: (worker_health(q, "w1") or {}).get("processed") == 1, what="a later heartbeat")
        later = worker_health(q, "w1")
        assert later is not None and later["last_seen"] > first["last_seen"]
    finally:
        worker.stop()
        th.join(15)
    assert not th.is_alive()
    assert worker_health(q, "w1") is None  # a stopped worker removes its record ...
    assert q.client.hget(q.keys.workers_stopped, "w1") is not None  # ... and reads "down", not "never seen"


def test_a_failing_hook_does_not_end_a_slot(make_config: Any, redis_client: redis.Redis) -> None:
    calls: list[str] = []

    class Handler(TaskHandler):
        def on_task_success(self, task: Task, duration: float) -> None:
            calls.append("ok")
            raise RuntimeError("hook bug")

        def on_task_failure(self, task: Task, error: BaseException, duration: float) -> None:
            calls.append("fail")
            raise RuntimeError("hook bug")

    cfg = config(make_config, concurrency=1)
    q = TaskQueue(cfg)
    q.push(t.fails_once_for_good("x"), user_id="a")
    for i in range(3):
        q.push(t.async_record(f"r{i}"), user_id="a")
        q.push(t.record(f"s{i}"), user_id="b")
    worker = run_burst(AsyncWorker(cfg, Handler(), burst=True, install_signal_handlers=False))
    assert sorted(log(redis_client)) == sorted([f"a|r{i}" for i in range(3)] + [f"b|s{i}" for i in range(3)])
    assert calls.count("ok") == 6 and calls.count("fail") == 1
    assert worker.processed == 6 and worker.failed == 1
    assert q.get_stats()["tasks_completed"] == 6 and len(q.get_dlq()) == 1


class PopFailsOnce(AsyncTaskQueue):
    """An AsyncTaskQueue whose first pop raises an error nobody expects."""

    failures = 0

    async def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                        ) -> tuple[Task | None, float | None]:
        if not self.failures:
            self.failures += 1
            raise RuntimeError("unexpected")
        return await super().pop_reply(worker_id, lease_seconds=lease_seconds)


def test_an_unexpected_error_does_not_end_a_slot(make_config: Any, redis_client: redis.Redis) -> None:
    cfg = config(make_config, concurrency=1)
    q = TaskQueue(cfg)
    for i in range(3):
        q.push(t.record(f"x{i}"), user_id="a")
    queue = PopFailsOnce(cfg, worker_id="w1")
    worker = run_burst(AsyncWorker(cfg, queue=queue, burst=True, install_signal_handlers=False))
    assert queue.failures == 1
    assert log(redis_client) == ["a|x0", "a|x1", "a|x2"] and worker.processed == 3


class AckFailsOnce(AsyncTaskQueue):
    """An AsyncTaskQueue whose first acknowledgement finds Redis unreachable (nothing is sent)."""

    failures = 0

    async def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        if not self.failures:
            self.failures += 1
            raise RedisUnavailableError("injected: connection refused")
        return await super().complete_code(task, duration=duration)


def test_a_failed_ack_is_sent_again(make_config: Any, redis_client: redis.Redis) -> None:
    cfg = config(make_config, concurrency=1)
    q = TaskQueue(cfg)
    for i in range(3):
        q.push(t.record(f"x{i}"), user_id="a")
    queue = AckFailsOnce(cfg, worker_id="w1")
    worker = run_burst(AsyncWorker(cfg, queue=queue, burst=True, install_signal_handlers=False))
    assert queue.failures == 1
    assert log(redis_client) == ["a|x0", "a|x1", "a|x2"]  # each ran once: no lease had to expire
    assert worker.processed == 3
    stats = q.get_stats()
    assert stats["tasks_completed"] == 3 and stats["tasks_expired"] == 0 and stats["tasks_active"] == 0


def test_a_sync_task_that_times_out_is_stopped_and_recorded(make_config: Any, redis_client: redis.Redis) -> None:
    seen: list[str] = []

    class Handler(TaskHandler):
        def on_task_timeout(self, task: Task, duration: float) -> None:
            seen.append(task.task_id)

    cfg = config(make_config, concurrency=2)
    q = TaskQueue(cfg)
    task = t.spins(5)  # timeout 0.3 s
    q.push(task, user_id="a")
    start = time.monotonic()
    run_burst(AsyncWorker(cfg, Handler(), burst=True, install_signal_handlers=False))
    assert time.monotonic() - start < 4
    (entry,) = q.get_dlq()
    assert entry.failure_type == "timeout" and entry.error_type == "TaskTimeoutError"
    assert seen == [task.task_id]
