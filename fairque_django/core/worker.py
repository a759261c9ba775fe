"""``Worker``: serves one configured worker id with up to ``max_concurrent_tasks`` threads.

Each slot thread pops fairly (own users first, then steal targets), runs the task through the
:class:`TaskHandler`, and acknowledges or records the failure. Idle slots block on the wake-up
lists that pushes fill (no busy polling); ``poll_interval_seconds`` is only the fallback. A
heartbeat thread renews the leases of running tasks, enforces timeouts and publishes the
worker's health record. SIGTERM/SIGINT stop it gracefully; a second signal exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

from .codec import text
from .config import FairQueueConfig
from .context import task_running
from .exceptions import FairQueueError, LeaseLostError, RedisUnavailableError, TaskNotRegisteredError
from .handler import TaskHandler, TaskTimeoutError
from .models import Task, dumps
from .observe import mark_stopped, trim_throughput
from .queue import TaskQueue, redis_errors
from .registry import import_task_modules
from .results import failure_record, success_record

logger = logging.getLogger("fairque_django.worker")

# A prefetched task waits this long for its slot before it is handed back to its queue; a slot
# leases several tasks at once only while that many of its tasks fit in this time.
PREFETCH_HOLD_SECONDS = 0.05

# The most tasks a slot leases in one pop.
MAX_BATCH = 16

# In burst mode, delayed tasks (retries) due within this many seconds are waited for.
BURST_DELAY_HORIZON = 60.0

# Failures that retrying cannot fix: the task is dead-lettered at once.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (TaskNotRegisteredError,)


@dataclass(frozen=True, slots=True)
class _Done:
    """A task that ran successfully and waits for its acknowledgement."""

    task: Task
    duration: float
    result_json: str | None


@dataclass(slots=True)
class _Running:
    task: Task
    started: float
    thread: threading.Thread  # runs the task's code (the slot itself, or a runner when timed)
    slot: threading.Thread
    timed_out: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    """Runs the tasks of one worker id from the configuration until stopped."""

    def __init__(self, config: FairQueueConfig, handler: TaskHandler | None = None, *,
                 worker_id: str | None = None, queue: TaskQueue | None = None,
                 concurrency: int | None = None, burst: bool = False, max_tasks: int | None = None,
                 task_modules: Iterable[str] = (), around_task: Callable[[], None] | None = None,
                 install_signal_handlers: bool = True, periodic: Callable[[], None] | None = None,
                 periodic_interval: float = 30.0, prefetch: bool = True,
                 prefetch_hold_seconds: float = PREFETCH_HOLD_SECONDS) -> None:
        self.config = config
        self.settings = config.get_worker(worker_id)
        self.worker_id = self.settings.id
        self.handler = handler if handler is not None else TaskHandler()
        self.queue = queue if queue is not None else TaskQueue(config, worker_id=self.worker_id)
        self.concurrency = concurrency or self.settings.max_concurrent_tasks
        self.burst = burst
        self.max_tasks = max_tasks
        self.task_modules = tuple(task_modules)
        self.around_task = around_task
        self.install_signal_handlers = install_signal_handlers
        # called from the heartbeat thread at most every periodic_interval s (e.g. alert rules)
        self.periodic = periodic
        self.periodic_interval = periodic_interval
        self._next_periodic = 0.0
        self._next_trim = 0.0
        self.processed = 0
        self.failed = 0
        self.started_at = 0.0
        self._taken = 0
        self._inflight = 0
        self._stop = threading.Event()
        self._slots_done = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        # prefetch: a slot whose tasks are short (typically under prefetch_hold_seconds) leases its
        # next task while the current one runs, so the round trip (ack + pop) leaves the critical
        # path. A prefetched task whose slot is still busy after prefetch_hold_seconds goes back to
        # its queue, where any idle slot or worker takes it: no task waits behind a long one.
        # Not used in burst and max-tasks modes.
        self.prefetch = prefetch and not burst and max_tasks is None
        self.prefetch_hold_seconds = prefetch_hold_seconds
        self._held: dict[str, Task] = {}  # prefetched: leased, not started yet
        self._fetcher: ThreadPoolExecutor | None = None
        self._signals = 0
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> Worker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> int:
        """Serve tasks until stopped (signal, :meth:`stop`, burst end or max tasks). Returns 0."""
        import_task_modules(self.task_modules)
        self.started_at = time.time()
        self._stop.clear()
        self._slots_done.clear()
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        logger.info("worker %s starting: %d slots, assigned %s, steals %s", self.worker_id,
                    self.concurrency, list(self.settings.assigned_users), list(self.settings.steal_targets))
        beat = threading.Thread(target=self._heartbeat_loop, name=f"{self.worker_id}-heartbeat", daemon=True)
        beat.start()
        loop = self._prefetch_loop if self.prefetch else self._slot_loop
        if self.prefetch:
            self._fetcher = ThreadPoolExecutor(max_workers=self.concurrency,
                                               thread_name_prefix=f"{self.worker_id}-fetch")
        self._threads = [threading.Thread(target=loop, name=f"{self.worker_id}-slot-{i}", daemon=True)
                         for i in range(self.concurrency)]
        for t in self._threads:
            t.start()
        while not self._stop.is_set():
            self._stop.wait(0.2)
        self._shutdown()
        self._slots_done.set()
        if self._fetcher is not None:
            self._fetcher.shutdown(wait=False)
        beat.join(timeout=5)
        with contextlib.suppress(FairQueueError), redis_errors("worker shutdown"):
            self.queue.client.delete(self.queue.keys.worker(self.worker_id))
            mark_stopped(self.queue.client, self.queue.keys, self.worker_id)  # reads "down", not "never seen"
        logger.info("worker %s stopped: %d processed, %d failed", self.worker_id, self.processed, self.failed)
        return 0

    def stop(self) -> None:
        """Ask the worker to stop taking tasks and finish gracefully."""
        self._stop.set()

    @property
    def running_tasks(self) -> list[Task]:
        with self._lock:
            return [r.task for r in self._running.values()]

    def _leased_here(self) -> list[Task]:
        """Tasks this worker holds a lease on: running, or prefetched and about to run."""
        with self._lock:
            return [r.task for r in self._running.values()] + list(self._held.values())

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("worker %s: second signal, exiting now; leases will recover running tasks",
                           self.worker_id)
            os._exit(1)
        logger.info("worker %s: %s received, finishing running tasks (up to %.0fs)", self.worker_id,
                    signal.Signals(signum).name, self.settings.graceful_shutdown_timeout)
        self._stop.set()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.graceful_shutdown_timeout
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        # idle slots may still sit in one blocking wait: let them leave before handing tasks back,
        # or they would take the handed-back tasks again
        with self._lock:
            busy = {r.slot for r in self._running.values()}
        idle_deadline = time.monotonic() + self._max_wait() + 0.5
        for t in self._threads:
            if t not in busy:
                t.join(timeout=max(0.0, idle_deadline - time.monotonic()))
        unfinished = self._leased_here()
        if unfinished:
            with self._lock:  # no longer ours: stop renewing their leases
                for task in unfinished:
                    self._running.pop(task.task_id, None)
                    self._held.pop(task.task_id, None)
            try:
                handed = self.queue.release(unfinished)
                logger.warning("worker %s: handed %d unfinished task(s) back to their queues",
                               self.worker_id, handed)
            except FairQueueError as exc:
                logger.error("worker %s: could not hand tasks back (%s); their leases will expire",
                             self.worker_id, exc)

    # --- slots ----------------------------------------------------------------------
    def _slot_loop(self) -> None:
        """A slot that pops, runs and acknowledges in turn (burst and max-tasks modes, or with
        prefetching off). Each acknowledgement travels with the next pop; while a slot's tasks are
        short, one pop leases several (see :meth:`_batch_size`) and their acknowledgements wait for
        the next pop, so one round trip serves a whole batch."""
        backoff = 0.1
        done: list[_Done] = []  # tasks that succeeded; acknowledged with the next pop
        ahead: deque[Task] = deque()  # leased by the last pop, not started yet (held)
        typical: float | None = None  # moving average run time of this slot's tasks
        idle = False  # the last pop found nothing: block on the wake-up lists, then pop
        due: float | None = None
        try:
            while not self._stop.is_set():
                with self._lock:
                    if self.max_tasks is not None and self._taken >= self.max_tasks:
                        break
                    self._taken += 1
                    self._inflight += 1  # popping or running: burst mode must not end meanwhile
                task: Task | None = None
                try:
                    if ahead:
                        task = ahead.popleft()
                    elif done:
                        task, due = self._first(self._ack_many(done, self._batch_size(typical)), ahead)
                        done = []  # kept until acknowledged: retried after a Redis outage
                    elif idle and not self.burst:
                        task, due = self.queue.wait_and_pop(self.worker_id, self._wait_timeout(due))
                        self._hold(task)
                    else:
                        task, due = self._first(
                            self.queue.pop_many_reply(self._batch_size(typical), self.worker_id), ahead)
                    backoff = 0.1
                    if task is not None:
                        if self._stop.is_set():
                            self._give_back([task])
                            break
                        started = time.monotonic()
                        finished = self._execute(task, held=True)
                        if finished is not None:
                            done.append(finished)
                        took = time.monotonic() - started
                        typical = took if typical is None else 0.8 * typical + 0.2 * took
                        if ahead and took > self.prefetch_hold_seconds:
                            # that one ran long: the rest of the batch goes back for others to take
                            self._give_back(ahead, count=False)
                            ahead.clear()
                except RedisUnavailableError as exc:
                    backoff = self._back_off(backoff, exc)
                    continue
                except Exception:  # a slot must never die: log, back off, keep serving
                    done = []  # not retried: their leases expire and they run again (at least once)
                    backoff = self._back_off(backoff, None)
                    continue
                finally:
                    with self._lock:
                        self._inflight -= 1
                        if task is None:
                            self._taken -= 1
                idle = task is None
                if idle and self.burst:
                    if self._burst_done():
                        self._stop.set()
                        break
                    self._wait(due)
        finally:
            self._give_back(ahead)
            for finished in done:
                with contextlib.suppress(FairQueueError):
                    self._ack(finished, pop_next=False)
        with self._lock:
            if self.max_tasks is not None and self._taken >= self.max_tasks and self._inflight == 0:
                self._stop.set()

    def _back_off(self, backoff: float, unreachable: RedisUnavailableError | None) -> float:
        """Log why a slot's step failed (call it from the ``except``), wait ``backoff`` seconds or
        until stopped, and return the next, doubled backoff (at most 5 s)."""
        if unreachable is not None:
            logger.warning("worker %s: Redis unreachable (%s); retrying in %.1fs", self.worker_id, unreachable,
                           backoff)
        else:
            logger.exception("worker %s: unexpected error in the task loop; retrying in %.1fs", self.worker_id,
                             backoff)
        self._stop.wait(backoff)
        return min(backoff * 2, 5.0)

    def _batch_size(self, typical: float | None) -> int:
        """How many tasks a slot leases per pop: one, unless its tasks are short (then as many as
        fit in ``prefetch_hold_seconds``, at most ``MAX_BATCH``). Max-tasks mode takes one at a time."""
        if typical is None or self.max_tasks is not None or typical >= self.prefetch_hold_seconds / 2:
            return 1
        return max(1, min(MAX_BATCH, int(self.prefetch_hold_seconds / max(typical, 1e-6))))

    def _first(self, popped: tuple[list[Task], float | None], ahead: deque[Task]) -> tuple[Task | None, float | None]:
        """Hold the tasks a pop leased; return the first (with the pop's due time), queue the rest."""
        tasks, due = popped
        for task in tasks:
            self._hold(task)
        ahead.extend(tasks[1:])
        return (tasks[0] if tasks else None), due

    def _ack_many(self, done: list[_Done], count: int) -> tuple[list[Task], float | None]:
        """Acknowledge succeeded tasks and lease up to ``count`` more, in one round trip."""
        try:
            codes, tasks, due = self.queue.complete_and_pop_many(
                [(d.task, d.duration, d.result_json) for d in done], count, worker_id=self.worker_id)
        except RedisUnavailableError:
            logger.warning("worker %s: could not acknowledge %d task(s) yet (Redis unreachable)", self.worker_id,
                           len(done))
            raise
        for finished, code in zip(done, codes, strict=True):
            self._acked(finished, code)
        return tasks, due

    def _prefetch_loop(self) -> None:
        """A slot that leases its next task in the background while the current one runs.

        The fetch started when task k starts acknowledges task k-1 and leases task k+1 in one
        round trip, so neither waits on the critical path; a slot holds at most one task ahead
        (its lease renewed by the heartbeat, handed back on shutdown)."""
        assert self._fetcher is not None
        backoff = 0.1
        future: Future[tuple[Task | None, float | None]] | None = None
        done: _Done | None = None  # finished, acknowledged by the next fetch
        free = threading.Event()  # set when this slot can start the prefetched task
        typical: float | None = None  # moving average run time of this slot's tasks
        idle = False
        due: float | None = None
        try:
            while not self._stop.is_set():
                try:
                    if future is not None:
                        fut, future = future, None
                        task, due = fut.result()
                    elif done is not None:
                        last, done = done, None
                        task, due = self._fetch(last)
                    elif idle:
                        task, due = self.queue.wait_and_pop(self.worker_id, self._wait_timeout(due))
                        self._hold(task)
                    else:
                        task, due = self.queue.pop_reply(self.worker_id)
                        self._hold(task)
                except RedisUnavailableError as exc:
                    backoff = self._back_off(backoff, exc)
                    continue
                except Exception:  # a slot must never die
                    backoff = self._back_off(backoff, None)
                    continue
                backoff = 0.1
                if task is None:
                    idle = done is None  # first acknowledge what finished (and pop), then wait
                    continue
                woke, idle = idle, False
                if self._stop.is_set():
                    self._give_back([task])
                    break
                previous, done = done, None
                # a task that just woke an idle slot starts at once: its queue was empty a moment
                # ago, so a prefetch would most likely find nothing and only delay the start
                if not woke and typical is not None and typical < self.prefetch_hold_seconds:
                    # short tasks: lease the next one (acknowledging the previous) while this one runs
                    free.clear()
                    future = self._fetcher.submit(self._fetch, previous, free)
                elif previous is not None:
                    self._ack(previous, pop_next=False)
                started = time.monotonic()
                done = self._execute(task, held=True)
                free.set()
                took = time.monotonic() - started
                typical = took if typical is None else 0.8 * typical + 0.2 * took
        finally:
            free.set()
            if future is not None:
                try:
                    self._give_back([future.result(timeout=30)[0]])
                except Exception as exc:  # shutting down: its lease recovers the task
                    logger.warning("worker %s: prefetch failed at shutdown (%s)", self.worker_id, exc)
            if done is not None:
                with contextlib.suppress(FairQueueError):
                    self._ack(done, pop_next=False)

    def _fetch(self, done: _Done | None, free: threading.Event | None = None) -> tuple[Task | None, float | None]:
        """Acknowledge ``done`` (if any) and lease the next task, held for this slot. With ``free``,
        the task goes back to its queue unless the slot is free within the hold time."""
        if done is not None:
            task, due = self._ack(done, pop_next=True)  # on an outage the ack is lost: the lease recovers it
        else:
            task, due = self.queue.pop_reply(self.worker_id)
        self._hold(task)
        if task is not None and free is not None and not free.wait(self.prefetch_hold_seconds):
            self._give_back([task], count=False)  # another slot or worker takes it now
            return None, due
        return task, due

    def _hold(self, task: Task | None) -> None:
        if task is not None:
            with self._lock:
                self._held[task.task_id] = task

    def _give_back(self, tasks: Iterable[Task | None], *, count: bool = True) -> None:
        """Hand leased tasks this worker has not started back to their queue (``count``: in the
        'released' stat, as at shutdown; not for a quiet hand-back another slot takes at once)."""
        back = [t for t in tasks if t is not None]
        if not back:
            return
        with self._lock:
            for task in back:
                self._held.pop(task.task_id, None)
        with contextlib.suppress(FairQueueError):
            self.queue.release(back, count=count)

    def _burst_done(self) -> bool:
        """Burst mode ends when no slot is popping or running, nothing is ready for this worker,
        and no delayed task (e.g. a retry) is due within ``BURST_DELAY_HORIZON`` seconds."""
        with self._lock:
            if self._inflight or self._held:  # a slot still holds leased tasks it has not started
                return False
        try:
            due = self.queue.next_delayed_seconds()
        except FairQueueError as exc:  # cannot tell: not done (the slot waits and asks again)
            logger.warning("worker %s: could not check for delayed tasks (%s)", self.worker_id, exc)
            return False
        return due is None or due > BURST_DELAY_HORIZON

    def _max_wait(self) -> float:
        """Longest blocking wait: the poll interval, kept below the socket timeout."""
        return min(self.settings.poll_interval_seconds, max(0.05, self.config.redis.socket_timeout - 0.5))

    def _wait_timeout(self, due: float | None) -> float:
        timeout = self._max_wait()
        return timeout if due is None else min(timeout, max(due, 0.001))

    def _wait(self, due: float | None) -> None:
        timeout = self._wait_timeout(due)
        try:
            self.queue.wait_for_work(self.worker_id, timeout)
        except Exception as exc:  # Redis down, or the client closed under us: wait, then retry
            logger.debug("worker %s: wait for work failed (%s)", self.worker_id, exc)
            self._stop.wait(min(timeout, 1.0))

    # --- running one task ------------------------------------------------------------
    def _execute(self, task: Task, *, held: bool = False) -> _Done | None:
        """Run a task; failures are recorded here, a success is returned for acknowledgement."""
        timeout = task.timeout if task.timeout is not None else self.settings.task_timeout_seconds
        start = time.monotonic()
        slot = threading.current_thread()
        entry = _Running(task, start, slot, slot)
        with self._lock:
            self._running[task.task_id] = entry
            if held:
                self._held.pop(task.task_id, None)
        logger.debug("worker %s: running %s %s for %s (attempt %d)", self.worker_id,
                     task.func_name or "payload task", task.task_id, task.user_id, task.attempts)
        error: BaseException | None = None
        tb = ""
        ok, result = False, None
        try:
            if timeout:
                ok, result = self._run_with_timeout(task, entry, timeout)
            else:
                ok, result = self._run(task)
        except BaseException as exc:
            error, tb = exc, traceback.format_exc()
        duration = time.monotonic() - start
        with self._lock:
            self._running.pop(task.task_id, None)
        if entry.timed_out:
            return None  # already recorded as a timeout
        if error is None and ok:
            try:
                result_json = success_record(task, result, self.config.queue.store_results)
            except FairQueueError as exc:  # store_result=True and the value is not JSON
                self._failed(task, exc, traceback.format_exc(), duration, failure_type="result")
                return None
            return _Done(task, duration, result_json)
        if error is None:
            error = FairQueueError(f"handler {type(self.handler).__name__} returned False")
        self._failed(task, error, tb, duration)
        return None

    def _run(self, task: Task) -> tuple[bool, Any]:
        """Run the handler in this thread; returns (handler said ok, the function's result)."""
        if self.around_task is not None:
            self.around_task()
        self.handler.before_task(task)
        try:
            with task_running(task, self.queue) as running:
                ok = self.handler.process_task(task)
                return ok is not False, running.result
        finally:
            self.handler.after_task(task)
            if self.around_task is not None:
                self.around_task()

    def _run_with_timeout(self, task: Task, entry: _Running, timeout: float) -> tuple[bool, Any]:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = self._run(task)
            except BaseException as exc:
                box["error"], box["tb"] = exc, traceback.format_exc()

        runner = threading.Thread(target=target, name=f"task-{task.task_id}", daemon=True)
        entry.thread = runner
        runner.start()
        runner.join(timeout)
        if runner.is_alive():
            self._timed_out(task, entry, timeout)
            runner.join(0.5)
            return False, None
        if "error" in box:
            raise box["error"]
        return box["result"]  # type: ignore[no-any-return]

    def _timed_out(self, task: Task, entry: _Running, timeout: float) -> None:
        with entry.lock:
            if entry.timed_out:
                return
            entry.timed_out = True
        # stop pure-Python code in the task's own thread (blocking C calls finish first)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry.thread.ident or 0),
                                                   ctypes.py_object(TaskTimeoutError))
        error = TaskTimeoutError(f"task exceeded its timeout of {timeout:g}s")
        duration = time.monotonic() - entry.started
        logger.error("worker %s: task %s %s for %s timed out after %.1fs", self.worker_id,
                     task.func_name or "payload task", task.task_id, task.user_id, duration)
        self._record_failure(task, error, "", "timeout")
        self._safe_hook(self.handler.on_task_timeout, task, duration)
        self._safe_hook(self.handler.on_task_failure, task, error, duration)

    def _ack(self, done: _Done, *, pop_next: bool) -> tuple[Task | None, float | None]:
        """Acknowledge a succeeded task; with ``pop_next``, lease the next one in the same round trip."""
        task = done.task
        try:
            if pop_next:
                code, nxt, due = self.queue.complete_and_pop(task, duration=done.duration,
                                                             result_json=done.result_json, worker_id=self.worker_id)
            else:
                if done.result_json is not None:
                    self.queue.store_result_json(task, done.result_json)
                code, nxt, due = self.queue.complete_code(task, duration=done.duration), None, None
        except RedisUnavailableError:
            logger.warning("worker %s: could not acknowledge task %s yet (Redis unreachable)", self.worker_id,
                           task.task_id)
            raise
        self._acked(done, code)
        return nxt, due

    def _acked(self, done: _Done, code: int) -> None:
        """Log and count an acknowledgement's outcome (1 done, 0 lease lost, -1 already done)."""
        task = done.task
        if code == -1:  # an earlier attempt at this ack went through before the connection broke
            logger.debug("worker %s: task %s was already acknowledged", self.worker_id, task.task_id)
        elif code == 1:
            with self._lock:
                self.processed += 1
            logger.info("worker %s: %s %s for %s done in %.3fs", self.worker_id, task.func_name or "payload task",
                        task.task_id, task.user_id, done.duration)
            self._safe_hook(self.handler.on_task_success, task, done.duration)
        else:
            logger.warning("worker %s: task %s finished after its lease was lost; another attempt may run it "
                           "again", self.worker_id, task.task_id)

    def _failed(self, task: Task, error: BaseException, tb: str, duration: float,
                failure_type: str | None = None) -> None:
        ftype = failure_type or ("unregistered" if isinstance(error, TaskNotRegisteredError) else "error")
        outcome = self._record_failure(task, error, tb, ftype)
        logger.warning("worker %s: %s %s for %s failed after %.3fs (%s: %s); %s", self.worker_id,
                       task.func_name or "payload task", task.task_id, task.user_id, duration,
                       type(error).__name__, error, outcome)
        self._safe_hook(self.handler.on_task_failure, task, error, duration)

    def _record_failure(self, task: Task, error: BaseException, tb: str, ftype: str) -> str:
        with self._lock:
            self.failed += 1
        permanent = isinstance(error, PERMANENT_ERRORS)
        try:
            outcome = self.queue.fail(task, error, traceback=tb, failure_type=ftype, retry=not permanent)
        except LeaseLostError:
            return "lease already lost"
        except FairQueueError as exc:
            logger.error("worker %s: could not record failure of %s (%s); its lease will expire",
                         self.worker_id, task.task_id, exc)
            return "not recorded"
        record = failure_record(task, error, tb, self.config.queue.store_results) if outcome == "dead" else None
        if record is not None:
            with contextlib.suppress(FairQueueError):
                self.queue.store_result(task, record)
        return "retry scheduled" if outcome == "retry" else "dead-lettered"

    def _safe_hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("worker %s: handler hook %s raised", self.worker_id, hook.__name__)

    # --- heartbeat ---------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = min(self.settings.heartbeat_interval_seconds, self.config.queue.lease_timeout_seconds / 3)
        while True:
            self._beat()
            self._housekeeping()
            if self._slots_done.wait(interval):  # keeps beating (leases) while shutdown waits for tasks
                return

    def _beat(self) -> None:
        tasks = self._leased_here()
        try:
            lost = self.queue.extend(tasks) if tasks else []
            for task_id in lost:
                logger.warning("worker %s: lease of task %s was lost while it ran", self.worker_id, task_id)
            self.publish_health(tasks)
        except Exception as exc:  # the heartbeat must never die: it keeps the leases
            logger.warning("worker %s: heartbeat failed (%s)", self.worker_id, exc)

    def _housekeeping(self) -> None:
        """Trim old per-minute metrics (once a minute) and run the periodic hook when due."""
        now = time.monotonic()
        if now >= self._next_trim:
            self._next_trim = now + 60.0
            with contextlib.suppress(FairQueueError):
                trim_throughput(self.queue.client, self.queue.keys)
        if self.periodic is not None and now >= self._next_periodic:
            self._next_periodic = now + self.periodic_interval
            try:
                self.periodic()
            except FairQueueError as exc:  # e.g. Redis unreachable: the heartbeat already says so
                logger.warning("worker %s: periodic hook failed: %s", self.worker_id, exc)
            except Exception:
                logger.exception("worker %s: periodic hook raised", self.worker_id)

    def publish_health(self, tasks: list[Task]) -> None:
        ttl = max(3 * self.settings.heartbeat_interval_seconds, self.config.queue.lease_timeout_seconds)
        now = time.time()
        record = {
            "id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
            "started": self.started_at, "last_seen": now, "processed": self.processed,
            "failed": self.failed, "concurrency": self.concurrency,
            "current": dumps([{"task_id": t.task_id, "user": t.user_id, "func": t.func_name} for t in tasks]),
            "assigned": dumps(list(self.settings.assigned_users)[:1000]),
            "steals": dumps(list(self.settings.steal_targets)[:1000]),
        }
        with redis_errors("heartbeat"):
            pipe = self.queue.client.pipeline(transaction=False)
            pipe.hset(self.queue.keys.worker(self.worker_id), mapping=record)  # type: ignore[arg-type]
            pipe.pexpire(self.queue.keys.worker(self.worker_id), int(ttl * 1000))
            pipe.zadd(self.queue.keys.workers, {self.worker_id: now})
            pipe.execute()


def worker_health(queue: TaskQueue, worker_id: str) -> dict[str, Any] | None:
    """The health record a live worker publishes, or None when it is not alive."""
    with redis_errors("worker_health"):
        raw = queue.client.hgetall(queue.keys.worker(worker_id))
    if not raw:
        return None
    record: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
    for key in ("current", "assigned", "steals"):
        record[key] = json.loads(record.get(key, "[]"))
    for key in ("started", "last_seen"):
        record[key] = float(record.get(key, 0))
    for key in ("pid", "processed", "failed", "concurrency"):
        record[key] = int(record.get(key, 0))
    record["heartbeat_age"] = max(0.0, time.time() - record["last_seen"])
    return record
