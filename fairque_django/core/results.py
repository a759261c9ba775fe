"""Result handles: what ``enqueue`` returns, in the vocabulary of Django's ``TaskResult``.

A worker keeps each task's outcome for ``queue.result_ttl_seconds`` under the task's user (a task
opts out with ``store_result=False``). A handle reads the task's state and that record: the task
hash while the task is queued, running or dead, the record once it succeeded. Both are scoped to
one user: a handle for another tenant's task id finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from .codec import count
from .context import resolve_queue, running_task
from .errors import (
    FairQueueError,
    ResultNotReadyError,
    ResultTimeoutError,
    SerializationError,
    TaskFailedError,
    TaskNotFoundError,
    TaskValidationError,
)
from .models import Task, dumps

__all__ = ["CancelResult", "Progress", "ResultSnapshot", "TaskError", "TaskResult", "TaskStatus", "aset_progress",
           "failure_record", "set_progress", "success_record"]

logger = logging.getLogger("fairque_django.progress")


class TaskStatus(str, Enum):
    """Where a task is, as Django's ``TaskResultStatus`` names it."""

    READY = "READY"  # queued, delayed, or waiting for a retry
    RUNNING = "RUNNING"  # leased by a worker
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"  # dead-lettered
    CANCELLED = "CANCELLED"


FINISHED = frozenset({TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED})


class CancelResult(str, Enum):
    """What ``cancel(task_id)`` did (a ``str``: compares equal to its value)."""

    CANCELLED = "cancelled"  # it was queued or delayed: removed, its handle reads CANCELLED
    CANCELLING = "cancelling"  # it runs: flagged; its worker tells it at the next heartbeat
    NOT_FOUND = "not_found"  # no such task (or another tenant's)
    FINISHED = "finished"  # it already ended (dead-lettered, or succeeded / failed / was cancelled)


class ResultReader(Protocol):
    """What a handle reads through: :class:`~.queue.TaskQueue` (``read_result`` returns a snapshot)."""

    config: Any

    def read_result(self, task_id: str, user_id: str) -> ResultSnapshot: ...

    def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult: ...


class AsyncResultReader(Protocol):
    """:class:`~.aio.AsyncTaskQueue` (``read_result`` is a coroutine)."""

    config: Any

    async def read_result(self, task_id: str, user_id: str) -> ResultSnapshot: ...

    async def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult: ...

# the task hash's state field (st) -> status
_STATE_STATUS = {"queued": TaskStatus.READY, "delayed": TaskStatus.READY, "leased": TaskStatus.RUNNING,
                 "dead": TaskStatus.FAILED, "waiting": TaskStatus.READY}


@dataclass(frozen=True, slots=True)
class TaskError:
    """One failed attempt: the exception's type name, its message and traceback."""

    error_type: str
    message: str
    traceback: str = ""

    @property
    def exception_class_path(self) -> str:
        """Django's name for :attr:`error_type`."""
        return self.error_type


@dataclass(frozen=True, slots=True)
class ResultSnapshot:
    """What Redis says about one task of one user at one moment (``found`` False: nothing)."""

    found: bool
    status: TaskStatus = TaskStatus.READY
    return_value: Any = None
    errors: tuple[TaskError, ...] = ()
    attempts: int = 0
    enqueued_at: float | None = None
    finished_at: float | None = None
    value_error: str | None = None  # the return value could not be stored (not JSON)
    progress: Progress | None = None  # what the running attempt last reported (set_progress)

    @classmethod
    def read(cls, user_id: str, fields: Mapping[str, str] | None, raw_record: bytes | str | None) -> ResultSnapshot:
        """Decode a task hash (as :func:`~.scripts.commands.task_fields` gives it, or None) and a stored
        result record (JSON, or None). A hash of another user is ignored."""
        record = _load_record(raw_record)
        if fields is not None and fields.get("u") == user_id and fields.get("st") in _STATE_STATUS:
            return cls._from_task(fields, record)
        if record is not None:
            return cls._from_record(record)
        return cls(found=False)

    @classmethod
    def _from_task(cls, f: Mapping[str, str], record: Mapping[str, Any] | None) -> ResultSnapshot:
        status = _STATE_STATUS[f["st"]]
        errors: tuple[TaskError, ...] = ()
        if f.get("err"):  # the last failure (a task waiting for its retry keeps it too)
            errors = (TaskError(f.get("et", "") or "Error", f["err"], f.get("tb", "")),)
        enqueued = None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            body = json.loads(f.get("b", "{}"))
            enqueued = float(body["c"]) / 1000 if "c" in body else float(body.get("created"))
        finished = (count(f.get("dt")) or 0) / 1000.0 if status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else None
        if record is not None and status is TaskStatus.FAILED and not errors:
            errors = _record_errors(record)
        return cls(found=True, status=status, errors=errors, attempts=_int(f.get("a")), enqueued_at=enqueued,
                   finished_at=finished or None, progress=progress_of(f))

    @classmethod
    def _from_record(cls, record: Mapping[str, Any]) -> ResultSnapshot:
        try:
            status = TaskStatus(record.get("status") or "READY")
        except ValueError:
            status = TaskStatus.FAILED
            return cls(found=True, status=status,
                       errors=(TaskError("CorruptResult", f"unknown status {record.get('status')!r}"),))
        finished = record.get("finished_at")
        return cls(found=True, status=status, return_value=record.get("return_value"),
                   errors=_record_errors(record), attempts=_int(record.get("attempts")),
                   enqueued_at=_float(record.get("enqueued_at")),
                   finished_at=_float(finished) if status in FINISHED else None,
                   value_error=record.get("return_value_error"))


