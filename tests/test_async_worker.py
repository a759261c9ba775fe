"""AsyncWorker against a real Redis: async tasks run concurrently on one loop, sync ones in threads."""

from __future__ import annotations

import time
from typing import Any

import redis

from fairque_django import AsyncTaskQueue, TaskQueue
from fairque_django.core.worker import AsyncWorker
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
