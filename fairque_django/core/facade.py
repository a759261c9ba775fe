"""The public methods of the four queues, written once per way of driving an operation.

Every operation is a generator (:mod:`.ops`: :class:`~.ops.QueueOps` for one keyspace shard,
:mod:`.shardops`: :class:`~.shardops.ShardedOps` for a sharded prefix); both write the same
:class:`Operations` (names, arguments, results). :class:`QueueFacade` drives them
(:func:`~.ops.drive`: :class:`~.queue.TaskQueue`, :class:`~.sharded.ShardedTaskQueue`) and
:class:`AsyncQueueFacade` awaits them (:func:`~.ops.adrive`: :class:`~.aio.AsyncTaskQueue`,
:class:`~.aio_sharded.AsyncShardedTaskQueue`). A queue lists its operations class before its facade,
so that the type checker holds each implementation to the signature declared here.

The docstrings here are :class:`~.queue.TaskQueue`'s (and :class:`~.aio.AsyncTaskQueue`'s); a sharded
queue gives its methods its own with :func:`document` (same code, another docstring).
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio

from .config import FairQueueConfig
from .config.limits import UNCHANGED, Unchanged
from .models import DLQEntry, Task
from .ops import AsyncShardTransport, DoneTask, Op, ShardTransport, adrive, drive
from .results import CancelResult, ResultSnapshot, TaskResult
from .scripts.commands import FoldResult
from .scripts.pop import PopStep
from .transport import AsyncTransport, Transport

__all__ = ["AsyncClosing", "AsyncQueueFacade", "Operations", "QueueFacade", "document"]

C = TypeVar("C", bound=type)
A = TypeVar("A", bound="AsyncClosing")


class Operations:
    """The operations a facade runs, declared for the type checker only (at run time this class is
    empty, so it never hides an implementation): :class:`~.ops.QueueOps` and
    :class:`~.shardops.ShardedOps` write each of them, and a queue missing one cannot be built."""

    config: FairQueueConfig

    if TYPE_CHECKING:
        @abstractmethod
        def _push(self, task: Task, user_id: str | None, traced: bool = False,
                  encoded: list[Any] | None = None) -> Op[dict[str, Any]]: ...
        @abstractmethod
        def _push_batch(self, tasks: Iterable[Task], user_id: str | None, idempotent: bool = False,
                        traced: bool = False, encoded: Sequence[list[Any]] | None = None) -> Op[dict[str, Any]]: ...
        @abstractmethod
        def _pop_many(self, count: int, worker_id: str | None, lease_seconds: float | None,
                      ) -> Op[tuple[list[Task], float | None]]: ...
        @abstractmethod
        def _pop_step(self, worker_id: str | None, count: int, lease_seconds: float | None, park_ms: int,
                      unpark: str | None) -> Op[PopStep]: ...
        @abstractmethod
        def _take_handed(self, token: str, worker_id: str | None) -> Op[PopStep]: ...
        @abstractmethod
        def _complete_and_pop_many(self, done: Sequence[DoneTask], count: int, worker_id: str | None,
                                   lease_seconds: float | None) -> Op[tuple[list[int], list[Task], float | None]]: ...
        @abstractmethod
        def _flush_metrics(self) -> Op[int]: ...
        @abstractmethod
        def _wait_and_pop(self, worker_id: str | None, timeout: float, lease_seconds: float | None,
                          ) -> Op[tuple[Task | None, float | None]]: ...
        @abstractmethod
        def _wait_for_work(self, worker_id: str | None, timeout: float) -> Op[bool]: ...
        @abstractmethod
        def _complete(self, task: Task, duration: float | None) -> Op[None]: ...
        @abstractmethod
        def _complete_code(self, task: Task, duration: float | None) -> Op[int]: ...
        @abstractmethod
        def _delete_task(self, task_id: str) -> Op[bool]: ...
        @abstractmethod
        def _fail(self, task: Task, error: BaseException | str, traceback: str, failure_type: str, retry: bool,
                  ) -> Op[str]: ...
        @abstractmethod
        def _release(self, tasks: Sequence[Task], count: bool) -> Op[int]: ...
        @abstractmethod
        def _extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None,
                           ) -> Op[tuple[list[str], list[str]]]: ...
        @abstractmethod
        def _set_progress(self, task: Task, fraction: float, message: str) -> Op[bool]: ...
        @abstractmethod
        def _delete(self, task_ids: Sequence[str]) -> Op[list[str]]: ...
        @abstractmethod
        def _cancel(self, task_id: str, user_id: str | None) -> Op[CancelResult]: ...
        @abstractmethod
        def _cancel_tenant(self, user_id: str, running: bool, chunk: int) -> Op[dict[str, int]]: ...
        @abstractmethod
        def _dlq_size(self) -> Op[int]: ...
        @abstractmethod
        def _get_dlq(self, offset: int, limit: int, newest_first: bool) -> Op[list[DLQEntry]]: ...
        @abstractmethod
        def _get_dead(self, task_id: str) -> Op[DLQEntry | None]: ...
        @abstractmethod
        def _requeue_dead(self, task_ids: Iterable[str] | None) -> Op[list[str]]: ...
        @abstractmethod
        def _delete_dead(self, task_ids: Iterable[str] | None) -> Op[list[str]]: ...
        @abstractmethod
        def _purge_dlq(self) -> Op[int]: ...
        @abstractmethod
        def _get_stats(self) -> Op[dict[str, Any]]: ...
        @abstractmethod
        def _fold_idle_tenants(self, window_seconds: float | None, limit: int, max_calls: int) -> Op[FoldResult]: ...
        @abstractmethod
        def _mark_idle_tenants(self, cursor: int, pages: int | None) -> Op[tuple[int, int]]: ...
        @abstractmethod
        def _get_task_state(self, task_id: str) -> Op[dict[str, str] | None]: ...
        @abstractmethod
        def _user_depth(self, user_id: str) -> Op[dict[str, int]]: ...
        @abstractmethod
        def _set_tenant_limits(self, user_id: str, concurrency: int | Unchanged | None,
                               rate: str | Unchanged | None, burst: int | Unchanged | None) -> Op[dict[str, Any]]: ...
        @abstractmethod
        def _tenant_op(self, user_id: str, op: str) -> Op[dict[str, Any]]: ...
        @abstractmethod
        def _get_tenant_limits(self, user_id: str) -> Op[dict[str, Any]]: ...
        @abstractmethod
        def _is_paused(self, user_id: str) -> Op[bool]: ...
        @abstractmethod
        def _store_result(self, task: Task, record: dict[str, Any]) -> Op[None]: ...
        @abstractmethod
        def _store_result_json(self, task: Task, data: str) -> Op[None]: ...
        @abstractmethod
        def _get_result(self, task_id: str, user_id: str) -> Op[dict[str, Any] | None]: ...
        @abstractmethod
        def _read_result(self, task_id: str, user_id: str) -> Op[ResultSnapshot]: ...
        @abstractmethod
        def _next_delayed_seconds(self) -> Op[float | None]: ...
        @abstractmethod
        def _schedule_tick(self, name: str, tick: int | None, token: str, stale_ms: int, skip: bool,
                           ) -> Op[tuple[str, int, list[str]]]: ...
        @abstractmethod
        def _schedule_stale(self, names: Sequence[str], token: str, stale_ms: int) -> Op[dict[str, list[str]]]: ...
        @abstractmethod
        def _schedule_done(self, name: str, ticks: Sequence[str]) -> Op[None]: ...
        @abstractmethod
        def _schedule_states(self, names: Sequence[str]) -> Op[dict[str, dict[str, str]]]: ...
        @abstractmethod
        def _schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str]) -> Op[None]: ...
        @abstractmethod
        def _pushed_tenants(self) -> Op[list[str]]: ...


def document(cls: C, facade: type, doc: Callable[[str], str]) -> C:
    """Give ``cls`` its own copy of each public method it inherits from ``facade``, with the docstring
    ``doc(name)``: the same code, defaults and annotations (a plain function, so ``inspect`` sees
    the same signature and, for a coroutine, a coroutine function), only what ``help()`` says differs."""
    for name, method in vars(facade).items():
        if name.startswith("_") or not inspect.isfunction(method) or name in vars(cls):
            continue
        copy = FunctionType(method.__code__, method.__globals__, name, method.__defaults__, method.__closure__)
        copy.__kwdefaults__ = method.__kwdefaults__
        copy.__annotations__ = dict(method.__annotations__)
        copy.__module__ = cls.__module__
        copy.__qualname__ = f"{cls.__qualname__}.{name}"
        copy.__doc__ = doc(name)
        setattr(cls, name, copy)
    return cls


class QueueFacade(Operations):
    """The public methods of a synchronous queue: each drives its operation on ``transport``."""

    transport: Transport | ShardTransport

    # --- push ---------------------------------------------------------------------------
    def push(self, task: Task, user_id: str | None = None, *, encoded: list[Any] | None = None) -> dict[str, Any]:
        """Queue one task for ``user_id`` (or the task's own / the current tenant's user).

        ``encoded``: the (header, body) ``self.proto.prepare`` made of the task, checked already
        (not checked or encoded again; the Django enqueue path)."""
        return drive(self.transport, self._push(task, user_id, False, encoded))

    def push_batch(self, tasks: Iterable[Task], user_id: str | None = None, *,
                   idempotent: bool = False) -> dict[str, Any]:
        """Queue many tasks: one script call per ``queue.batch_size`` tasks, streamed in one round trip.

        Every task is checked (user, id, priority) before anything is written; bodies are encoded
        chunk by chunk while Redis stores the previous chunk. Should a body of a later chunk fail to
        encode, the tasks this call already stored are deleted again before the error is raised.

        ``idempotent=True`` (the outbox relay): Redis remembers each id pushed for
        ``queue.idempotency_ttl_seconds``, and pushing it again in that time is a duplicate even
        after the task finished; on an error nothing is deleted again, so the caller retries the
        whole batch and the tasks already stored come back as duplicates."""
        return drive(self.transport, self._push_batch(tasks, user_id, idempotent))

    def push_prepared(self, tasks: Sequence[Task], encoded: Sequence[list[Any]]) -> dict[str, Any]:
        """:meth:`push_batch` of tasks checked and encoded already, each by ``self.proto.prepare``
        (``encoded``: their (header, body) pairs, in order): the Django enqueue path checks every
        task before it hands any over, and pushes what it checked without checking it again."""
        return drive(self.transport, self._push_batch(tasks, None, False, False, encoded))

    # --- pop ----------------------------------------------------------------------------
    def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """Lease the next task fairly for a worker, or return None when nothing is ready."""
        return self.pop_reply(worker_id, lease_seconds=lease_seconds)[0]

    def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                  ) -> tuple[Task | None, float | None]:
        """Like :meth:`pop`; also returns seconds until the next delayed task / lease is due."""
        tasks, due = drive(self.transport, self._pop_many(1, worker_id, lease_seconds))
        return (tasks[0] if tasks else None), due

    def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                 ) -> list[Task]:
        """Lease up to ``count`` tasks in one call, each chosen as fairly as :meth:`pop` would."""
        return drive(self.transport, self._pop_many(count, worker_id, lease_seconds))[0]

    def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> tuple[list[Task], float | None]:
        """Like :meth:`pop_many`; also returns seconds until the next delayed task / lease is due
        (when nothing is ready)."""
        return drive(self.transport, self._pop_many(count, worker_id, lease_seconds))

    def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                 park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """One call of ``pop.lua``, the step every pop is made of (public for tests and tools).

        ``park_ms``: a slot about to wait parks for that long when nothing is ready, so that a
        push may lease it a task on its hand list (:meth:`take_handed`); ``unpark``: the token of
        that park, its wait being over (``handed_over`` in the answer: it was no longer parked)."""
        return drive(self.transport, self._pop_step(worker_id, count, lease_seconds, park_ms, unpark))

    def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """The task a push leased to the parked slot ``token`` (taken from its hand list), if any."""
        return drive(self.transport, self._take_handed(token, worker_id))

    def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                         worker_id: str | None = None, lease_seconds: float | None = None,
                         ) -> tuple[int, Task | None, float | None]:
        """Acknowledge ``task`` (storing ``result_json`` if given) and lease the next task, in one
        round trip. Returns (ack code: 1 done / 0 lease lost / -1 gone, next task, seconds due)."""
        codes, tasks, due = self.complete_and_pop_many([(task, duration, result_json)], 1, worker_id=worker_id,
                                                       lease_seconds=lease_seconds)
        return codes[0], (tasks[0] if tasks else None), due

    def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, lease_seconds: float | None = None,
                              ) -> tuple[list[int], list[Task], float | None]:
        """Acknowledge finished tasks, given as (task, run time, result JSON or None), and lease up
        to ``count`` more (none when ``count`` is 0), in one round trip. Returns (an ack code per
        task: 1 done / 0 lease lost / -1 gone, the tasks leased, seconds until something is due
        when none was ready)."""
        return drive(self.transport, self._complete_and_pop_many(done, count, worker_id, lease_seconds))

    def flush_metrics(self) -> int:
        """Write the metrics :attr:`metrics_buffer` gathered from acknowledgements (a worker's: see
        ``core/scripts/buffered.py``) in one call; the number of increments written (0: nothing)."""
        return drive(self.transport, self._flush_metrics())

    def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                     lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """Lease a ready task, or wait up to ``timeout`` for one: all in one round trip.

        A worker with its own partition parks while it waits, and a push that finds nothing
        else ready in the partition leases its task to the parked slot directly (the wait
        returns that task, no pop needed). Otherwise a push's wake-up ends the wait and Redis
        runs the pop at once."""
        return drive(self.transport, self._wait_and_pop(worker_id, timeout, lease_seconds))

    def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Block until a push may have made work ready for the worker (or ``timeout``)."""
        return drive(self.transport, self._wait_for_work(worker_id, timeout))

    # --- finishing ----------------------------------------------------------------------
    def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Acknowledge a popped task as done. Raises LeaseLostError on a late ack."""
        drive(self.transport, self._complete(task, duration))

    def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """Acknowledge a popped task: 1 done, 0 lease lost (late ack rejected), -1 no such task."""
        return drive(self.transport, self._complete_code(task, duration))

    def delete_task(self, task_id: str) -> bool:
        """Finish a task: an ack when this queue leased it (rejected if the lease was lost),
        otherwise remove the task wherever it is. Returns True when something was done."""
        return drive(self.transport, self._delete_task(task_id))

    def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
             failure_type: str = "error", retry: bool = True) -> str:
        """Record a failed attempt: returns ``"retry"`` (scheduled after backoff) or ``"dead"``."""
        return drive(self.transport, self._fail(task, error, traceback, failure_type, retry))

    def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Hand leased tasks back to the front of their queue without counting a failure."""
        return drive(self.transport, self._release(tasks, count))

    def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Heartbeat: renew the leases of running tasks; returns the ids whose lease was lost."""
        return self.extend_leases(tasks, lease_seconds)[0]

    def extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None = None,
                      ) -> tuple[list[str], list[str]]:
        """:meth:`extend`, also answering which of the renewed tasks were cancelled while they run:
        (ids whose lease was lost, ids cancelled). The worker's heartbeat uses it."""
        return drive(self.transport, self._extend_leases(tasks, lease_seconds))

    def set_progress(self, task: Task, fraction: float, message: str = "") -> bool:
        """Store a leased task's progress (``fraction`` 0..1, a short message) under its lease:
        False when the lease is not (or no longer) this task object's. Inside a task, call
        :func:`fairque_django.set_progress` instead."""
        return drive(self.transport, self._set_progress(task, fraction, message))

    def delete(self, *task_ids: str) -> list[str]:
        """Remove tasks wherever they are (queued, delayed, leased or dead)."""
        return drive(self.transport, self._delete(task_ids))

    # --- cancelling -------------------------------------------------------------------------
    def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult:
        """Cancel a task (only ``user_id``'s when given). A queued or delayed task is removed and
        its outcome reads CANCELLED (``cancelled``); a running one is flagged (``cancelling``): its
        worker tells it at the next heartbeat (``fairque_django.cancelled()``), and however it then
        ends it is recorded as cancelled, never retried. ``finished``: it already ended (dead, or
        with ``user_id``: its stored outcome); ``not_found``. Safe to retry (idempotent)."""
        return drive(self.transport, self._cancel(task_id, user_id))

    def cancel_tenant(self, user_id: str, *, running: bool = False, chunk: int = 1000) -> dict[str, int]:
        """Cancel every queued and delayed task of ``user_id`` (``running=True``: flag its running
        ones too), ``chunk`` tasks per script call so that Redis serves others in between. Returns
        ``{"cancelled": n, "cancelling": m}``. Safe to retry."""
        return drive(self.transport, self._cancel_tenant(user_id, running, chunk))

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_size(self) -> int:
        """How many tasks are dead."""
        return drive(self.transport, self._dlq_size())

    def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """Dead tasks with their error, traceback, attempts, user and time of death."""
        return drive(self.transport, self._get_dlq(offset, limit, newest_first))

    def get_dead(self, task_id: str) -> DLQEntry | None:
        """One dead task, or None when ``task_id`` is not dead."""
        return drive(self.transport, self._get_dead(task_id))

    def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead tasks back to their queues (all of them when ``task_ids`` is None)."""
        return drive(self.transport, self._requeue_dead(task_ids))

    def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Delete dead tasks (all of them, i.e. purge, when ``task_ids`` is None)."""
        return drive(self.transport, self._delete_dead(task_ids))

    def purge_dlq(self) -> int:
        """Delete every dead task; how many there were."""
        return drive(self.transport, self._purge_dlq())

    # --- inspection -----------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Counters, gauges (``tasks_active`` = leased now) and per-user / per-priority counts."""
        return drive(self.transport, self._get_stats())

    def fold_idle_tenants(self, *, window_seconds: float | None = None, limit: int = 200,
                          max_calls: int = 50) -> FoldResult:
        """Fold and forget the per-tenant state of tenants idle for longer than the retention window
        (``queue.tenant_retention_seconds`` unless ``window_seconds`` is given): their counters,
        histograms and finish tags (see docs/operations.md). Workers call it from their heartbeat."""
        return drive(self.transport, self._fold_idle_tenants(window_seconds, limit, max_calls))

    def mark_idle_tenants(self, *, cursor: int = 0, pages: int | None = None) -> tuple[int, int]:
        """Mark for the retention sweep the tenants with counters, no unfinished task and no idle mark
        (idle since before the sweep existed), scanning the stats from ``cursor``, at most ``pages``
        pages of ~1000 fields (None: all). Returns (how many were marked, the cursor to go on from: 0
        when done). Workers run the scan once when they start, a little per heartbeat."""
        return drive(self.transport, self._mark_idle_tenants(cursor, pages))

    def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """The state of a task as text (``st``: queued, delayed, leased or dead; the fields of
        its hash, header unpacked), or None."""
        return drive(self.transport, self._get_task_state(task_id))

    def user_depth(self, user_id: str) -> dict[str, int]:
        """Ready tasks of one user, by lane."""
        return drive(self.transport, self._user_depth(user_id))

    # --- tenant limits ------------------------------------------------------------------------
    def set_tenant_limits(self, user_id: str, *, concurrency: int | Unchanged | None = UNCHANGED,
                          rate: str | Unchanged | None = UNCHANGED,
                          burst: int | Unchanged | None = UNCHANGED) -> dict[str, Any]:
        """Set ``user_id``'s runtime limits, fleet-wide: ``concurrency`` (tasks leased at once), ``rate``
        (``"10/s"``, ``"100/m"``, ``"1000/h"``), ``burst`` (tokens that may be used at once, default 1).
        An argument left out keeps its runtime value; ``None`` means no limit (over the settings).
        They win over ``queue.tenant_limits`` until :meth:`clear_tenant_limits`. Takes effect at
        once: a tenant over a lowered cap leaves its rotation (running tasks finish), one under a
        raised cap rejoins at its fair place. Idempotent. Returns :meth:`get_tenant_limits`."""
        return drive(self.transport, self._set_tenant_limits(user_id, concurrency, rate, burst))

    def clear_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """Drop ``user_id``'s runtime limits: the settings apply again. Idempotent. Returns
        :meth:`get_tenant_limits`."""
        return drive(self.transport, self._tenant_op(user_id, "clear"))

    def get_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """The limits in force for ``user_id`` (``concurrency``, ``rate``, ``burst``), where each comes
        from (``<name>_source``: ``"runtime"``, ``"settings:<entry>"`` or ``"default"``), and its
        state: ``paused``, ``paused_since``, ``held`` (why it is out of its rotation with work
        queued: ``"paused"``, ``"cap"``, ``"rate"`` or None), ``leased`` (tasks leased now,
        fleet-wide) and ``next_token_at`` (epoch s, when rate-held)."""
        return drive(self.transport, self._get_tenant_limits(user_id))

    def pause_tenant(self, user_id: str) -> dict[str, Any]:
        """Pause ``user_id``: none of its tasks is leased until :meth:`resume_tenant`; pushes are still
        accepted and running tasks finish. Idempotent. Returns :meth:`get_tenant_limits`."""
        return drive(self.transport, self._tenant_op(user_id, "pause"))

    def resume_tenant(self, user_id: str) -> dict[str, Any]:
        """Resume a paused ``user_id``: it rejoins its rotation at its fair place. Idempotent.
        Returns :meth:`get_tenant_limits`."""
        return drive(self.transport, self._tenant_op(user_id, "resume"))

    def is_paused(self, user_id: str) -> bool:
        """Whether ``user_id`` is paused."""
        return drive(self.transport, self._is_paused(user_id))

    # --- results ----------------------------------------------------------------------------
    def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Keep a task's outcome (JSON) for ``queue.result_ttl_seconds`` under its user's scope."""
        drive(self.transport, self._store_result(task, record))

    def store_result_json(self, task: Task, data: str) -> None:
        """Keep an outcome already encoded as JSON (see :meth:`store_result`)."""
        drive(self.transport, self._store_result_json(task, data))

    def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """The stored outcome of ``task_id`` for ``user_id`` (never another user's), or None."""
        return drive(self.transport, self._get_result(task_id, user_id))

    def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """The status and outcome of ``task_id`` as ``user_id`` may see it (one round trip)."""
        return drive(self.transport, self._read_result(task_id, user_id))

    def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """The handle of ``task_id`` for ``user_id``, read now; :class:`TaskNotFoundError` when
        nothing is known of it for that user."""
        return TaskResult(task_id, user_id, self).refresh()

    def next_delayed_seconds(self) -> float | None:
        """Seconds until the earliest delayed task (scheduled or retry) is due, or None."""
        return drive(self.transport, self._next_delayed_seconds())

    # --- schedules ----------------------------------------------------------------------------
    def schedule_tick(self, name: str, tick: int | None, token: str, *, stale_ms: int = 10_000,
                      skip: bool = False) -> tuple[str, int, list[str]]:
        """Claim a tick of a periodic schedule, exactly once fleet-wide (see :mod:`.scheduler`):
        (status, last tick, stale claims handed to ``token``)."""
        return drive(self.transport, self._schedule_tick(name, tick, token, stale_ms, skip))

    def schedule_stale(self, names: Sequence[str], token: str, *, stale_ms: int = 10_000) -> dict[str, list[str]]:
        """Claims of ``names`` not confirmed for ``stale_ms`` (their pusher died), now handed to
        ``token`` to push again: schedule name -> ticks (one round trip)."""
        return drive(self.transport, self._schedule_stale(names, token, stale_ms))

    def schedule_done(self, name: str, ticks: Sequence[str]) -> None:
        """Confirm the claims of ``ticks``: their tasks are pushed."""
        drive(self.transport, self._schedule_done(name, ticks))

    def schedule_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """The stored state of each schedule (last tick, counts, paused, pending claims)."""
        return drive(self.transport, self._schedule_states(names))

    def schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str] = ()) -> None:
        """Set / delete fields of a schedule's state (pause, resume)."""
        drive(self.transport, self._schedule_set(name, fields, delete))

    def pushed_tenants(self) -> list[str]:
        """Tenants with a push counter in the stats (the tenants the queue has seen)."""
        return drive(self.transport, self._pushed_tenants())