def _load_record(raw: bytes | str | None) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return {"status": "FAILED", "error": "the stored result is not JSON", "error_type": "CorruptResult"}
    return record if isinstance(record, dict) else None


def _record_errors(record: Mapping[str, Any]) -> tuple[TaskError, ...]:
    errors = [TaskError(str(e.get("exception_class_path", "")), "", str(e.get("traceback", "")))
              for e in record.get("errors") or () if isinstance(e, dict)]  # the django.tasks backend's records
    if record.get("error") is not None:
        errors.append(TaskError(str(record.get("error_type") or "Error"), str(record["error"]),
                                str(record.get("traceback") or "")))
    return tuple(errors)


def _int(value: Any) -> int:
    return count(value) or 0 if isinstance(value, (str, bytes, int, float)) else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- progress ------------------------------------------------------------------------------
MAX_PROGRESS_MESSAGE = 200  # characters of a progress message kept (a longer one is cut)
PROGRESS_FIELD = "pg"  # the task hash's field: "<lease token>\t<fraction>\t<ms>\t<message>" (progress.lua)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running task got: ``fraction`` 0..1, a short ``message``, ``updated_at`` (epoch
    seconds, Redis's clock)."""

    fraction: float
    message: str
    updated_at: float

    @property
    def percent(self) -> int:
        """``fraction`` as a whole percentage."""
        return round(self.fraction * 100)

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "percent": self.percent, "message": self.message,
                "updated_at": self.updated_at}


