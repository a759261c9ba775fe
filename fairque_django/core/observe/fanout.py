"""Reads over a queue's keyspace shards (``queue.shards``, :mod:`..shards`): every reader of the read
model takes a :class:`QueueShards` -- a :class:`~..queue.TaskQueue` (one shard: itself) or a sharded
queue -- reads each of its ``shard_queues`` and merges, and reads the home keys (workers, heartbeats,
samples, chart points, alert states) through its ``home_queue``.

A :class:`Trip` is one round trip over several keyspaces: each keyspace's commands are added as a
*section* and the replies come back per section. Sections share a pipeline whenever they can:

* on one Redis (not a cluster) every section of a trip goes into ONE pipeline (a MULTI/EXEC one for a
  transaction), so a read costs the same round trips whatever ``queue.shards`` is, and a transaction
  is one consistent view of every shard;
* on a Redis Cluster a transaction can span one slot only, so a transactional trip is one
  transaction per keyspace (shard, and home), executed one after the other (``shards + 1`` round
  trips); a trip without a transaction is one cluster pipeline (redis-py sends it to each master
  holding a section: one round trip per master).

With one shard the home keyspace is the shard's, the sections share one pipeline and a read issues
exactly the commands it did before shards existed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import redis
from redis.cluster import RedisCluster

from ..config import FairQueueConfig
from ..shards import shard_map
from .values import replies

if TYPE_CHECKING:
    from ..queue import TaskQueue

__all__ = ["QueueShards", "Trip", "is_sharded", "shard_index_of", "split_limit"]


class QueueShards(Protocol):
    """What the read model needs of a queue: its configuration, one queue per keyspace shard
    (``(queue,)`` for a plain :class:`~..queue.TaskQueue`) and the queue of the home keys."""

    @property
    def config(self) -> FairQueueConfig: ...

    @property
    def shard_queues(self) -> tuple[TaskQueue, ...]: ...

    @property
    def home_queue(self) -> TaskQueue: ...


def is_sharded(queue: QueueShards) -> bool:
    return len(queue.shard_queues) > 1


def shard_index_of(queue: QueueShards, user_id: str) -> int:
    """The index in ``queue.shard_queues`` of the shard holding ``user_id``'s keys (0: one shard)."""
    if len(queue.shard_queues) == 1:
        return 0
    return shard_map(queue.config.queue).of(user_id)


def split_limit(limit: int, shards: int) -> int:
    """A scan limit shared by ``shards`` shards: each reads ``ceil(limit / shards)`` (0 stays 0), so
    the total stays within ``limit + shards``."""
    return limit if shards <= 1 or limit <= 0 else -(-limit // shards)


class Trip:
    """One round trip over several keyspaces (see the module docstring)."""

    def __init__(self, *, transaction: bool = False) -> None:
        self.transaction = transaction
        self._pipes: dict[Hashable, Any] = {}
        self._sections: list[tuple[Hashable, int, list[Any]]] = []

    def _group(self, queue: TaskQueue) -> Hashable:
        client = queue.client
        if isinstance(client, RedisCluster):
            # a cluster transaction holds one slot's keys: one per keyspace
            return (id(client), queue.keys.base) if self.transaction else id(client)
        return id(client)

    def add(self, queue: TaskQueue, fill: Callable[[Any], Sequence[Any]]) -> int:
        """Add to the trip the commands ``fill(pipe)`` puts on a pipeline of ``queue``'s client
        (``fill`` returns their reply defaults, used when a reply is an error such as WRONGTYPE);
        returns the section's index in :meth:`execute`'s answer."""
        key = self._group(queue)
        pipe = self._pipes.get(key)
        if pipe is None:
            pipe = self._pipes[key] = queue.client.pipeline(transaction=self.transaction)
        start = len(pipe)
        defaults = list(fill(pipe))
        if len(pipe) - start != len(defaults):
            raise AssertionError(f"a section added {len(pipe) - start} commands and {len(defaults)} defaults")
        self._sections.append((key, start, defaults))
        return len(self._sections) - 1

    def one(self, queue: TaskQueue, default: Any, command: str, *args: Any, **kwargs: Any) -> int:
        """Add a section of one command (``pipe.<command>(*args, **kwargs)``)."""
        def fill(pipe: Any) -> list[Any]:
            getattr(pipe, command)(*args, **kwargs)
            return [default]

        return self.add(queue, fill)

    def execute(self) -> list[list[Any]]:
        """The replies of each section, in the order they were added (an error reply replaced by
        its default; a connection problem is raised)."""
        results: dict[Hashable, list[Any]] = {}
        for key, pipe in self._pipes.items():
            results[key] = pipe.execute(raise_on_error=False) if len(pipe) else []
        return [replies(results[key][start:start + len(defaults)], defaults)
                for key, start, defaults in self._sections]


def same_client(queue: QueueShards) -> redis.Redis | None:
    """The client every shard shares, when it is a single Redis (not a cluster); else None."""
    clients = {id(q.client) for q in (*queue.shard_queues, queue.home_queue)}
    client = queue.home_queue.client
    return client if len(clients) == 1 and not isinstance(client, RedisCluster) else None
