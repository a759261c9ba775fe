"""``AsyncWorker``: one event loop runs ``async def`` tasks concurrently; sync tasks run in threads.

Same contract as :class:`~fairque_django.core.worker.Worker` (fair pop, leases with heartbeats,
retries, DLQ, timeouts, graceful stop on SIGTERM/SIGINT, the same health record), on
:class:`AsyncTaskQueue` for its pops and acknowledgements (:class:`AsyncShardedTaskQueue` on a sharded
prefix: :func:`open_async_queue`). It shares the thread worker's :class:`~.runner.TaskRunner` (a sync
task runs exactly as in a thread worker, in a thread of the loop's pool; failures are recorded from a
thread too) and :class:`~.heartbeat.Heartbeat`. XCom calls inside tasks use a synchronous queue on the
same Redis (:func:`open_queue`); it shares the asyncio queue's lease book, so that a failure or a lease
renewal goes to the shard a task was leased from.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..aio_sharded import AnyAsyncQueue, AsyncShardedTaskQueue, open_async_queue
from ..config import FairQueueConfig
from ..context import task_running
from ..errors import FairQueueError, RedisUnavailableError, TaskNotRegisteredError
from ..handler import TaskHandler
from ..models import Task
from ..registry import TaskFunction, get_task_function, import_task_modules
from ..schedule import Schedule
from ..scheduler import Scheduler
from ..sharded import open_queue
from ..xcom import xcom_push
from .heartbeat import Heartbeat
from .leases import LeaseBook
from .runner import Failure, Finished, RunnerCounts, TaskRunner
from .slot import BURST_DELAY_HORIZON, Backoff, Turns

logger = logging.getLogger("fairque_django.worker")


def _coroutine_function(task: Task) -> TaskFunction[..., Any] | None:
    """The registered ``async def`` a task names, else None (the runner runs it, or records
    that it is not registered)."""
    if task.func_name is None:
        return None
    try:
        fn = get_task_function(task.func_name)
    except TaskNotRegisteredError:
        return None
    return fn if inspect.iscoroutinefunction(fn.func) else None


@dataclass(slots=True)
class _Idle:
    """A slot's last pop: whether it found nothing, and when something is due then (seconds)."""

    idle: bool = False
    due: float | None = None


