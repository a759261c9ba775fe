"""The asyncio :class:`AsyncTaskQueue`: the operations of :class:`~.queue.TaskQueue` as coroutines.

It runs the same Lua scripts on the same keys as the synchronous queue, so both can serve one
Redis: a task pushed by one can be popped, acked or failed by the other. Every operation is
written once in :mod:`.ops` and awaited by :func:`~.ops.adrive` on an
:class:`~.transport.AsyncTransport` (the public methods that await them are
:class:`~.facade.AsyncQueueFacade`'s, shared with :class:`~.aio_sharded.AsyncShardedTaskQueue`); a test
compares the two classes' methods and signatures so that they cannot drift. A sharded prefix
(``queue.shards`` > 1) has :mod:`.aio_sharded`'s queue (:func:`~.aio_sharded.open_async_queue`).
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import EqualJitterBackoff

from .config import FairQueueConfig, RedisConfig
from .connection import cluster_client, cluster_retries
from .facade import AsyncQueueFacade
from .ops import QueueOps
from .retry import RetryPolicy
from .scripts import AsyncScripts
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


class AsyncTaskQueue(QueueOps, AsyncQueueFacade):
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
        self.transport: AsyncTransport = AsyncTransport(self.client, self.keys.stats,
                                                        RetryPolicy.for_redis(config.redis))

    # --- shards (core/shards.py) ----------------------------------------------------------
    @property
    def shard_queues(self) -> tuple[AsyncTaskQueue, ...]:
        """As :attr:`TaskQueue.shard_queues`."""
        return (self,)

    @property
    def home_queue(self) -> AsyncTaskQueue:
        """As :attr:`TaskQueue.home_queue`."""
        return self
