"""The asyncio :class:`AsyncTaskQueue`: the operations of :class:`~.queue.TaskQueue` as coroutines.

It runs the same Lua scripts on the same keys as the synchronous queue, so both can serve one
Redis: a task pushed by one can be popped, acked or failed by the other. Every operation is
written once in :mod:`.ops` and awaited here by :func:`~.ops.adrive` on an
:class:`~.transport.AsyncTransport`; a test compares the two classes' methods and signatures so
that they cannot drift. A sharded prefix (``queue.shards`` > 1) has :mod:`.aio_sharded`'s queue
(:func:`~.aio_sharded.open_async_queue`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import EqualJitterBackoff

from .config import FairQueueConfig, RedisConfig
from .config.limits import UNCHANGED, Unchanged
from .connection import cluster_client, cluster_retries
from .models import DLQEntry, Task
from .ops import QueueOps, adrive
from .results import CancelResult, ResultSnapshot, TaskResult
from .retry import RetryPolicy
from .scripts import AsyncScripts
from .scripts.commands import FoldResult
from .scripts.pop import PopStep
from .transport import AsyncTransport

__all__ = ["AsyncTaskQueue", "build_async_client"]


def build_async_client(config: RedisConfig, **extra: Any) -> redis.asyncio.Redis:
    """A new ``redis.asyncio`` client for ``config`` that retries transient connection errors.

    Async clients are bound to the event loop they first run on, so they are never cached
    process-wide: each :class:`AsyncTaskQueue` builds (and closes) its own.
    """
    if config.cluster:
        return cast(redis.asyncio.Redis, build_async_cluster_client(config, **extra))  # see core.connection
    options: dict[str, Any] = {"retry": RetryPolicy.for_redis(config).async_redis_retry()}
    options.update(extra)
    if config.url:
        return redis.asyncio.Redis.from_url(config.url, **{**config.url_kwargs(), **options})
    return redis.asyncio.Redis(**{**config.client_kwargs(), **options})


def build_async_cluster_client(config: RedisConfig, **extra: Any) -> AsyncRedisCluster:
    """A new ``redis.asyncio`` cluster client for ``config`` (``cluster`` set), with the retry of
    :func:`~.connection.cluster_retry`."""
    policy = RetryPolicy.for_redis(config)
    retry = redis.asyncio.retry.Retry(EqualJitterBackoff(cap=policy.cap, base=policy.base), cluster_retries(policy))
    client: AsyncRedisCluster = cluster_client(AsyncRedisCluster, AsyncClusterNode, retry, config, extra)
    return client


class AsyncTaskQueue(QueueOps):
    """Fair multi-tenant task queue on Redis, for asyncio code.

    ``AsyncTaskQueue(config)`` builds its own ``redis.asyncio`` client from ``config.redis`` and
    closes it in :meth:`aclose`; a ``client`` passed in is used as is and left open.
    ``worker_id`` selects whose tasks :meth:`pop` leases (default: ``config.worker_id``). ``shard``: the
    keyspace shard it works on (``None``: the prefix's only one, or the home keys and shard 0 of a
    sharded prefix, as :class:`~.queue.TaskQueue`): on a sharded prefix use
    :func:`~.aio_sharded.open_async_queue`, which gives an :class:`~.aio_sharded.AsyncShardedTaskQueue`.
    Use it as ``async with AsyncTaskQueue(config) as queue: ...``.
    """

    def __init__(self, config: FairQueueConfig, client: redis.asyncio.Redis | None = None, *,
                 worker_id: str | None = None, shard: int | None = None) -> None:
        super().__init__(config, worker_id, shard)
        self._owns_client = client is None
        self.client: redis.asyncio.Redis = client if client is not None else build_async_client(config.redis)
        self.scripts = AsyncScripts(self.client)
        self.transport = AsyncTransport(self.client, self.keys.stats, RetryPolicy.for_redis(config.redis))

    # --- shards (core/shards.py) ----------------------------------------------------------
    @property
    def shard_queues(self) -> tuple[AsyncTaskQueue, ...]:
        """As :attr:`TaskQueue.shard_queues`."""
        return (self,)

    @property
    def home_queue(self) -> AsyncTaskQueue:
        """As :attr:`TaskQueue.home_queue`."""
        return self

    # --- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncTaskQueue:
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
        return (await adrive(self.transport, self._pop(worker_id, lease_seconds)))[0]

    async def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                        ) -> tuple[Task | None, float | None]:
        """Async :meth:`TaskQueue.pop_reply`."""
        return await adrive(self.transport, self._pop(worker_id, lease_seconds))

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
        op = self._complete_and_pop(task, duration, result_json, worker_id, lease_seconds)
        return await adrive(self.transport, op)

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
        return await adrive(self.transport, self._ack(task.task_id, task.lease_token or "", duration))

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
        return await adrive(self.transport, self._extend(tasks, lease_seconds))

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
        return await adrive(self.transport, self._dlq_script(self.scripts.requeue_dead, task_ids))

    async def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Async :meth:`TaskQueue.delete_dead`."""
        return await adrive(self.transport, self._dlq_script(self.scripts.delete, task_ids))

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
        replies = await adrive(self.transport, self._schedule_ticks([(n, None, False) for n in names], token,
                                                                      stale_ms))
        return {n: r[2] for n, r in zip(names, replies, strict=True)}

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
