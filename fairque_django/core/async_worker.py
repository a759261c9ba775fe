"""``AsyncWorker``: one event loop runs ``async def`` tasks concurrently; sync tasks run in threads.

Same contract as :class:`~fairque_django.core.worker.Worker` (fair pop, leases with heartbeats,
retries, DLQ, timeouts, graceful stop on SIGTERM/SIGINT), on :class:`AsyncTaskQueue`.
XCom calls inside tasks use a synchronous :class:`TaskQueue` on the same Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
import traceback
from collections.abc import Iterable
from typing import Any

from .aio import AsyncTaskQueue
from .config import FairQueueConfig
from .context import task_running
from .exceptions import FairQueueError, LeaseLostError, RedisUnavailableError, TaskNotRegisteredError
from .handler import TaskHandler, TaskTimeoutError
from .models import Task
from .queue import TaskQueue
from .registry import get_task_function, import_task_modules
from .results import failure_record, success_record
from .worker import BURST_DELAY_HORIZON, PERMANENT_ERRORS

logger = logging.getLogger("fairque_django.worker")


class AsyncWorker:
    """Serves one worker id with up to ``max_concurrent_tasks`` concurrent tasks on one loop."""

    def __init__(self, config: FairQueueConfig, handler: TaskHandler | None = None, *,
                 worker_id: str | None = None, queue: AsyncTaskQueue | None = None,
                 concurrency: int | None = None, burst: bool = False, max_tasks: int | None = None,
                 task_modules: Iterable[str] = (), install_signal_handlers: bool = True) -> None:
        self.config = config
        self.settings = config.get_worker(worker_id)
        self.worker_id = self.settings.id
        self.handler = handler if handler is not None else TaskHandler()
        self._queue = queue
        self.sync_queue = TaskQueue(config, worker_id=self.worker_id)
        self.concurrency = concurrency or self.settings.max_concurrent_tasks
        self.burst = burst
        self.max_tasks = max_tasks
        self.task_modules = tuple(task_modules)
        self.install_signal_handlers = install_signal_handlers
        self.processed = 0
        self.failed = 0
        self._taken = 0
        self._inflight = 0
        self._running: dict[str, Task] = {}
        self._stop: asyncio.Event | None = None

    @property
    def queue(self) -> AsyncTaskQueue:
        if self._queue is None:
            self._queue = AsyncTaskQueue(self.config, worker_id=self.worker_id)
        return self._queue

    def start(self) -> int:
        """Run until stopped (blocking): ``asyncio.run(worker.run())``."""
        return asyncio.run(self.run())

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> int:
        import_task_modules(self.task_modules)
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal)
        slots = [asyncio.create_task(self._slot(), name=f"{self.worker_id}-slot-{i}")
                 for i in range(self.concurrency)]
        beat = asyncio.create_task(self._heartbeat())
        await self._stop.wait()
        _, pending = await asyncio.wait(slots, timeout=self.settings.graceful_shutdown_timeout)
        unfinished = list(self._running.values())
        for slot in pending:
            slot.cancel()
        if unfinished:
            with contextlib.suppress(FairQueueError):
                handed = await self.queue.release(unfinished)
                logger.warning("worker %s: handed %d unfinished task(s) back", self.worker_id, handed)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with contextlib.suppress(FairQueueError):
            await self.queue.client.delete(self.queue.keys.worker(self.worker_id))
            # a clean stop reads "down" (not "never seen"): the id stays in {prefix}:workers
            now = time.time()
            await self.queue.client.zadd(self.queue.keys.workers, {self.worker_id: now})
            await self.queue.client.hset(self.queue.keys.workers_stopped, self.worker_id, repr(now))
        await self.queue.aclose()
        logger.info("worker %s stopped: %d processed, %d failed", self.worker_id, self.processed, self.failed)
        return 0

    _signals = 0

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            import os

            os._exit(1)
        self.stop()

    async def _slot(self) -> None:
        assert self._stop is not None
        backoff = 0.1
        while not self._stop.is_set():
            if self.max_tasks is not None and self._taken >= self.max_tasks:
                break
            self._taken += 1
            self._inflight += 1
            task: Task | None = None
            due: float | None = None
            try:
                task, due = await self.queue.pop_reply(self.worker_id)
                backoff = 0.1
                if task is not None:
                    await self._execute(task)
            except RedisUnavailableError as exc:
                logger.warning("worker %s: Redis unreachable (%s); retrying in %.1fs", self.worker_id,
                               exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._inflight -= 1
                if task is None:
                    self._taken -= 1
            if task is None:
                if self.burst and not self._inflight:
                    upcoming = await self.queue.next_delayed_seconds()
                    if upcoming is None or upcoming > BURST_DELAY_HORIZON:
                        self._stop.set()
                        break
                timeout = self.settings.poll_interval_seconds if due is None else min(
                    self.settings.poll_interval_seconds, max(due, 0.001))
                with contextlib.suppress(RedisUnavailableError):
                    await self.queue.wait_for_work(self.worker_id, min(timeout, 4.0))
        if self.max_tasks is not None and self._taken >= self.max_tasks and not self._inflight:
            self._stop.set()

    async def _execute(self, task: Task) -> None:
        self._running[task.task_id] = task
        timeout = task.timeout if task.timeout is not None else self.settings.task_timeout_seconds
        start = time.monotonic()
        try:
            result = await asyncio.wait_for(self._run(task), timeout) if timeout else await self._run(task)
        except (asyncio.TimeoutError, TaskTimeoutError):
            duration = time.monotonic() - start
            await self._record_failure(task, TaskTimeoutError(f"task exceeded its timeout of {timeout:g}s"),
                                       "", "timeout", duration)
            self.handler.on_task_timeout(task, duration)
            return
        except Exception as exc:  # a task may raise anything; it is recorded
            ftype = "unregistered" if isinstance(exc, TaskNotRegisteredError) else "error"
            await self._record_failure(task, exc, traceback.format_exc(), ftype, time.monotonic() - start)
            return
        finally:
            self._running.pop(task.task_id, None)
        duration = time.monotonic() - start
        try:
            record = success_record(task, result, self.config.queue.store_results)
            if record is not None:
                await self.queue.store_result_json(task, record)
            await self.queue.complete(task, duration=duration)
        except LeaseLostError:
            logger.warning("worker %s: task %s finished after its lease was lost", self.worker_id, task.task_id)
            return
        except FairQueueError as exc:
            await self._record_failure(task, exc, traceback.format_exc(), "result", duration)
            return
        self.processed += 1
        logger.info("worker %s: %s %s for %s done in %.3fs", self.worker_id, task.func_name or "payload task",
                    task.task_id, task.user_id, duration)
        self.handler.on_task_success(task, duration)

    async def _run(self, task: Task) -> Any:
        fn = get_task_function(task.func_name) if task.func_name else None
        if fn is not None and inspect.iscoroutinefunction(fn.func):
            with task_running(task, self.sync_queue):
                result = await fn.func(*task.args, **task.kwargs)
                if fn.xcom_key is not None:
                    from .xcom import xcom_push

                    await asyncio.to_thread(xcom_push, fn.xcom_key, result)
                return result

        def run_sync() -> Any:
            self.handler.before_task(task)
            try:
                with task_running(task, self.sync_queue) as running:
                    if self.handler.process_task(task) is False:
                        raise FairQueueError(f"handler {type(self.handler).__name__} returned False")
                    return running.result
            finally:
                self.handler.after_task(task)

        return await asyncio.to_thread(run_sync)

    async def _record_failure(self, task: Task, error: BaseException, tb: str, ftype: str,
                              duration: float) -> None:
        self.failed += 1
        try:
            outcome = await self.queue.fail(task, error, traceback=tb, failure_type=ftype,
                                            retry=not isinstance(error, PERMANENT_ERRORS))
        except FairQueueError as exc:
            logger.error("worker %s: could not record failure of %s (%s)", self.worker_id, task.task_id, exc)
            return
        record = failure_record(task, error, tb, self.config.queue.store_results) if outcome == "dead" else None
        if record is not None:
            with contextlib.suppress(FairQueueError):
                await self.queue.store_result(task, record)
        logger.warning("worker %s: %s %s for %s failed after %.3fs (%s: %s); %s", self.worker_id,
                       task.func_name or "payload task", task.task_id, task.user_id, duration,
                       type(error).__name__, error, outcome)
        self.handler.on_task_failure(task, error, duration)

    async def _heartbeat(self) -> None:
        interval = min(self.settings.heartbeat_interval_seconds, self.config.queue.lease_timeout_seconds / 3)
        while True:
            try:
                tasks = list(self._running.values())
                if tasks:
                    await self.queue.extend(tasks)
                await self.queue.client.hset(self.queue.keys.worker(self.worker_id), mapping={
                    "id": self.worker_id, "last_seen": time.time(), "processed": self.processed,
                    "failed": self.failed, "concurrency": self.concurrency, "kind": "async"})
                await self.queue.client.pexpire(self.queue.keys.worker(self.worker_id),
                                                int(max(3 * interval, self.config.queue.lease_timeout_seconds) * 1000))
                await self.queue.client.zadd(self.queue.keys.workers, {self.worker_id: time.time()})
            except FairQueueError as exc:
                logger.warning("worker %s: heartbeat failed (%s)", self.worker_id, exc)
            except Exception as exc:  # redis errors outside redis_errors()
                logger.warning("worker %s: heartbeat failed (%s)", self.worker_id, exc)
            await asyncio.sleep(interval)
