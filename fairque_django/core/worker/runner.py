"""``TaskRunner``: the one way both workers run a task and settle its outcome.

It runs a leased task through the :class:`~fairque_django.core.handler.TaskHandler` (in the calling
thread, or, with a timeout, in a thread of its own that the timeout interrupts), turns the outcome
into a success that waits for its acknowledgement (with its result record) or a recorded failure
(retry or dead letter, with its failure record), counts and logs both, and calls the handler's
hooks: a hook that raises is logged, never propagated. Its Redis calls go through a synchronous
:class:`TaskQueue`; the asyncio worker calls the runner in a thread for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import tracing
from ..config import FairQueueConfig
from ..context import task_running
from ..errors import (
    DependencyError,
    FairQueueError,
    LeaseLostError,
    TaskCancelled,
    TaskNotRegisteredError,
    TaskTimeoutError,
)
from ..handler import TaskHandler
from ..models import Task
from ..results import failure_record, success_record
from ..sharded import AnyQueue
from .leases import LeaseBook, Running

logger = logging.getLogger("fairque_django.worker")

# Failures that retrying cannot fix: the task is dead-lettered at once.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (TaskNotRegisteredError,)


@dataclass(frozen=True, slots=True)
class Finished:
    """A task that ran successfully and waits for its acknowledgement."""

    task: Task
    duration: float
    result_json: str | None  # the result record to store with the ack (None: not kept)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt, to record."""

    task: Task
    error: BaseException
    traceback: str
    duration: float
    failure_type: str  # error, unregistered, result (the value could not be kept), timeout or cancelled


def _name(task: Task) -> str:
    return task.func_name or "payload task"


