"""The synchronous :class:`TaskQueue`: push, fair pop with leases, ack, fail, DLQ and stats.

A thin driver: every operation is written once in :mod:`.ops` (shared with
:class:`~.aio.AsyncTaskQueue`, which has the same methods: a test compares them) and run by
:func:`~.ops.drive` on a :class:`~.transport.Transport`; the public methods that drive them are
:class:`~.facade.QueueFacade`'s (shared with :class:`~.sharded.ShardedTaskQueue`).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from .config import FairQueueConfig
from .connection import get_client
from .context import CurrentQueue
from .facade import QueueFacade
from .models import Task
from .ops import QueueOps, Sent, send
from .retry import RetryPolicy
from .scripts import Scripts
from .transport import HeldConnection, Transport, redis_errors

__all__ = ["TaskQueue", "redis_errors"]


class TaskQueue(CurrentQueue, QueueOps, QueueFacade):
    """Fair multi-tenant task queue on Redis.

    ``TaskQueue(config)`` uses the process-wide client for ``config.redis`` (or ``client``).
    ``worker_id`` selects whose tasks :meth:`pop` leases (default: ``config.worker_id``). ``shard``: the
    keyspace shard it works on (``None``: the prefix's only one; see :mod:`.shards`).
    """

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None, *,
                 worker_id: str | None = None, shard: int | None = None) -> None:
        super().__init__(config, worker_id, shard)
        self.client: redis.Redis = client if client is not None else get_client(config.redis)
        self.scripts = Scripts(self.client)
        self.transport: Transport = Transport(self.client, self.keys.stats, RetryPolicy.for_redis(config.redis))

    # --- shards (core/shards.py) ----------------------------------------------------------
    @property
    def shard_queues(self) -> tuple[TaskQueue, ...]:
        """One queue per keyspace shard (this one: a queue of one shard); reads that span tenants
        (stats, DLQ, tenant lists) read each and merge. See :class:`~.sharded.ShardedTaskQueue`."""
        return (self,)

    @property
    def home_queue(self) -> TaskQueue:
        """The queue of the home keys (schedules, workers, heartbeats, samples, alerts): this one."""
        return self

    # --- prefetch (a thread worker's slot) -----------------------------------------------
    def send_complete_and_pop(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, via: HeldConnection | None = None,
                              ) -> Sent[tuple[list[int], list[Task], float | None]]:
        """:meth:`complete_and_pop_many` in two halves: its round trip is sent now, on ``via`` (a
        connection from :meth:`hold_connection`) without waiting for the reply; the returned
        object's ``result()`` reads the reply and returns what :meth:`complete_and_pop_many`
        would (a thread worker's slot sends before its task runs and reads after)."""
        return send(self.transport, self._complete_and_pop_many(done, count, worker_id, None), via)

    def hold_connection(self) -> HeldConnection | None:
        """A connection of the client's pool for one caller to keep (None on a cluster client);
        its ``close()`` gives it back."""
        return self.transport.hold()
