"""A stand-in for the sharded queue (``core/sharded.py``'s ``ShardedTaskQueue``) in the tests of the
read side: only what the readers use (``config``, ``client``, ``shard_map``, ``shard_queues``,
``home_queue``), plus helpers that put data in the right shard. Nothing here routes like the real
facade does: tests push through ``queue_of(user)`` themselves."""

from __future__ import annotations

from typing import Any

import redis

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.shards import ShardMap


class ShardedReadsStandIn:
    """Per-shard :class:`TaskQueue` objects over one client and the home queue (``shard=None``)."""

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None) -> None:
        q = config.queue
        self.config = config
        self.home_queue = TaskQueue(config, client)
        self.client = self.home_queue.client
        self.shard_map = ShardMap(q.stats_prefix, q.shards, q.shard_pins)
        self.shard_queues: tuple[TaskQueue, ...] = tuple(
            TaskQueue(config, self.client, shard=i) for i in range(q.shards))

    def queue_of(self, user_id: str) -> TaskQueue:
        return self.shard_queues[self.shard_map.of(user_id)]

    def push(self, task: Task) -> dict[str, Any]:
        return self.queue_of(task.user_id).push(task)

    def close(self) -> None:  # conf.reset() closes the queues it cached
        pass


def users_per_shard(shard_map: ShardMap, per_shard: int, stem: str = "org") -> list[list[str]]:
    """``per_shard`` user ids for each shard (``stem:<n>``, the first found by hashing)."""
    out: list[list[str]] = [[] for _ in range(shard_map.count)]
    n = 0
    while any(len(users) < per_shard for users in out):
        user = f"{stem}:{n}"
        shard = shard_map.of(user)
        if len(out[shard]) < per_shard:
            out[shard].append(user)
        n += 1
    return out