class TaskRunner:
    """Runs one worker's tasks and settles their outcomes; thread-safe."""

    def __init__(self, config: FairQueueConfig, worker_id: str, handler: TaskHandler, queue: AnyQueue,
                 book: LeaseBook, *, around_task: Callable[[], None] | None = None) -> None:
        self.config = config
        self.worker_id = worker_id
        self.settings = config.get_worker(worker_id)
        self.handler = handler
        self.queue = queue
        self.book = book
        self.around_task = around_task  # called before and after each task (e.g. Django's DB cleanup)
        self.processed = 0
        self.failed = 0
        self.cancelled = 0
        self._lock = threading.Lock()
        self._spans: dict[str, tracing.RunSpan] = {}  # task id -> its run span (OpenTelemetry installed)

    def timeout_of(self, task: Task) -> float | None:
        return task.timeout if task.timeout is not None else self.settings.task_timeout_seconds

    # --- running ------------------------------------------------------------------------
    def execute(self, task: Task) -> Finished | None:
        """Run a leased task from this thread. A failure is recorded here; a success is returned
        for acknowledgement."""
        entry = self.book.start(task)
        if task.cancel_requested:  # cancelled while it waited here (prefetched, a batch's rest): not run
            self.book.forget([task])
            self.record(Failure(task, TaskCancelled(f"task {task.task_id} was cancelled"), "", 0.0, "cancelled"))
            return None
        self.trace_start(task)
        if logger.isEnabledFor(logging.DEBUG):  # (its arguments cost a call even when not logged)
            logger.debug("worker %s: running %s %s for %s (attempt %d)", self.worker_id, _name(task), task.task_id,
                         task.user_id, task.attempts)
        timeout = self.timeout_of(task)
        error: BaseException | None = None
        tb = ""
        ok, result = False, None
        try:
            ok, result = self._run_timed(entry, timeout) if timeout else self.call(task)
        except BaseException as exc:  # whatever the task raised is recorded
            error, tb = exc, traceback.format_exc()
        if entry.timed_out:
            return None  # already recorded as a timeout
        if error is None and not ok:
            error = FairQueueError(f"handler {type(self.handler).__name__} returned False")
        outcome = self.outcome(task, time.monotonic() - entry.started, result, error, tb)
        if isinstance(outcome, Failure):
            self.record(outcome)
            return None
        return outcome

    def chain_input(self, task: Task) -> None:
        """A task of a chain (``metadata["chain_from"]``: the previous task's user and id) gets the
        previous task's return value as one more positional argument, read from its kept result;
        raises :class:`DependencyError` (the task fails) when no successful result is kept."""
        link = task.metadata.get("chain_from")
        if not link:
            return
        user, prev = str(link[0]), str(link[1])
        record = self.queue.get_result(prev, user_id=user)
        if record is None or record.get("status") != "SUCCESSFUL" or "return_value_error" in record:
            raise DependencyError(f"task {task.task_id} continues a chain from task {prev}, whose return value "
                                  "is not kept (store_result, queue.result_ttl_seconds)")
        task.args.append(record.get("return_value"))

    def call(self, task: Task) -> tuple[bool, Any]:
        """Run the handler in this thread; returns (handler said ok, the function's result)."""
        self.chain_input(task)
        span = self.span_of(task)
        if span is not None:
            with span.active():
                return self._call(task)
        return self._call(task)

    def _call(self, task: Task) -> tuple[bool, Any]:
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

    def _run_timed(self, entry: Running, timeout: float) -> tuple[bool, Any]:
        """:meth:`call` in a thread of its own, interrupted (and recorded) when it outlives ``timeout``."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = self.call(entry.task)
            except BaseException as exc:
                box["error"] = exc

        runner = threading.Thread(target=target, name=f"task-{entry.task.task_id}", daemon=True)
        entry.thread = runner
        runner.start()
        runner.join(timeout)
        if runner.is_alive():
            self.timed_out(entry, timeout)
            runner.join(0.5)
            return False, None
        if "error" in box:
            raise box["error"]
        return box["result"]  # type: ignore[no-any-return]

    def timed_out(self, entry: Running, timeout: float, *, interrupt: bool = True) -> None:
        """Record that a running task outlived its timeout (once); with ``interrupt``, stop its
        pure-Python code in its own thread (blocking C calls finish first)."""
        if not entry.mark_timed_out():
            return
        if interrupt:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry.thread.ident or 0),
                                                       ctypes.py_object(TaskTimeoutError))
        task = entry.task
        duration = time.monotonic() - entry.started
        logger.error("worker %s: task %s %s for %s timed out after %.1fs", self.worker_id, _name(task),
                     task.task_id, task.user_id, duration)
        error = TaskTimeoutError(f"task exceeded its timeout of {timeout:g}s")
        self.record(Failure(task, error, "", duration, "timeout"))
        self.book.forget([task])

    # --- outcomes -------------------------------------------------------------------------
    def outcome(self, task: Task, duration: float, result: Any = None, error: BaseException | None = None,
                tb: str = "") -> Finished | Failure:
        """A finished run's outcome: a success waiting for its ack (with its result record), or a
        failure to :meth:`record` (also when the result cannot be kept). A task cancelled while it
        ran (it raised :class:`TaskCancelled`, or its worker was told) ends as cancelled whatever it
        did: never a success, never retried."""
        ftype = "unregistered" if isinstance(error, TaskNotRegisteredError) else "error"
        if isinstance(error, TaskCancelled) or task.cancel_requested:
            self.book.forget([task])
            return Failure(task, error or TaskCancelled(f"task {task.task_id} was cancelled"), tb, duration,
                           "cancelled")
        if error is None:
            try:
                finished = Finished(task, duration, success_record(task, result, self.config.queue.store_results))
            except FairQueueError as exc:  # store_result=True and the value is not JSON
                error, tb, ftype = exc, traceback.format_exc(), "result"
            else:
                self.book.finish(task)
                self.trace_end(task, "success")
                return finished
        self.book.forget([task])
        return Failure(task, error, tb, duration, ftype)

    def record(self, failure: Failure) -> None:
        """Record a failed attempt (retry scheduled or dead-lettered), log it, call the hooks. A
        cancelled task is acknowledged as cancelled instead (no failure hook)."""
        task = failure.task
        if failure.failure_type == "cancelled":
            self._cancelled(failure)
            self.trace_end(task, "cancelled", failure.error)
            return
        with self._lock:
            self.failed += 1
        note = self._store(failure)
        self.trace_end(task, "cancelled" if note == "cancelled meanwhile" else _OUTCOMES.get(note, "failure"),
                       failure.error)
        if failure.failure_type == "timeout":  # logged when it happened
            self.hook(self.handler.on_task_timeout, task, failure.duration)
        else:
            logger.warning("worker %s: %s %s for %s failed after %.3fs (%s: %s); %s", self.worker_id, _name(task),
                           task.task_id, task.user_id, failure.duration, type(failure.error).__name__,
                           failure.error, note)
        self.hook(self.handler.on_task_failure, task, failure.error, failure.duration)

    def _cancelled(self, failure: Failure) -> None:
        """Acknowledge a cancelled task as cancelled (fail.lua, fenced by the lease token)."""
        task = failure.task
        try:
            self.queue.fail(task, failure.error, traceback=failure.traceback, failure_type="cancelled", retry=False)
        except LeaseLostError:
            logger.warning("worker %s: task %s was cancelled after its lease was lost", self.worker_id, task.task_id)
            return
        except FairQueueError as exc:
            logger.error("worker %s: could not record the cancel of %s (%s); its lease will expire (it stays "
                         "cancelled)", self.worker_id, task.task_id, exc)
            return
        with self._lock:
            self.cancelled += 1
        logger.info("worker %s: %s %s for %s cancelled after %.3fs", self.worker_id, _name(task), task.task_id,
                    task.user_id, failure.duration)

    def _store(self, failure: Failure) -> str:
        """Write the failure (and, when dead-lettered, its failure record); says what became of it."""
        task, error = failure.task, failure.error
        try:
            outcome = self.queue.fail(task, error, traceback=failure.traceback, failure_type=failure.failure_type,
                                      retry=not isinstance(error, PERMANENT_ERRORS))
        except LeaseLostError:
            return "lease already lost"
        except FairQueueError as exc:
            logger.error("worker %s: could not record failure of %s (%s); its lease will expire", self.worker_id,
                         task.task_id, exc)
            return "not recorded"
        if outcome == "cancelled":  # it was cancelled meanwhile: recorded as cancelled, not retried
            return "cancelled meanwhile"
        if outcome != "dead":
            return "retry scheduled"
        record = failure_record(task, error, failure.traceback, self.config.queue.store_results)
        if record is not None:
            with contextlib.suppress(FairQueueError):
                self.queue.store_result(task, record)
        return "dead-lettered"

    def acked(self, finished: Finished, code: int) -> None:
        """Count and log an acknowledgement's outcome (1 done, 2 cancelled meanwhile, 0 lease lost,
        -1 already done)."""
        task = finished.task
        self.book.forget([task])
        if code == -1:  # an earlier attempt at this ack went through before the connection broke
            logger.debug("worker %s: task %s was already acknowledged", self.worker_id, task.task_id)
        elif code == 2:
            with self._lock:
                self.cancelled += 1
            logger.info("worker %s: task %s for %s was cancelled before its ack: recorded as cancelled",
                        self.worker_id, task.task_id, task.user_id)
        elif code == 1:
            with self._lock:
                self.processed += 1
            logger.info("worker %s: %s %s for %s done in %.3fs", self.worker_id, _name(task), task.task_id,
                        task.user_id, finished.duration)
            self.hook(self.handler.on_task_success, task, finished.duration)
        else:
            logger.warning("worker %s: task %s finished after its lease was lost; another attempt may run it "
                           "again", self.worker_id, task.task_id)

    def hook(self, hook: Callable[..., None], *args: Any) -> None:
        """Call a handler hook; what it raises is logged, never propagated."""
        try:
            hook(*args)
        except Exception:
            logger.exception("worker %s: handler hook %s raised", self.worker_id, hook.__name__)


    # --- tracing (core/tracing.py: nothing happens without OpenTelemetry) -------------------------
    def trace_start(self, task: Task) -> None:
        """Open the run span of a task that starts (child of its enqueue span)."""
        if tracing.ENABLED and tracing.active():
            self._spans[task.task_id] = tracing.RunSpan(task, self.worker_id)

    def span_of(self, task: Task) -> tracing.RunSpan | None:
        """The open run span of a running task, if any."""
        return self._spans.get(task.task_id) if self._spans else None

    def trace_end(self, task: Task, outcome: str, error: BaseException | None = None) -> None:
        """Close a task's run span with its outcome (see ``tracing.OUTCOMES``)."""
        span = self._spans.pop(task.task_id, None) if self._spans else None
        if span is not None:
            span.end(outcome, error)


# what ``TaskRunner._store`` said -> the run span's fairque.outcome
_OUTCOMES = {"retry scheduled": "retry", "dead-lettered": "dead"}


class RunnerCounts:
    """A worker's counts, kept by its runner."""

    runner: TaskRunner

    @property
    def processed(self) -> int:
        """Tasks acknowledged as done."""
        return self.runner.processed

    @property
    def failed(self) -> int:
        """Failed attempts recorded."""
        return self.runner.failed

    @property
    def cancelled(self) -> int:
        """Tasks acknowledged as cancelled (cancelled while this worker held them)."""
        return self.runner.cancelled