def check_progress(fraction: object, message: object) -> tuple[float, str]:
    """``fraction`` as a float in 0..1 and ``message`` cut to :data:`MAX_PROGRESS_MESSAGE`
    characters; :class:`TaskValidationError` for anything else."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction) \
            or not 0 <= fraction <= 1:
        raise TaskValidationError(f"progress must be a number from 0 to 1, got {fraction!r}")
    if not isinstance(message, str):
        raise TaskValidationError(f"a progress message must be a str, got {type(message).__name__}")
    if len(message) > MAX_PROGRESS_MESSAGE:
        message = message[:MAX_PROGRESS_MESSAGE - 1] + "…"
    return float(fraction), message


def progress_of(fields: Mapping[str, str]) -> Progress | None:
    """The progress a task hash (text fields) holds for its current lease, or None: none reported,
    the task is not running, the value was written under an earlier attempt's token, or garbage."""
    raw = fields.get(PROGRESS_FIELD)
    if not raw or fields.get("st") != "leased":
        return None
    parts = raw.split("\t", 3)
    if len(parts) != 4 or not parts[0] or parts[0] != fields.get("tok"):
        return None
    try:
        fraction, ms = float(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not 0 <= fraction <= 1:
        return None
    return Progress(fraction, parts[3], ms / 1000.0)


def set_progress(fraction: float, message: str = "") -> bool:
    """Inside a running task: report how far it got (``fraction`` 0..1, ``message`` up to 200
    characters), for its result handle's ``progress``, the admin and ``fairque_stats``.

    One Redis call, fenced by the task's lease: an attempt whose lease was taken over writes
    nothing. Returns True when stored; False outside a task run by a worker (e.g. ``task()``
    called directly), when the lease is no longer this attempt's, or when Redis could not be
    reached (logged: progress is advisory and never fails the task)."""
    fraction, message = check_progress(fraction, message)
    running = running_task()
    if running is None or running.queue is None or not running.task.lease_token:
        return False
    try:
        return running.queue.set_progress(running.task, fraction, message)
    except FairQueueError as exc:
        logger.warning("fairque: progress of task %s not stored: %s", running.task.task_id, exc)
        return False


async def aset_progress(fraction: float, message: str = "") -> bool:
    """:func:`set_progress` for ``async def`` tasks (the call runs in a thread, off the loop)."""
    check_progress(fraction, message)
    return await asyncio.to_thread(set_progress, fraction, message)


# --- records the workers store ---------------------------------------------------------------
def _keeps(task: Task, default: bool) -> bool:
    """Whether ``task``'s outcome is kept: its own ``store_result``, else ``queue.store_results``."""
    wanted = task.metadata.get("store_result")
    return default if wanted is None else wanted is True


def success_record(task: Task, value: Any, default: bool = True) -> str | None:
    """The JSON record a worker stores when ``task`` returned ``value``, or None when its outcome is
    not kept (``store_result=False``, or ``default`` — ``queue.store_results`` — is False and the
    task did not ask). A value that is not JSON fails the task when it asked for its result
    explicitly (``store_result=True``, raises :class:`SerializationError`); otherwise the record says
    why the value is missing instead."""
    if not _keeps(task, default):
        return None
    wanted = task.metadata.get("store_result")
    record: dict[str, Any] = {"status": TaskStatus.SUCCESSFUL.value, "return_value": value,
                              "attempts": task.attempts, "finished_at": round(time.time(), 3)}
    try:
        return dumps(record, what=f"the return value of {task.func_name or 'task ' + task.task_id}")
    except SerializationError as exc:
        if wanted is True:
            raise
        record["return_value"] = None
        record["return_value_error"] = str(exc)
        return dumps(record)


def failure_record(task: Task, error: BaseException, tb: str, default: bool = True) -> dict[str, Any] | None:
    """The record a worker stores when ``task`` failed for good (None: its outcome is not kept)."""
    if not _keeps(task, default):
        return None
    return {"status": TaskStatus.FAILED.value, "error": str(error), "error_type": type(error).__name__,
            "traceback": tb, "attempts": task.attempts, "finished_at": round(time.time(), 3)}


# --- the handle -------------------------------------------------------------------------------
class TaskResult:
    """The handle of one enqueued task: ``.id``, ``.status``, ``.return_value``, ``.errors``,
    ``.progress``, ``.refresh()``, ``.wait(timeout=...)`` and ``await .await_result(timeout=...)``.

    Its fields are what the last :meth:`refresh` (or ``wait``) read; a new handle says ``READY``.
    Rebuild one from a stored id with ``TaskQueue.result(id, user_id=...)`` or, in Django,
    ``fairque_django.result(id, user=...)``."""

    __slots__ = ("_queue", "_snapshot", "id", "stores_result", "user_id")

    def __init__(self, task_id: str, user_id: str, queue: ResultReader | AsyncResultReader | None = None, *,
                 stores_result: bool = True, snapshot: ResultSnapshot | None = None) -> None:
        self.id = task_id
        self.user_id = user_id
        self.stores_result = stores_result
        self._queue = queue
        self._snapshot = snapshot if snapshot is not None else ResultSnapshot(found=False)

    @classmethod
    def for_task(cls, task: Task, queue: ResultReader | AsyncResultReader | None = None) -> TaskResult:
        """A new handle for a task just pushed (its user id set)."""
        default = queue.config.queue.store_results if queue is not None else True
        return cls(task.task_id, task.user_id or "", queue, stores_result=_keeps(task, default))

    # --- what the last read said ---------------------------------------------------------
    @property
    def status(self) -> TaskStatus:
        return self._snapshot.status

    @property
    def is_finished(self) -> bool:
        return self._snapshot.status in FINISHED

    @property
    def errors(self) -> list[TaskError]:
        return list(self._snapshot.errors)

    @property
    def attempts(self) -> int:
        return self._snapshot.attempts

    @property
    def enqueued_at(self) -> float | None:
        return self._snapshot.enqueued_at

    @property
    def finished_at(self) -> float | None:
        return self._snapshot.finished_at

    @property
    def progress(self) -> Progress | None:
        """What the running attempt last reported with :func:`set_progress` (as of the last
        :meth:`refresh`), or None: nothing reported, not running (queued, waiting for a retry,
        finished), or reported by an earlier attempt."""
        return self._snapshot.progress

    @property
    def return_value(self) -> Any:
        """The task's return value; raises :class:`TaskFailedError` if it failed and
        :class:`ResultNotReadyError` if it has not finished (as Django's ``TaskResult`` does)."""
        snap = self._snapshot
        if snap.status is TaskStatus.SUCCESSFUL:
            if snap.value_error is not None:
                raise SerializationError(f"task {self.id} succeeded but its return value was not stored: "
                                         f"{snap.value_error}")
            return snap.return_value
        if snap.status in FINISHED:
            raise TaskFailedError(self._failure_message(), self)
        raise ResultNotReadyError(f"task {self.id} has not finished yet (status {snap.status.value})")

    # --- reading Redis -------------------------------------------------------------------
    def _sync_queue(self) -> ResultReader:

        queue = self._queue if self._queue is not None else resolve_queue("a result handle")
        if inspect.iscoroutinefunction(queue.read_result):
            raise FairQueueError("this handle belongs to an AsyncTaskQueue: use `await handle.arefresh()` "
                                 "or `await handle.await_result()`")
        return queue  # type: ignore[return-value]  # a sync reader (checked above)

    def _apply(self, snapshot: ResultSnapshot) -> bool:
        if snapshot.found:
            self._snapshot = snapshot
        return snapshot.found

    def refresh(self) -> TaskResult:
        """Read the task's current status and outcome; raises :class:`TaskNotFoundError` when Redis
        knows nothing of it for this user (an unknown id, another tenant's task, an enqueue whose
        transaction has not committed, or a result older than ``result_ttl_seconds``)."""
        if not self._apply(self._sync_queue().read_result(self.id, self.user_id)):
            raise TaskNotFoundError(self._not_found_message())
        return self

    async def arefresh(self) -> TaskResult:
        """:meth:`refresh` for asyncio code."""
        if not self._apply(await self._aread()):
            raise TaskNotFoundError(self._not_found_message())
        return self

    async def _aread(self) -> ResultSnapshot:
        if self._queue is not None and inspect.iscoroutinefunction(self._queue.read_result):
            return await self._queue.read_result(self.id, self.user_id)  # type: ignore[no-any-return]
        queue = self._sync_queue()
        return await asyncio.to_thread(queue.read_result, self.id, self.user_id)

    def wait(self, timeout: float | None = None, *, interval: float = 0.05) -> Any:
        """Block until the task finished and return its value. Raises :class:`TaskFailedError` when
        it failed, :class:`ResultTimeoutError` after ``timeout`` seconds (None: wait for ever)."""
        self._check_waitable()
        pauses = self._pauses(timeout, interval)
        while True:
            self._apply(self._sync_queue().read_result(self.id, self.user_id))
            if self.is_finished:
                return self.return_value
            time.sleep(next(pauses))

    async def await_result(self, timeout: float | None = None, *, interval: float = 0.05) -> Any:
        """:meth:`wait` for asyncio code."""
        self._check_waitable()
        pauses = self._pauses(timeout, interval)
        while True:
            self._apply(await self._aread())
            if self.is_finished:
                return self.return_value
            await asyncio.sleep(next(pauses))

    def _pauses(self, timeout: float | None, interval: float) -> Iterator[float]:
        """The pauses between the reads of a wait: from 5 ms doubling up to ``interval``, never past
        the deadline; :class:`ResultTimeoutError` once it has passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(0.005, interval)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ResultTimeoutError(self._timeout_message(timeout))
            yield pause if left is None else min(pause, left)
            pause = min(pause * 2, interval)

    # --- cancelling -----------------------------------------------------------------------
    def cancel(self) -> CancelResult:
        """Cancel the task (see ``TaskQueue.cancel``): ``cancelled`` when it was waiting, ``cancelling``
        when it runs (it stops when it looks, and reads CANCELLED once it ended), ``finished`` or
        ``not_found`` otherwise. Does not refresh the handle."""
        return self._sync_queue().cancel(self.id, user_id=self.user_id)

    async def acancel(self) -> CancelResult:
        """:meth:`cancel` for asyncio code."""
        if self._queue is not None and inspect.iscoroutinefunction(self._queue.cancel):
            return await self._queue.cancel(self.id, user_id=self.user_id)  # type: ignore[no-any-return]
        queue = self._sync_queue()
        return await asyncio.to_thread(queue.cancel, self.id, user_id=self.user_id)

    # --- messages --------------------------------------------------------------------------
    def _check_waitable(self) -> None:
        if not self.stores_result:
            raise FairQueueError(f"task {self.id} keeps no outcome (store_result=False, or queue.store_results "
                                 "is False and the task did not ask for it): there is nothing to wait for")

    def _failure_message(self) -> str:
        last = self._snapshot.errors[-1] if self._snapshot.errors else None
        why = f"{last.error_type}: {last.message}" if last is not None else "no error recorded"
        return f"task {self.id} {self._snapshot.status.value.lower()} ({why})"

    def _not_found_message(self) -> str:
        return (f"no task or result {self.id!r} for user {self.user_id!r}: unknown id, another tenant's task, "
                "an enqueue whose transaction has not committed yet, or a result older than "
                "queue.result_ttl_seconds")

    def _timeout_message(self, timeout: float | None) -> str:
        seen = (f"last status {self.status.value}" if self._snapshot.found
                else "never found in Redis: " + self._not_found_message())
        return f"task {self.id} did not finish within {timeout:g}s ({seen})"

    def __repr__(self) -> str:
        return f"<TaskResult {self.id} user={self.user_id!r} status={self.status.value}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TaskResult):
            return (self.id, self.user_id) == (other.id, other.user_id)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.id, self.user_id))
