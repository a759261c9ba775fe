"""The asyncio queue of a sharded prefix (``queue.shards`` > 1): :class:`AsyncShardedTaskQueue`, and
:func:`open_async_queue`, which gives a plain :class:`~.aio.AsyncTaskQueue` when the prefix has one shard
(the asyncio spelling of :func:`~.sharded.open_queue`).

It awaits the operations :class:`~.sharded.ShardedTaskQueue` drives (:mod:`.shardops`, written once), so
it routes and merges as that one does (see :mod:`.sharded`): by tenant, acknowledgements to the shard a
task was leased from, id-only operations in every shard, merged reads, cross-shard dependencies refused.
One difference: the acknowledgements and pops of several shards (:meth:`complete_and_pop_many`) are
concurrent round trips, one per shard, not one pipeline (a ``redis.asyncio`` pipeline cannot be sent
now and read later). A test compares its methods and signatures with the synchronous sharded queue's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeAlias

import redis.asyncio

from .aio import AsyncTaskQueue, build_async_client
from .config import FairQueueConfig
from .config.limits import UNCHANGED, Unchanged
from .models import DLQEntry, Task
from .ops import AsyncShardTransport, adrive
from .results import CancelResult, ResultSnapshot, TaskResult
from .scripts.commands import FoldResult
from .scripts.pop import PopStep
from .shardops import ShardedOps, merge_stats

__all__ = ["AnyAsyncQueue", "AsyncShardedTaskQueue", "open_async_queue"]


class AsyncShardedTaskQueue(ShardedOps[AsyncTaskQueue]):
    """A fair multi-tenant task queue over ``queue.shards`` keyspace shards, for asyncio code (see the
    module doc). ``AsyncShardedTaskQueue(config)`` builds its own ``redis.asyncio`` client (shared by
    its shards' queues) and closes it in :meth:`aclose`; a ``client`` passed in is left open.
    Use it as ``async with open_async_queue(config) as queue: ...``."""

    def __init__(self, config: FairQueueConfig, client: redis.asyncio.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self._owns_client = client is None
        self.client: redis.asyncio.Redis = client if client is not None else build_async_client(config.redis)
        home = AsyncTaskQueue(config, self.client, worker_id=worker_id)
        super().__init__(config, home, [AsyncTaskQueue(config, self.client, worker_id=worker_id, shard=n)
                                        for n in range(config.queue.shards)])
        self.transport = AsyncShardTransport(home.transport, [queue.transport for queue in self.shard_queues])

    # --- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncShardedTaskQueue:
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

    # --- push ---------------------------------------------------------------------------
    async def push(self, task: Task, user_id: str | None = None, *, encoded: list[Any] | None = None) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.push`."""
        return await adrive(self.transport, self._s_push(task, user_id, encoded))

    async def push_batch(self, tasks: Iterable[Task], user_id: str | None = None, *,
                   idempotent: bool = False) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.push_batch`."""
        return await adrive(self.transport, self._s_push_batch(tasks, user_id, idempotent))

    async def push_prepared(self, tasks: Sequence[Task], encoded: Sequence[list[Any]]) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.push_prepared`."""
        return await adrive(self.transport, self._s_push_prepared(tasks, encoded))

    # --- pop ----------------------------------------------------------------------------
    async def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """Async :meth:`ShardedTaskQueue.pop`."""
        tasks, _ = await adrive(self.transport, self._s_pop_many(1, worker_id, lease_seconds))
        return tasks[0] if tasks else None

    async def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                  ) -> tuple[Task | None, float | None]:
        """Async :meth:`ShardedTaskQueue.pop_reply`."""
        tasks, due = await adrive(self.transport, self._s_pop_many(1, worker_id, lease_seconds))
        return (tasks[0] if tasks else None), due

    async def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                 ) -> list[Task]:
        """Async :meth:`ShardedTaskQueue.pop_many`."""
        return (await adrive(self.transport, self._s_pop_many(count, worker_id, lease_seconds)))[0]

    async def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> tuple[list[Task], float | None]:
        """Async :meth:`ShardedTaskQueue.pop_many_reply`."""
        return await adrive(self.transport, self._s_pop_many(count, worker_id, lease_seconds))

    async def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                 park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """Async :meth:`ShardedTaskQueue.pop_step`."""
        return await adrive(self.transport, self._s_pop_step(worker_id, count, lease_seconds))

    async def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """Async :meth:`ShardedTaskQueue.take_handed`."""
        return await adrive(self.transport, self._s_take_handed(token))

    async def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                         worker_id: str | None = None, lease_seconds: float | None = None,
                         ) -> tuple[int, Task | None, float | None]:
        """Async :meth:`ShardedTaskQueue.complete_and_pop`."""
        codes, tasks, due = await adrive(self.transport, self._s_complete_and_pop_many(
            [(task, duration, result_json)], 1, worker_id, lease_seconds))
        return codes[0], (tasks[0] if tasks else None), due

    async def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, lease_seconds: float | None = None,
                              ) -> tuple[list[int], list[Task], float | None]:
        """Async :meth:`ShardedTaskQueue.complete_and_pop_many`."""
        return await adrive(self.transport, self._s_complete_and_pop_many(done, count, worker_id, lease_seconds))

    async def flush_metrics(self) -> int:
        """Async :meth:`ShardedTaskQueue.flush_metrics`."""
        return await adrive(self.transport, self._s_flush_metrics())

    async def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                     lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """Async :meth:`ShardedTaskQueue.wait_and_pop`."""
        return await adrive(self.transport, self._s_wait_and_pop(worker_id, timeout, lease_seconds))

    async def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Async :meth:`ShardedTaskQueue.wait_for_work`."""
        return await adrive(self.transport, self._wait(worker_id, timeout)) is not None

    # --- finishing ----------------------------------------------------------------------
    async def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Async :meth:`ShardedTaskQueue.complete`."""
        await adrive(self.transport, self._on_task(task, self._of_task(task)._complete(task, duration)))

    async def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """Async :meth:`ShardedTaskQueue.complete_code`."""
        op = self._of_task(task)._ack(task.task_id, task.lease_token or "", duration)
        return int(await adrive(self.transport, self._on_task(task, op)))

    async def delete_task(self, task_id: str) -> bool:
        """Async :meth:`ShardedTaskQueue.delete_task`."""
        return await adrive(self.transport, self._s_delete_task(task_id))

    async def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
             failure_type: str = "error", retry: bool = True) -> str:
        """Async :meth:`ShardedTaskQueue.fail`."""
        op = self._of_task(task)._fail(task, error, traceback, failure_type, retry)
        return str(await adrive(self.transport, self._on_task(task, op)))

    async def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Async :meth:`ShardedTaskQueue.release`."""
        return await adrive(self.transport, self._s_release(tasks, count))

    async def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Async :meth:`ShardedTaskQueue.extend`."""
        return (await adrive(self.transport, self._s_extend_leases(tasks, lease_seconds)))[0]

    async def extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None = None,
                      ) -> tuple[list[str], list[str]]:
        """Async :meth:`ShardedTaskQueue.extend_leases`."""
        return await adrive(self.transport, self._s_extend_leases(tasks, lease_seconds))

    async def set_progress(self, task: Task, fraction: float, message: str = "") -> bool:
        """Async :meth:`ShardedTaskQueue.set_progress`."""
        op = self._of_task(task)._set_progress(task, fraction, message)
        return bool(await adrive(self.transport, self._on_task(task, op)))

    async def delete(self, *task_ids: str) -> list[str]:
        """Async :meth:`ShardedTaskQueue.delete`."""
        return await adrive(self.transport, self._s_delete(task_ids))

    # --- cancelling -------------------------------------------------------------------------
    async def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult:
        """Async :meth:`ShardedTaskQueue.cancel`."""
        return await adrive(self.transport, self._s_cancel(task_id, user_id))

    async def cancel_tenant(self, user_id: str, *, running: bool = False, chunk: int = 1000) -> dict[str, int]:
        """Async :meth:`ShardedTaskQueue.cancel_tenant`."""
        op = self.queue_of(user_id)._cancel_tenant(user_id, running, chunk)
        return dict(await adrive(self.transport, self._on_user(user_id, op)))

    # --- dead-letter queue ----------------------------------------------------------------
    async def dlq_size(self) -> int:
        """Async :meth:`ShardedTaskQueue.dlq_size`."""
        return sum(await adrive(self.transport, self._each(lambda q: q._dlq_size())))

    async def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """Async :meth:`ShardedTaskQueue.get_dlq`."""
        return await adrive(self.transport, self._s_get_dlq(offset, limit, newest_first))

    async def get_dead(self, task_id: str) -> DLQEntry | None:
        """Async :meth:`ShardedTaskQueue.get_dead`."""
        found: DLQEntry | None = await adrive(self.transport, self._first(lambda q: q._get_dead(task_id)))
        return found

    async def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Async :meth:`ShardedTaskQueue.requeue_dead`."""
        return await adrive(self.transport, self._s_dlq_script(True, task_ids))

    async def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Async :meth:`ShardedTaskQueue.delete_dead`."""
        return await adrive(self.transport, self._s_dlq_script(False, task_ids))

    async def purge_dlq(self) -> int:
        """Async :meth:`ShardedTaskQueue.purge_dlq`."""
        return sum(await adrive(self.transport, self._each(lambda q: q._purge_dlq())))

    # --- inspection -----------------------------------------------------------------------
    async def get_stats(self) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.get_stats`."""
        return merge_stats(await adrive(self.transport, self._each(lambda q: q._get_stats())))

    async def fold_idle_tenants(self, *, window_seconds: float | None = None, limit: int = 200,
                          max_calls: int = 50) -> FoldResult:
        """Async :meth:`ShardedTaskQueue.fold_idle_tenants`."""
        return await adrive(self.transport, self._s_fold_idle_tenants(window_seconds, limit, max_calls))

    async def mark_idle_tenants(self, *, cursor: int = 0, pages: int | None = None) -> tuple[int, int]:
        """Async :meth:`ShardedTaskQueue.mark_idle_tenants`."""
        return await adrive(self.transport, self._s_mark_idle_tenants(cursor, pages))

    async def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """Async :meth:`ShardedTaskQueue.get_task_state`."""
        found: dict[str, str] | None = await adrive(self.transport, self._first(lambda q: q._get_task_state(task_id)))
        return found

    async def user_depth(self, user_id: str) -> dict[str, int]:
        """Async :meth:`ShardedTaskQueue.user_depth`."""
        return dict(await adrive(self.transport, self._on_user(user_id, self.queue_of(user_id)._user_depth(user_id))))

    # --- tenant limits ------------------------------------------------------------------------
    async def set_tenant_limits(self, user_id: str, *, concurrency: int | Unchanged | None = UNCHANGED,
                          rate: str | Unchanged | None = UNCHANGED,
                          burst: int | Unchanged | None = UNCHANGED) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.set_tenant_limits`."""
        return await adrive(self.transport, self._s_set_tenant_limits(user_id, concurrency, rate, burst))

    async def clear_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.clear_tenant_limits`."""
        return await adrive(self.transport, self._s_tenant_op(user_id, "clear"))

    async def get_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.get_tenant_limits`."""
        return dict(await adrive(self.transport, self._on_user(
            user_id, self.queue_of(user_id)._get_tenant_limits(user_id))))

    async def pause_tenant(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.pause_tenant`."""
        return await adrive(self.transport, self._s_tenant_op(user_id, "pause"))

    async def resume_tenant(self, user_id: str) -> dict[str, Any]:
        """Async :meth:`ShardedTaskQueue.resume_tenant`."""
        return await adrive(self.transport, self._s_tenant_op(user_id, "resume"))

    async def is_paused(self, user_id: str) -> bool:
        """Async :meth:`ShardedTaskQueue.is_paused`."""
        return bool(await adrive(self.transport, self._on_user(user_id, self.queue_of(user_id)._is_paused(user_id))))

    # --- results ----------------------------------------------------------------------------
    async def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Async :meth:`ShardedTaskQueue.store_result`."""
        user = task.user_id or ""
        await adrive(self.transport, self._on_user(user, self.queue_of(user)._store_result(task, record)))

    async def store_result_json(self, task: Task, data: str) -> None:
        """Async :meth:`ShardedTaskQueue.store_result_json`."""
        user = task.user_id or ""
        await adrive(self.transport, self._on_user(user, self.queue_of(user)._store_result_json(task, data)))

    async def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """Async :meth:`ShardedTaskQueue.get_result`."""
        found: dict[str, Any] | None = await adrive(self.transport, self._on_user(
            user_id, self.queue_of(user_id)._get_result(task_id, user_id)))
        return found

    async def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """Async :meth:`ShardedTaskQueue.read_result`."""
        return await adrive(self.transport, self._s_read_result(task_id, user_id))

    async def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """Async :meth:`ShardedTaskQueue.result`."""
        return await TaskResult(task_id, user_id, self).arefresh()

    async def next_delayed_seconds(self) -> float | None:
        """Async :meth:`ShardedTaskQueue.next_delayed_seconds`."""
        return await adrive(self.transport, self._s_next_delayed_seconds())

    # --- schedules (home keys) --------------------------------------------------------------------
    async def schedule_tick(self, name: str, tick: int | None, token: str, *, stale_ms: int = 10_000,
                      skip: bool = False) -> tuple[str, int, list[str]]:
        """Async :meth:`ShardedTaskQueue.schedule_tick`."""
        return await self.home_queue.schedule_tick(name, tick, token, stale_ms=stale_ms, skip=skip)

    async def schedule_stale(self, names: Sequence[str], token: str, *, stale_ms: int = 10_000) -> dict[str, list[str]]:
        """Async :meth:`ShardedTaskQueue.schedule_stale`."""
        return await self.home_queue.schedule_stale(names, token, stale_ms=stale_ms)

    async def schedule_done(self, name: str, ticks: Sequence[str]) -> None:
        """Async :meth:`ShardedTaskQueue.schedule_done`."""
        await self.home_queue.schedule_done(name, ticks)

    async def schedule_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Async :meth:`ShardedTaskQueue.schedule_states`."""
        return await self.home_queue.schedule_states(names)

    async def schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str] = ()) -> None:
        """Async :meth:`ShardedTaskQueue.schedule_set`."""
        await self.home_queue.schedule_set(name, fields, delete)

    async def pushed_tenants(self) -> list[str]:
        """Async :meth:`ShardedTaskQueue.pushed_tenants`."""
        return await adrive(self.transport, self._s_pushed_tenants())

    def _of_task(self, task: Task) -> AsyncTaskQueue:
        return self.shard_queues[self._shard_of_task(task)]


AnyAsyncQueue: TypeAlias = AsyncTaskQueue | AsyncShardedTaskQueue


def open_async_queue(config: FairQueueConfig, client: redis.asyncio.Redis | None = None, *,
                     worker_id: str | None = None) -> AnyAsyncQueue:
    """The asyncio queue of ``config``'s prefix: an :class:`AsyncTaskQueue` when it has one keyspace shard
    (``queue.shards = 1``, the default), else an :class:`AsyncShardedTaskQueue` (as :func:`~.sharded.open_queue`)."""
    if config.queue.shards > 1:
        return AsyncShardedTaskQueue(config, client, worker_id=worker_id)
    return AsyncTaskQueue(config, client, worker_id=worker_id)
