"""The asyncio queue of a sharded prefix (``queue.shards`` > 1): :class:`AsyncShardedTaskQueue`, and
:func:`open_async_queue`, which gives a plain :class:`~.aio.AsyncTaskQueue` when the prefix has one shard
(the asyncio spelling of :func:`~.sharded.open_queue`).

It awaits the operations :class:`~.sharded.ShardedTaskQueue` drives (:mod:`.shardops`, written once;
its public methods are :class:`~.facade.AsyncQueueFacade`'s, as :class:`~.aio.AsyncTaskQueue`'s), so
it routes and merges as that one does (see :mod:`.sharded`): by tenant, acknowledgements to the shard a
task was leased from, id-only operations in every shard, merged reads, cross-shard dependencies refused.
One difference: the acknowledgements and pops of several shards (:meth:`complete_and_pop_many`) are
concurrent round trips, one per shard, not one pipeline (a ``redis.asyncio`` pipeline cannot be sent
now and read later). A test compares its methods and signatures with the synchronous sharded queue's.
"""

from __future__ import annotations

from typing import TypeAlias

import redis.asyncio

from .aio import AsyncTaskQueue, build_async_client
from .config import FairQueueConfig
from .facade import AsyncQueueFacade, document
from .ops import AsyncShardTransport
from .shardops import ShardedOps

__all__ = ["AnyAsyncQueue", "AsyncShardedTaskQueue", "open_async_queue"]


class AsyncShardedTaskQueue(ShardedOps[AsyncTaskQueue], AsyncQueueFacade):
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
        self.transport: AsyncShardTransport = AsyncShardTransport(home.transport,
                                                                  [queue.transport for queue in self.shard_queues])


document(AsyncShardedTaskQueue, AsyncQueueFacade, lambda name: f"Async :meth:`ShardedTaskQueue.{name}`.")


AnyAsyncQueue: TypeAlias = AsyncTaskQueue | AsyncShardedTaskQueue


def open_async_queue(config: FairQueueConfig, client: redis.asyncio.Redis | None = None, *,
                     worker_id: str | None = None) -> AnyAsyncQueue:
    """The asyncio queue of ``config``'s prefix: an :class:`AsyncTaskQueue` when it has one keyspace shard
    (``queue.shards = 1``, the default), else an :class:`AsyncShardedTaskQueue` (as :func:`~.sharded.open_queue`)."""
    if config.queue.shards > 1:
        return AsyncShardedTaskQueue(config, client, worker_id=worker_id)
    return AsyncTaskQueue(config, client, worker_id=worker_id)
