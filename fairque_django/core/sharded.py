"""The queue of a sharded prefix (``queue.shards`` > 1): :class:`ShardedTaskQueue`, and :func:`open_queue`,
which gives a plain :class:`~.queue.TaskQueue` when the prefix has one shard.

A :class:`ShardedTaskQueue` holds one :class:`~.queue.TaskQueue` per keyspace shard (``shard_queues``,
sharing one client; every script call of one of them touches that shard's keys only) and the home
queue (``home_queue``: the workers, heartbeats, schedules, samples and alerts of the prefix). It has
the public methods of :class:`~.queue.TaskQueue` and routes each:

- by tenant (a tenant lives in one shard, :class:`~.shards.ShardMap`): push (a batch is split into one
  stream per shard), ack, fail, release, extend, progress, results, cancel with a user, the tenant
  limits, pause, ``cancel_tenant``, ``user_depth``. A dependency must live in the dependent's shard
  (dependencies are read atomically by ``push.lua``): another shard's is refused
  (:class:`~.errors.DependencyError`); pin related tenants to one shard (``queue.shard_pins``);
- by task id only (``get_task_state``, ``delete``, ``delete_task``, ``cancel`` without a user,
  ``get_dead``, ``requeue_dead`` / ``delete_dead`` of ids): every shard is asked, one call each
  (``queue.shards`` round trips: ids do not name their shard);
- reads that span tenants merge: ``get_stats`` (counters and gauges summed, the per-user and
  per-priority dicts merged), ``dlq_size``, ``get_dlq`` (each shard's first ``offset + limit``,
  merged by time of death), ``purge_dlq``, ``pushed_tenants``, ``next_delayed_seconds`` (the
  earliest), the retention sweep (each shard);
- a slot's round trip goes to every shard it concerns at once (:func:`~.ops.drive_together`: one
  pipeline, on a cluster one write to each master): its acks, each to the shard its task was leased
  from, and the pops :meth:`~.shard_turns.ShardTurns.allot` gives out. A batch is turns of a weighted
  round robin over the shards with ready work (each turn worth ``ceil(count / BATCH_SHARDS)`` tasks,
  so at most ``BATCH_SHARDS`` shards a batch), so over the batches each shard leases in proportion to
  its tenants with ready work, wherever the tenants live. When nothing was leased, the other shards
  are asked in turn (an empty pop asks every shard once, which also runs every shard's timers:
  delayed promotion, lease recovery; a shard with no ready work is also visited on a timer).
  Fairness is exact within a shard; across shards a shard's turns follow its tenants with ready
  work (see docs/operations.md for the bound).
- an idle worker waits on the *home* wake lists of its partitions (``{prefix}:wake:<part>``, one
  slot), where a push that made a tenant join its shard's rotation leaves a token (``push.lua``
  reports it: one more command on such a push only). There is no parking / hand-off and no
  prefetch on a sharded prefix (the worker turns prefetch off).

Every operation is written once, in :mod:`.shardops` (generators driven on a :class:`~.ops.ShardTransport`
here); :class:`~.aio.AsyncShardedTaskQueue` (:func:`~.aio.open_async_queue`) awaits the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

import redis

from .config import FairQueueConfig
from .config.limits import UNCHANGED, Unchanged
from .connection import get_client
from .context import CurrentQueue
from .models import DLQEntry, Task
from .ops import ShardTransport, drive
from .queue import TaskQueue
from .results import CancelResult, ResultSnapshot, TaskResult
from .scripts.commands import FoldResult
from .scripts.pop import PopStep
from .shardops import ShardedOps, merge_stats
from .transport import HeldConnection

__all__ = ["AnyQueue", "ShardedTaskQueue", "merge_stats", "open_queue"]

T = TypeVar("T")


class Done(Generic[T]):
    """The result of a round trip already made (what :meth:`ShardedTaskQueue.send_complete_and_pop`
    returns: a sharded queue does not split a round trip in two)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def result(self) -> T:
        return self._value


