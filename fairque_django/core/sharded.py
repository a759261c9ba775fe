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
  reports it: one more command on such a push only). There is no parking / hand-off on a sharded
  prefix;
- a slot prefetches as on one shard (:meth:`ShardedTaskQueue.send_complete_and_pop`: the round trip
  to the shards concerned is sent before its task runs, on a cluster one write to each master, and
  read after it), with the acknowledgements of whole batches only (``worker/slot.py``,
  ``whole_batches``: a batch's acks are one shard's call).

Every operation is written once, in :mod:`.shardops` (generators with the names and arguments of
:mod:`.ops`'s, driven on a :class:`~.ops.ShardTransport` by the public methods of
:class:`~.facade.QueueFacade`, which :class:`~.queue.TaskQueue` drives its own with);
:class:`~.aio_sharded.AsyncShardedTaskQueue` (:func:`~.aio_sharded.open_async_queue`) awaits the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import redis

from .config import FairQueueConfig
from .connection import get_client
from .context import CurrentQueue
from .facade import QueueFacade, document
from .models import Task
from .ops import ShardTransport, TogetherSent, send_together
from .queue import TaskQueue
from .shardops import ShardedOps, merge_stats
from .transport import HeldConnection

__all__ = ["AnyQueue", "ShardedTaskQueue", "merge_stats", "open_queue"]

class ShardedTaskQueue(CurrentQueue, ShardedOps[TaskQueue], QueueFacade):
    """A fair multi-tenant task queue over ``queue.shards`` keyspace shards (see the module doc). Its
    public methods are :class:`~.facade.QueueFacade`'s, as :class:`~.queue.TaskQueue`'s, with the
    docstrings of :data:`SHARDED_DOCS`."""

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self.client: redis.Redis = client if client is not None else get_client(config.redis)
        home = TaskQueue(config, self.client, worker_id=worker_id)
        super().__init__(config, home, [TaskQueue(config, self.client, worker_id=worker_id, shard=n)
                                        for n in range(config.queue.shards)])
        self.transport: ShardTransport = ShardTransport(home.transport, [q.transport for q in self.shard_queues])

    # --- prefetch -------------------------------------------------------------------------
    def send_complete_and_pop(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, via: HeldConnection | None = None,
                              ) -> TogetherSent[tuple[list[int], list[Task], float | None]]:
        """:meth:`complete_and_pop_many` in two halves, as :meth:`TaskQueue.send_complete_and_pop`: its
        round trip to the shards concerned is sent now (on one Redis, on the client's shared held
        connection; on a cluster, on a connection of each master's pool) without waiting for the
        replies; ``result()`` reads them and returns what :meth:`complete_and_pop_many` would (``via``
        is not used)."""
        return send_together(self.transport, self._complete_and_pop_many(done, count, worker_id, None))

    def hold_connection(self) -> HeldConnection | None:
        """None: a sharded queue's prefetches use the client's shared held connection (or, on a cluster,
        a connection of each master's pool)."""
        return None


# What each public method does on a sharded prefix, after "As :meth:`TaskQueue.<name>`" (its docstring;
# a method not named here does just that).
SHARDED_DOCS: dict[str, str] = {
    "push": ", into the shard of the task's user.",
    "push_batch": ": every task is checked first, then one stream per shard. When a later shard's stream fails (a "
                  "body that does not encode), what earlier shards stored is deleted again (not with ``idempotent``, "
                  "as for one shard).",
    "pop": ": the shards in rotation, from the next start shard.",
    "pop_reply": " (due: the earliest of the shards asked).",
    "pop_many_reply": ": the shards the rotation allots tasks to (:meth:`complete_and_pop_many` with nothing to "
                      "acknowledge), then the others until one leases something (an empty pop asks every shard once).",
    "pop_step": ", in the next start shard of the rotation. A sharded prefix does not park (``park_ms`` and "
                "``unpark`` are ignored: no push hands a task over).",
    "take_handed": ": never anything (a sharded prefix does not park).",
    "complete_and_pop_many": ": the acks of each shard and the pops the rotation allots (:meth:`ShardTurns.allot`) go"
                             " in one round trip, to every shard concerned at once; the tasks leased come interleaved"
                             " shard by shard. When none was leased, the next shards are asked.",
    "flush_metrics": ": each shard's buffer.",
    "wait_and_pop": ": a pop in rotation (every shard when none is ready), then a wait on the home wake lists of the "
                    "worker's partitions (up to ``timeout``, or until something is due), then, when a push woke it, a"
                    " pop from the shard it woke on. No parking: no push hands a task over. The idle slots of one "
                    "queue share their scans: a slot skips its first pop when another found every shard empty less "
                    "than ``timeout`` ago and nothing was leased since (a push since then left a token; a woken slot "
                    "that leases a task passes the token on, as ``pop.lua`` wakes the next waiter of a tenant with "
                    "more work).",
    "wait_for_work": ", on the home wake lists of the worker's partitions (and of those it took over: orphan "
                     "takeover).",
    "delete_task": ": the shard whose queue leased it, else every shard.",
    "release": ", each task in its shard.",
    "extend_leases": ": one call per shard holding some of ``tasks``.",
    "delete": ": every shard is asked (one call each).",
    "cancel": ": the user's shard, or (no user) every shard until one knows it.",
    "cancel_tenant": ", in the tenant's shard.",
    "dlq_size": ": the sum over the shards.",
    "get_dlq": ", across the shards: each shard's first ``offset + limit`` entries, merged by time of death (so a "
               "deep page costs ``shards * (offset + limit)`` entries read).",
    "get_dead": ": every shard is asked until one has it.",
    "requeue_dead": ", in every shard.",
    "delete_dead": ", in every shard.",
    "purge_dlq": ": every shard's.",
    "get_stats": ", the shards' merged: numbers summed, per-user and per-priority counts merged (a user lives in one "
                 "shard), problems joined.",
    "fold_idle_tenants": ", in every shard (``more``: in any).",
    "mark_idle_tenants": ", the shards one after the other: the cursor names the shard and where its scan goes on "
                         "(``inner * shards + shard``; 0 at the start and when done).",
    "get_task_state": ": every shard is asked until one has it.",
    "set_tenant_limits": ", in the tenant's shard.",
    "resume_tenant": " (the idle workers are woken on the home wake lists).",
    "store_result": ", in the tenant's shard (where result reads look).",
    "store_result_json": ", in the tenant's shard.",
    "next_delayed_seconds": ": the earliest of the shards.",
    "schedule_tick": " (home keys).",
    "schedule_stale": " (home keys).",
    "schedule_done": " (home keys).",
    "schedule_states": " (home keys).",
    "schedule_set": " (home keys).",
    "pushed_tenants": ": the shards' together.",
}
document(ShardedTaskQueue, QueueFacade, lambda name: f"As :meth:`TaskQueue.{name}`{SHARDED_DOCS.get(name, '.')}")


AnyQueue: TypeAlias = TaskQueue | ShardedTaskQueue


def open_queue(config: FairQueueConfig, client: redis.Redis | None = None, *,
               worker_id: str | None = None) -> AnyQueue:
    """The queue of ``config``'s prefix: a :class:`TaskQueue` when it has one keyspace shard
    (``queue.shards = 1``, the default), else a :class:`ShardedTaskQueue`."""
    if config.queue.shards > 1:
        return ShardedTaskQueue(config, client, worker_id=worker_id)
    return TaskQueue(config, client, worker_id=worker_id)