class AsyncWorker(RunnerCounts):
    """Serves one worker id with up to ``max_concurrent_tasks`` concurrent tasks on one loop."""

    def __init__(self, config: FairQueueConfig, handler: TaskHandler | None = None, *,
                 worker_id: str | None = None, queue: AnyAsyncQueue | None = None,
                 concurrency: int | None = None, burst: bool = False, max_tasks: int | None = None,
                 task_modules: Iterable[str] = (), install_signal_handlers: bool = True,
                 schedules: Iterable[Schedule] = (), to_user: Callable[[Any], str] | None = None) -> None:
        self.config = config
        self.settings = config.get_worker(worker_id)
        self.worker_id = self.settings.id
        self.handler = handler if handler is not None else TaskHandler()
        self._queue = queue
        self.sync_queue = open_queue(config, worker_id=self.worker_id)
        self.concurrency = concurrency or self.settings.max_concurrent_tasks
        self.burst = burst
        self.max_tasks = max_tasks
        self.task_modules = tuple(task_modules)
        self.install_signal_handlers = install_signal_handlers
        self.started_at = 0.0
        self._book = LeaseBook()
        self.runner = TaskRunner(config, self.worker_id, self.handler, self.sync_queue, self._book)
        self._heartbeat = Heartbeat(self, self.sync_queue, self._book, kind="async")
        # periodic schedules: a thread of its own on the synchronous queue (see Worker)
        self.scheduler = Scheduler(self.sync_queue, schedules, worker_id=self.worker_id, to_user=to_user)
        self._turns = Turns(max_tasks)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0

    @property
    def queue(self) -> AnyAsyncQueue:
        if self._queue is None:
            self._queue = open_async_queue(self.config, worker_id=self.worker_id)
        return self._queue

    def _share_leases(self) -> None:
        """The synchronous queue (failures recorded from threads, the heartbeat's renewals) finds the
        leases the asyncio queue took: a task left in a former shard is failed and renewed there."""
        shards, sync_shards = self.queue.shard_queues, self.sync_queue.shard_queues
        if len(shards) == len(sync_shards):
            for queue, sync in zip(shards, sync_shards, strict=True):
                sync._leases = queue._leases

    def _waits_and_pops(self) -> bool:
        """Whether an idle slot waits with ``wait_and_pop`` (a sharded prefix, not in burst mode: a woken
        slot that leases a task passes the wake-up on, as the thread worker's slots do), rather than
        with ``wait_for_work`` and then a pop."""
        return not self.burst and isinstance(self.queue, AsyncShardedTaskQueue)

    def start(self) -> int:
        """Run until stopped (blocking): ``asyncio.run(worker.run())``."""
        return asyncio.run(self.run())

    def stop(self) -> None:
        """Ask the worker to stop gracefully; from the loop's thread or any other."""
        loop, event = self._loop, self._stop
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            loop.call_soon_threadsafe(event.set)

    async def run(self) -> int:
        import_task_modules(self.task_modules)
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._turns = Turns(self.max_tasks)
        self._share_leases()
        self.started_at = time.time()
        if self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self._loop.add_signal_handler(sig, self._on_signal)
        self._heartbeat.start()
        self.scheduler.start()
        slots = [asyncio.create_task(self._slot(), name=f"{self.worker_id}-slot-{i}")
                 for i in range(self.concurrency)]
        await self._stop.wait()
        await asyncio.to_thread(self.scheduler.stop)
        _, pending = await asyncio.wait(slots, timeout=self.settings.graceful_shutdown_timeout)
        unfinished = self._book.take_unfinished()
        for slot in pending:
            slot.cancel()
        if unfinished:
            with contextlib.suppress(FairQueueError):
                handed = await self.queue.release(unfinished)
                logger.warning("worker %s: handed %d unfinished task(s) back", self.worker_id, handed)
        await asyncio.to_thread(self._heartbeat.stop)
        await self.queue.aclose()
        logger.info("worker %s stopped: %d processed, %d failed", self.worker_id, self.processed, self.failed)
        return 0

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(1)
        self.stop()

    # --- slots ----------------------------------------------------------------------------
    async def _slot(self) -> None:
        assert self._stop is not None
        unacked: list[Finished] = []  # succeeded; acknowledged as soon as Redis answers
        backoff = Backoff(self.worker_id)
        idle = _Idle()
        try:
            while not self._stop.is_set() and self._turns.take():
                if not await self._turn(unacked, backoff, idle):
                    break
        finally:
            with contextlib.suppress(Exception):  # leaving (maybe cancelled): a lease recovers what is not through
                await self._ack(unacked)
        if self._turns.exhausted():
            self._stop.set()

    async def _turn(self, unacked: list[Finished], backoff: Backoff, idle: _Idle) -> bool:
        """Pop a task and run it, or wait for work; False when the slot should leave. Whatever
        goes wrong is logged and waited out: a slot never dies."""
        served, due = False, None
        try:
            served, due = await self._take_and_run(unacked, idle)
            backoff.reset()
        except Exception as exc:
            await self._recover(exc, backoff, unacked)
            return True
        finally:
            self._turns.end(served)
        try:
            return served or await self._found_nothing(due)
        except Exception as exc:
            await self._recover(exc, backoff, unacked)
            return True

    async def _take_and_run(self, unacked: list[Finished], idle: _Idle) -> tuple[bool, float | None]:
        """Send the acks still due, pop a task (or, idle on a sharded prefix, wait for one) and run it:
        (a task ran, seconds until one is due)."""
        await self._ack(unacked)
        if idle.idle and self._waits_and_pops():
            task, due = await self.queue.wait_and_pop(self.worker_id, self._wait_timeout(idle.due))
        else:
            task, due = await self.queue.pop_reply(self.worker_id)
        idle.idle, idle.due = task is None, due
        if task is None:
            return False, due
        finished = await self._execute(task)
        if finished is not None:
            unacked.append(finished)
            with contextlib.suppress(RedisUnavailableError):  # logged; sent again with the next turn
                await self._ack(unacked)
        return True, due

    async def _recover(self, exc: Exception, backoff: Backoff, unacked: list[Finished]) -> None:
        """After a failed step: log it and wait; an unexpected error gives up the acks waiting
        (their leases expire and the tasks run again: at least once)."""
        if not isinstance(exc, RedisUnavailableError):
            self._book.forget(f.task for f in unacked)
            unacked.clear()
        await self._pause(backoff.next(exc))

    async def _found_nothing(self, due: float | None) -> bool:
        """After an empty pop: a burst worker ends when it is done, or waits for work."""
        if self.burst and self._turns.idle():
            upcoming = await self.queue.next_delayed_seconds()
            if upcoming is None or upcoming > BURST_DELAY_HORIZON:
                assert self._stop is not None
                self._stop.set()
                return False
        if self._waits_and_pops():
            return True  # the next turn waits and pops
        with contextlib.suppress(RedisUnavailableError):
            await self.queue.wait_for_work(self.worker_id, self._wait_timeout(due))
        return True

    def _wait_timeout(self, due: float | None) -> float:
        """How long an idle slot waits: the poll interval, or until something is due (at most 4 s)."""
        poll = self.settings.poll_interval_seconds
        return min(poll if due is None else min(poll, max(due, 0.001)), 4.0)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the worker stops."""
        assert self._stop is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _ack(self, unacked: list[Finished]) -> None:
        """Acknowledge finished tasks in turn; an outage raises and leaves the rest to send again."""
        while unacked:
            finished = unacked[0]
            try:
                if finished.result_json is not None:
                    await self.queue.store_result_json(finished.task, finished.result_json)
                code = await self.queue.complete_code(finished.task, duration=finished.duration)
            except RedisUnavailableError:
                logger.warning("worker %s: could not acknowledge task %s yet (Redis unreachable)", self.worker_id,
                               finished.task.task_id)
                raise
            self.runner.acked(finished, code)
            unacked.pop(0)

    # --- running ------------------------------------------------------------------------
    async def _execute(self, task: Task) -> Finished | None:
        """Run a task: an ``async def`` on this loop, anything else through the runner in a
        thread. A failure is recorded; a success is returned for acknowledgement."""
        fn = _coroutine_function(task)
        if fn is None:
            return await asyncio.to_thread(self.runner.execute, task)
        if task.cancel_requested:  # cancelled while it waited here (prefetched): not run
            return await asyncio.to_thread(self.runner.execute, task)
        entry = self._book.start(task)
        self.runner.trace_start(task)
        timeout = self.runner.timeout_of(task)
        error: BaseException | None = None
        tb, result = "", None
        try:
            result = await (asyncio.wait_for(self._call(task, fn), timeout) if timeout else self._call(task, fn))
        except asyncio.TimeoutError:
            await asyncio.to_thread(self.runner.timed_out, entry, timeout or 0.0, interrupt=False)
            return None
        except Exception as exc:  # a task may raise anything; it is recorded
            error, tb = exc, traceback.format_exc()
        outcome = self.runner.outcome(task, time.monotonic() - entry.started, result, error, tb)
        if isinstance(outcome, Failure):
            await asyncio.to_thread(self.runner.record, outcome)
            return None
        return outcome

    async def _call(self, task: Task, fn: TaskFunction[..., Any]) -> Any:
        await asyncio.to_thread(self.runner.chain_input, task)
        span = self.runner.span_of(task)
        with span.active() if span is not None else contextlib.nullcontext(), task_running(task, self.sync_queue):
            result = await fn.func(*task.args, **task.kwargs)
            if fn.xcom_key is not None:
                await asyncio.to_thread(xcom_push, fn.xcom_key, result)
            return result