class ShardedTaskQueue(CurrentQueue, ShardedOps[TaskQueue]):
    """A fair multi-tenant task queue over ``queue.shards`` keyspace shards (see the module doc)."""

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self.client: redis.Redis = client if client is not None else get_client(config.redis)
        home = TaskQueue(config, self.client, worker_id=worker_id)
        super().__init__(config, home, [TaskQueue(config, self.client, worker_id=worker_id, shard=n)
                                        for n in range(config.queue.shards)])
        self.transport = ShardTransport(home.transport, [queue.transport for queue in self.shard_queues])

    # --- push ---------------------------------------------------------------------------
    def push(self, task: Task, user_id: str | None = None, *, encoded: list[Any] | None = None) -> dict[str, Any]:
        """As :meth:`TaskQueue.push`, into the shard of the task's user."""
        return drive(self.transport, self._s_push(task, user_id, encoded))

    def push_batch(self, tasks: Iterable[Task], user_id: str | None = None, *,
                   idempotent: bool = False) -> dict[str, Any]:
        """As :meth:`TaskQueue.push_batch`: every task is checked first, then one stream per shard. When
        a later shard's stream fails (a body that does not encode), what earlier shards stored is
        deleted again (not with ``idempotent``, as for one shard)."""
        return drive(self.transport, self._s_push_batch(tasks, user_id, idempotent))

    def push_prepared(self, tasks: Sequence[Task], encoded: Sequence[list[Any]]) -> dict[str, Any]:
        """As :meth:`TaskQueue.push_prepared`."""
        return drive(self.transport, self._s_push_prepared(tasks, encoded))

    # --- pop ----------------------------------------------------------------------------
    def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """As :meth:`TaskQueue.pop`: the shards in rotation, from the next start shard."""
        tasks, _ = drive(self.transport, self._s_pop_many(1, worker_id, lease_seconds))
        return tasks[0] if tasks else None

    def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                  ) -> tuple[Task | None, float | None]:
        """As :meth:`TaskQueue.pop_reply` (due: the earliest of the shards asked)."""
        tasks, due = drive(self.transport, self._s_pop_many(1, worker_id, lease_seconds))
        return (tasks[0] if tasks else None), due

    def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                 ) -> list[Task]:
        """As :meth:`TaskQueue.pop_many`."""
        return drive(self.transport, self._s_pop_many(count, worker_id, lease_seconds))[0]

    def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> tuple[list[Task], float | None]:
        """As :meth:`TaskQueue.pop_many_reply`: the shards the rotation allots tasks to
        (:meth:`complete_and_pop_many` with nothing to acknowledge), then the others until one leases
        something (an empty pop asks every shard once)."""
        return drive(self.transport, self._s_pop_many(count, worker_id, lease_seconds))

    def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                 park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """As :meth:`TaskQueue.pop_step`, in the next start shard of the rotation. A sharded prefix does
        not park (``park_ms`` and ``unpark`` are ignored: no push hands a task over)."""
        return drive(self.transport, self._s_pop_step(worker_id, count, lease_seconds))

    def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """As :meth:`TaskQueue.take_handed`: never anything (a sharded prefix does not park)."""
        return drive(self.transport, self._s_take_handed(token))

    def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                         worker_id: str | None = None, lease_seconds: float | None = None,
                         ) -> tuple[int, Task | None, float | None]:
        """As :meth:`TaskQueue.complete_and_pop`."""
        codes, tasks, due = drive(self.transport, self._s_complete_and_pop_many(
            [(task, duration, result_json)], 1, worker_id, lease_seconds))
        return codes[0], (tasks[0] if tasks else None), due

    def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, lease_seconds: float | None = None,
                              ) -> tuple[list[int], list[Task], float | None]:
        """As :meth:`TaskQueue.complete_and_pop_many`: the acks of each shard and the pops the rotation
        allots (:meth:`ShardTurns.allot`) go in one round trip, to every shard concerned at once; the tasks
        leased come interleaved shard by shard. When none was leased, the next shards are asked."""
        return drive(self.transport, self._s_complete_and_pop_many(done, count, worker_id, lease_seconds))

    def flush_metrics(self) -> int:
        """As :meth:`TaskQueue.flush_metrics`: each shard's buffer."""
        return drive(self.transport, self._s_flush_metrics())

    def send_complete_and_pop(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, via: HeldConnection | None = None,
                              ) -> Done[tuple[list[int], list[Task], float | None]]:
        """:meth:`complete_and_pop_many`, made now (a sharded prefix does not prefetch: its round trips
        may go to several shards); ``result()`` returns its result."""
        return Done(self.complete_and_pop_many(done, count, worker_id=worker_id))

    def hold_connection(self) -> HeldConnection | None:
        """None: a sharded queue does not prefetch."""
        return None

    def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                     lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """As :meth:`TaskQueue.wait_and_pop`: a pop in rotation (every shard when none is ready), then a
        wait on the home wake lists of the worker's partitions (up to ``timeout``, or until something is
        due), then, when a push woke it, a pop from the shard it woke on. No parking: no push hands a
        task over. The idle slots of one queue share their scans: a slot skips its first pop when
        another found every shard empty less than ``timeout`` ago and nothing was leased since (a push
        since then left a token; a woken slot that leases a task passes the token on, as ``pop.lua``
        wakes the next waiter of a tenant with more work)."""
        return drive(self.transport, self._s_wait_and_pop(worker_id, timeout, lease_seconds))

    def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """As :meth:`TaskQueue.wait_for_work`, on the home wake lists of the worker's partitions (and of
        those it took over: orphan takeover)."""
        return drive(self.transport, self._wait(worker_id, timeout)) is not None

    # --- finishing ----------------------------------------------------------------------
    def complete(self, task: Task, *, duration: float | None = None) -> None:
        """As :meth:`TaskQueue.complete`."""
        drive(self.transport, self._on_task(task, self._of_task(task)._complete(task, duration)))

    def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """As :meth:`TaskQueue.complete_code`."""
        op = self._of_task(task)._ack(task.task_id, task.lease_token or "", duration)
        return int(drive(self.transport, self._on_task(task, op)))

    def delete_task(self, task_id: str) -> bool:
        """As :meth:`TaskQueue.delete_task`: the shard whose queue leased it, else every shard."""
        return drive(self.transport, self._s_delete_task(task_id))

    def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
             failure_type: str = "error", retry: bool = True) -> str:
        """As :meth:`TaskQueue.fail`."""
        op = self._of_task(task)._fail(task, error, traceback, failure_type, retry)
        return str(drive(self.transport, self._on_task(task, op)))

    def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """As :meth:`TaskQueue.release`, each task in its shard."""
        return drive(self.transport, self._s_release(tasks, count))

    def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """As :meth:`TaskQueue.extend`."""
        return drive(self.transport, self._s_extend_leases(tasks, lease_seconds))[0]

    def extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None = None,
                      ) -> tuple[list[str], list[str]]:
        """As :meth:`TaskQueue.extend_leases`: one call per shard holding some of ``tasks``."""
        return drive(self.transport, self._s_extend_leases(tasks, lease_seconds))

    def set_progress(self, task: Task, fraction: float, message: str = "") -> bool:
        """As :meth:`TaskQueue.set_progress`."""
        op = self._of_task(task)._set_progress(task, fraction, message)
        return bool(drive(self.transport, self._on_task(task, op)))

    def delete(self, *task_ids: str) -> list[str]:
        """As :meth:`TaskQueue.delete`: every shard is asked (one call each)."""
        return drive(self.transport, self._s_delete(task_ids))

    # --- cancelling -------------------------------------------------------------------------
    def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult:
        """As :meth:`TaskQueue.cancel`: the user's shard, or (no user) every shard until one knows it."""
        return drive(self.transport, self._s_cancel(task_id, user_id))

    def cancel_tenant(self, user_id: str, *, running: bool = False, chunk: int = 1000) -> dict[str, int]:
        """As :meth:`TaskQueue.cancel_tenant`, in the tenant's shard."""
        op = self.queue_of(user_id)._cancel_tenant(user_id, running, chunk)
        return dict(drive(self.transport, self._on_user(user_id, op)))

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_size(self) -> int:
        """As :meth:`TaskQueue.dlq_size`: the sum over the shards."""
        return sum(drive(self.transport, self._each(lambda q: q._dlq_size())))

    def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """As :meth:`TaskQueue.get_dlq`, across the shards: each shard's first ``offset + limit`` entries,
        merged by time of death (so a deep page costs ``shards * (offset + limit)`` entries read)."""
        return drive(self.transport, self._s_get_dlq(offset, limit, newest_first))

    def get_dead(self, task_id: str) -> DLQEntry | None:
        """As :meth:`TaskQueue.get_dead`: every shard is asked until one has it."""
        found: DLQEntry | None = drive(self.transport, self._first(lambda q: q._get_dead(task_id)))
        return found

    def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """As :meth:`TaskQueue.requeue_dead`, in every shard."""
        return drive(self.transport, self._s_dlq_script(True, task_ids))

    def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """As :meth:`TaskQueue.delete_dead`, in every shard."""
        return drive(self.transport, self._s_dlq_script(False, task_ids))

    def purge_dlq(self) -> int:
        """As :meth:`TaskQueue.purge_dlq`: every shard's."""
        return sum(drive(self.transport, self._each(lambda q: q._purge_dlq())))

    # --- inspection -----------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """As :meth:`TaskQueue.get_stats`, the shards' merged: numbers summed, per-user and per-priority
        counts merged (a user lives in one shard), problems joined."""
        return merge_stats(drive(self.transport, self._each(lambda q: q._get_stats())))

    def fold_idle_tenants(self, *, window_seconds: float | None = None, limit: int = 200,
                          max_calls: int = 50) -> FoldResult:
        """As :meth:`TaskQueue.fold_idle_tenants`, in every shard (``more``: in any)."""
        return drive(self.transport, self._s_fold_idle_tenants(window_seconds, limit, max_calls))

    def mark_idle_tenants(self, *, cursor: int = 0, pages: int | None = None) -> tuple[int, int]:
        """As :meth:`TaskQueue.mark_idle_tenants`, the shards one after the other: the cursor names the
        shard and where its scan goes on (``inner * shards + shard``; 0 at the start and when done)."""
        return drive(self.transport, self._s_mark_idle_tenants(cursor, pages))

    def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """As :meth:`TaskQueue.get_task_state`: every shard is asked until one has it."""
        found: dict[str, str] | None = drive(self.transport, self._first(lambda q: q._get_task_state(task_id)))
        return found

    def user_depth(self, user_id: str) -> dict[str, int]:
        """As :meth:`TaskQueue.user_depth`."""
        return dict(drive(self.transport, self._on_user(user_id, self.queue_of(user_id)._user_depth(user_id))))

    # --- tenant limits ------------------------------------------------------------------------
    def set_tenant_limits(self, user_id: str, *, concurrency: int | Unchanged | None = UNCHANGED,
                          rate: str | Unchanged | None = UNCHANGED,
                          burst: int | Unchanged | None = UNCHANGED) -> dict[str, Any]:
        """As :meth:`TaskQueue.set_tenant_limits`, in the tenant's shard."""
        return drive(self.transport, self._s_set_tenant_limits(user_id, concurrency, rate, burst))

    def clear_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.clear_tenant_limits`."""
        return drive(self.transport, self._s_tenant_op(user_id, "clear"))

    def get_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.get_tenant_limits`."""
        return dict(drive(self.transport, self._on_user(
            user_id, self.queue_of(user_id)._get_tenant_limits(user_id))))

    def pause_tenant(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.pause_tenant`."""
        return drive(self.transport, self._s_tenant_op(user_id, "pause"))

    def resume_tenant(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.resume_tenant` (the idle workers are woken on the home wake lists)."""
        return drive(self.transport, self._s_tenant_op(user_id, "resume"))

    def is_paused(self, user_id: str) -> bool:
        """As :meth:`TaskQueue.is_paused`."""
        return bool(drive(self.transport, self._on_user(user_id, self.queue_of(user_id)._is_paused(user_id))))

    # --- results ----------------------------------------------------------------------------
    def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """As :meth:`TaskQueue.store_result`, in the tenant's shard (where result reads look)."""
        user = task.user_id or ""
        drive(self.transport, self._on_user(user, self.queue_of(user)._store_result(task, record)))

    def store_result_json(self, task: Task, data: str) -> None:
        """As :meth:`TaskQueue.store_result_json`, in the tenant's shard."""
        user = task.user_id or ""
        drive(self.transport, self._on_user(user, self.queue_of(user)._store_result_json(task, data)))

    def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """As :meth:`TaskQueue.get_result`."""
        found: dict[str, Any] | None = drive(self.transport, self._on_user(
            user_id, self.queue_of(user_id)._get_result(task_id, user_id)))
        return found

    def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """As :meth:`TaskQueue.read_result`."""
        return drive(self.transport, self._s_read_result(task_id, user_id))

    def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """As :meth:`TaskQueue.result`."""
        return TaskResult(task_id, user_id, self).refresh()

    def next_delayed_seconds(self) -> float | None:
        """As :meth:`TaskQueue.next_delayed_seconds`: the earliest of the shards."""
        return drive(self.transport, self._s_next_delayed_seconds())

    # --- schedules (home keys) --------------------------------------------------------------------
    def schedule_tick(self, name: str, tick: int | None, token: str, *, stale_ms: int = 10_000,
                      skip: bool = False) -> tuple[str, int, list[str]]:
        """As :meth:`TaskQueue.schedule_tick` (home keys)."""
        return self.home_queue.schedule_tick(name, tick, token, stale_ms=stale_ms, skip=skip)

    def schedule_stale(self, names: Sequence[str], token: str, *, stale_ms: int = 10_000) -> dict[str, list[str]]:
        """As :meth:`TaskQueue.schedule_stale` (home keys)."""
        return self.home_queue.schedule_stale(names, token, stale_ms=stale_ms)

    def schedule_done(self, name: str, ticks: Sequence[str]) -> None:
        """As :meth:`TaskQueue.schedule_done` (home keys)."""
        self.home_queue.schedule_done(name, ticks)

    def schedule_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """As :meth:`TaskQueue.schedule_states` (home keys)."""
        return self.home_queue.schedule_states(names)

    def schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str] = ()) -> None:
        """As :meth:`TaskQueue.schedule_set` (home keys)."""
        self.home_queue.schedule_set(name, fields, delete)

    def pushed_tenants(self) -> list[str]:
        """As :meth:`TaskQueue.pushed_tenants`: the shards' together."""
        return drive(self.transport, self._s_pushed_tenants())

    def _of_task(self, task: Task) -> TaskQueue:
        return self.shard_queues[self._shard_of_task(task)]


AnyQueue: TypeAlias = TaskQueue | ShardedTaskQueue


def open_queue(config: FairQueueConfig, client: redis.Redis | None = None, *,
               worker_id: str | None = None) -> AnyQueue:
    """The queue of ``config``'s prefix: a :class:`TaskQueue` when it has one keyspace shard
    (``queue.shards = 1``, the default), else a :class:`ShardedTaskQueue`."""
    if config.queue.shards > 1:
        return ShardedTaskQueue(config, client, worker_id=worker_id)
    return TaskQueue(config, client, worker_id=worker_id)