class AsyncClosing:
    """The lifecycle of an asyncio queue: ``async with queue:``, and :meth:`aclose`, which closes the
    client the queue built (``_owns_client``)."""

    client: redis.asyncio.Redis
    _owns_client: bool

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client this queue built (a client passed in stays open for its owner)."""
        if self._owns_client:
            await self.client.aclose()

    async def close(self) -> None:
        """Alias of :meth:`aclose`."""
        await self.aclose()


class AsyncQueueFacade(AsyncClosing, Operations):
    """The public methods of an asyncio queue: each awaits its operation on ``transport``."""

    transport: AsyncTransport | AsyncShardTransport

    # --- push ---------------------------------------------------------------------------
    async def push(self, task: Task, user_id: str | None = None, *,
                   encoded: list[Any] | None = None) -> dict[str, Any]:
        """Async :meth:`TaskQueue.push`."""
        return await adrive(self.transport, self._push(task, user_id, False, encoded))

    async def push_batch(self, tasks: Iterable[Task], user_id: str | None = None, *,
                         idempotent: bool = False) -> dict[str, Any]:
        """Async :meth:`TaskQueue.push_batch`, except that every body is encoded before any is sent
        (a pipeline cannot stream)."""
        return await adrive(self.transport, self._push_batch(tasks, user_id, idempotent))

    async def push_prepared(self, tasks: Sequence[Task], encoded: Sequence[list[Any]]) -> dict[str, Any]:
        """Async :meth:`TaskQueue.push_prepared`."""
        return await adrive(self.transport, self._push_batch(tasks, None, False, False, encoded))

    # --- pop ----------------------------------------------------------------------------
    async def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """Async :meth:`TaskQueue.pop`."""
        return (await self.pop_reply(worker_id, lease_seconds=lease_seconds))[0]

    async def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                        ) -> tuple[Task | None, float | None]:
        """Async :meth:`TaskQueue.pop_reply`."""
        tasks, due = await adrive(self.transport, self._pop_many(1, worker_id, lease_seconds))
        return (tasks[0] if tasks else None), due

    async def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> list[Task]:
        """Async :meth:`TaskQueue.pop_many`."""
        return (await adrive(self.transport, self._pop_many(count, worker_id, lease_seconds)))[0]

    async def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                             ) -> tuple[list[Task], float | None]:
        """Async :meth:`TaskQueue.pop_many_reply`."""
        return await adrive(self.transport, self._pop_many(count, worker_id, lease_seconds))

    async def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                       park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """Async :meth:`TaskQueue.pop_step`."""
        return await adrive(self.transport, self._pop_step(worker_id, count, lease_seconds, park_ms, unpark))

    async def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """Async :meth:`TaskQueue.take_handed`."""
        return await adrive(self.transport, self._take_handed(token, worker_id))

    async def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                               worker_id: str | None = None, lease_seconds: float | None = None,
                               ) -> tuple[int, Task | None, float | None]:
        """Async :meth:`TaskQueue.complete_and_pop`."""
        codes, tasks, due = await self.complete_and_pop_many([(task, duration, result_json)], 1, worker_id=worker_id,
                                                             lease_seconds=lease_seconds)
        return codes[0], (tasks[0] if tasks else None), due

    async def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                                    worker_id: str | None = None, lease_seconds: float | None = None,
                                    ) -> tuple[list[int], list[Task], float | None]:
        """Async :meth:`TaskQueue.complete_and_pop_many`."""
        return await adrive(self.transport, self._complete_and_pop_many(done, count, worker_id, lease_seconds))

    async def flush_metrics(self) -> int:
        """Async :meth:`TaskQueue.flush_metrics`."""
        return await adrive(self.transport, self._flush_metrics())

    async def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                           lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """Async :meth:`TaskQueue.wait_and_pop`."""
        return await adrive(self.transport, self._wait_and_pop(worker_id, timeout, lease_seconds))

    async def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Async :meth:`TaskQueue.wait_for_work`."""
        return await adrive(self.transport, self._wait_for_work(worker_id, timeout))

    # --- finishing ----------------------------------------------------------------------
    async def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Async :meth:`TaskQueue.complete`."""
        await adrive(self.transport, self._complete(task, duration))

    async def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """Async :meth:`TaskQueue.complete_code`."""
        return await adrive(self.transport, self._complete_code(task, duration))

    async def delete_task(self, task_id: str) -> bool:
        """Async :meth:`TaskQueue.delete_task`."""
        return await adrive(self.transport, self._delete_task(task_id))

    async def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
                   failure_type: str = "error", retry: bool = True) -> str:
        """Async :meth:`TaskQueue.fail`."""
        return await adrive(self.transport, self._fail(task, error, traceback, failure_type, retry))

    async def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Async :meth:`TaskQueue.release`."""
        return await adrive(self.transport, self._release(tasks, count))

    async def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Async :meth:`TaskQueue.extend`."""
        return (await self.extend_leases(tasks, lease_seconds))[0]

    async def extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None = None,
                            ) -> tuple[list[str], list[str]]:
        """Async :meth:`TaskQueue.extend_leases`."""
        return await adrive(self.transport, self._extend_leases(tasks, lease_seconds))

    async def set_progress(self, task: Task, fraction: float, message: str = "") -> bool:
        """Async :meth:`TaskQueue.set_progress`."""
        return await adrive(self.transport, self._set_progress(task, fraction, message))

    async def delete(self, *task_ids: str) -> list[str]:
        """Async :meth:`TaskQueue.delete`."""
        return await adrive(self.transport, self._delete(task_ids))

    async def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult:
        """Async :meth:`TaskQueue.cancel`."""
        return await adrive(self.transport, self._cancel(task_id, user_id))

    async def cancel_tenant(self, user_id: str, *, running: bool = False, chunk: int = 1000) -> dict[str, int]:
        """Async :meth:`TaskQueue.cancel_tenant`."""
        return await adrive(self.transport, self._cancel_tenant(user_id, running, chunk))

    # --- dead-letter queue ----------------------------------------------------------------
    async def dlq_size(self) -> int:
        """Async :meth:`TaskQueue.dlq_size`."""
        return await adrive(self.transport, self._dlq_size())

    async def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """Async :meth:`TaskQueue.get_dlq`."""
        return await adrive(self.transport, self._get_dlq(offset, limit, newest_first))

    async def get_dead(self, task_id: str) -> DLQEntry | None:
        """Async :meth:`TaskQueue.get_dead`."""
        return await adrive(self.transport, self._get_dead(task_id))

    async def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Async :meth:`TaskQueue.requeue_dead`."""
        return await adrive(self.transport, self._requeue_dead(task_ids))

    async def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Async :meth:`TaskQueue.delete_dead`."""
        return await adrive(self.transport, self._delete_dead(task_ids))

    async def purge_dlq(self) -> int:
        """Async :meth:`TaskQueue.purge_dlq`."""
        return await adrive(self.transport, self._purge_dlq())

    # --- inspection -----------------------------------------------------------------------
    async def get_stats(self) -> dict[str, Any]:
        """Async :meth:`TaskQueue.get_stats`."""
        return await adrive(self.transport, self._get_stats())

    async def fold_idle_tenants(self, *, window_seconds: float | None = None, limit: int = 200,
                                max_calls: int = 50) -> FoldResult:
        """Async :meth:`TaskQueue.fold_idle_tenants`."""
        return await adrive(self.transport, self._fold_idle_tenants(window_seconds, limit, max_calls))

    async def mark_idle_tenants(self, *, cursor: int = 0, pages: int | None = None) -> tuple[int, int]:
        """Async :meth:`TaskQueue.mark_idle_tenants`."""
        return await adrive(self.transport, self._mark_idle_tenants(cursor, pages))

    async def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """Async :meth:`TaskQueue.get_task_state`."""
        return await adrive(self.transport, self._get_task_state(task_id))

    async def user_depth(self, user_id: str) -> dict[str, int]:
        """Async :meth:`TaskQueue.user_depth`."""
        return await adrive(self.transport, self._user_depth(user_id))

    # --- tenant limits ------------------------------------------------------------------------
    async def set_tenant_limits(self, user_id: str, *, concurrency: int | Unchanged | None = UNCHANGED,
                                rate: str | Unchanged | None = UNCHANGED,
                                burst: int | Unchanged | None = UNCHANGED) -> dict[str, Any]:
        """Async :meth:`TaskQueue.set_tenant_limits`."""
        return await adrive(self.transport, self._set_tenant_limits(user_id, concurrency, rate, burst))

    async def clear_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`TaskQueue.clear_tenant_limits`."""
        return await adrive(self.transport, self._tenant_op(user_id, "clear"))

    async def get_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`TaskQueue.get_tenant_limits`."""
        return await adrive(self.transport, self._get_tenant_limits(user_id))

    async def pause_tenant(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`TaskQueue.pause_tenant`."""
        return await adrive(self.transport, self._tenant_op(user_id, "pause"))

    async def resume_tenant(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`TaskQueue.resume_tenant`."""
        return await adrive(self.transport, self._tenant_op(user_id, "resume"))

    async def is_paused(self, user_id: str) -> bool:
        """Async :meth:`TaskQueue.is_paused`."""
        return await adrive(self.transport, self._is_paused(user_id))

    # --- results ----------------------------------------------------------------------------
    async def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Async :meth:`TaskQueue.store_result`."""
        await adrive(self.transport, self._store_result(task, record))

    async def store_result_json(self, task: Task, data: str) -> None:
        """Async :meth:`TaskQueue.store_result_json`."""
        await adrive(self.transport, self._store_result_json(task, data))

    async def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """Async :meth:`TaskQueue.get_result`."""
        return await adrive(self.transport, self._get_result(task_id, user_id))

    async def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """Async :meth:`TaskQueue.read_result`."""
        return await adrive(self.transport, self._read_result(task_id, user_id))

    async def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """Async :meth:`TaskQueue.result`."""
        return await TaskResult(task_id, user_id, self).arefresh()

    async def next_delayed_seconds(self) -> float | None:
        """Async :meth:`TaskQueue.next_delayed_seconds`."""
        return await adrive(self.transport, self._next_delayed_seconds())

    async def schedule_tick(self, name: str, tick: int | None, token: str, *, stale_ms: int = 10_000,
                            skip: bool = False) -> tuple[str, int, list[str]]:
        """Async :meth:`TaskQueue.schedule_tick`."""
        return await adrive(self.transport, self._schedule_tick(name, tick, token, stale_ms, skip))

    async def schedule_stale(self, names: Sequence[str], token: str, *,
                             stale_ms: int = 10_000) -> dict[str, list[str]]:
        """Async :meth:`TaskQueue.schedule_stale`."""
        return await adrive(self.transport, self._schedule_stale(names, token, stale_ms))

    async def schedule_done(self, name: str, ticks: Sequence[str]) -> None:
        """Async :meth:`TaskQueue.schedule_done`."""
        await adrive(self.transport, self._schedule_done(name, ticks))

    async def schedule_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Async :meth:`TaskQueue.schedule_states`."""
        return await adrive(self.transport, self._schedule_states(names))

    async def schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str] = ()) -> None:
        """Async :meth:`TaskQueue.schedule_set`."""
        await adrive(self.transport, self._schedule_set(name, fields, delete))

    async def pushed_tenants(self) -> list[str]:
        """Async :meth:`TaskQueue.pushed_tenants`."""
        return await adrive(self.transport, self._pushed_tenants())
