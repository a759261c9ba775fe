"""Which keyspace shards a sharded queue's pops ask, and for how many tasks each
(:class:`ShardTurns`, one per sharded queue: :mod:`.shardops`).

Virtual times of different shards are separate clocks, so a pop cannot compare their heads;
instead each shard takes turns by its tenants with ready work for the worker (a smooth weighted
round robin over the counts, read in one pipeline of ZCARDs every ``SHARE_REFRESH_SECONDS``), a
shard whose tenants just got ready work takes the next turn, and a shard with no ready work is
visited on a timer so its timers run. See docs/operations.md ("Fairness") for the bound. The methods
that read the counts are operations (:mod:`.ops`): the sync and the asyncio sharded queues drive them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from .ops import Op

if TYPE_CHECKING:
    from .ops import QueueOps

__all__ = ["BATCH_SHARDS", "IDLE_VISIT_SECONDS", "SHARE_READS_PER_SECOND", "SHARE_REFRESH_SECONDS", "TURN_SECONDS",
           "ShardTurns"]

logger = logging.getLogger("fairque_django.queue")

# How often a sharded queue reads how many tenants with ready work each shard has (its pops' weights),
# while it pops: how soon a tenant arriving in a shard with no ready work gets that shard turns.
SHARE_REFRESH_SECONDS = 0.02
# ... but no more ZCARDs than this per second per worker id: with many shards the counts are read less
# often (200 shards: every 0.2 s), so a busy worker's reads stay bounded whatever the shards.
SHARE_READS_PER_SECOND = 1000
# A shard with no ready work takes no turns; a busy worker asks it at least this often (its timers:
# delayed tasks promoted, expired leases recovered; sooner when its last pop said one is due).
IDLE_VISIT_SECONDS = 0.25
# A batch pop's turns are worth ceil(count / BATCH_SHARDS) tasks each: a batch asks at most this many
# shards (plus one idle shard's visit), each a script call or two of the round trip (a batch of 16
# over 10 shards cost 3x one shard's round trip on one Redis, 5.6x on a 3-master cluster).
BATCH_SHARDS = 4
# ... but a turn holds at least as many tasks as run in this long (when the pop knows how long its
# slot's tasks take: the run times of the acks it carries): a batch that runs in this long comes from
# one shard, one script call, whose fixed cost its tasks share (on a 3-master cluster a batch of 16
# no-op tasks from 4 shards cost ~1.4x the Redis CPU of one shard's). Twice a 2-slot worker's batch
# window (5 ms x 2: work that arrives waits for a batch that long anyway), so that such a batch is
# not split by the rounding of two estimates of its tasks' run time.
TURN_SECONDS = 0.02


class ShardTurns:
    """The turns of a sharded queue's shards (see the module doc). ``home``: the home queue (the
    workers' plans, the transport the counts are read on); ``shards``: the shards' queues (their
    keys). Thread-safe: a worker's slots share it."""

    def __init__(self, home: QueueOps, shards: Sequence[QueueOps]) -> None:
        self.home = home
        self._shards = tuple(shards)
        self.count = len(self._shards)
        self._turn = itertools.count()
        self._credit = [0] * self.count  # the weighted rotation's (see rotation)
        self._last_weights: dict[str | None, list[int]] = {}  # worker id -> its last pop's weights
        # when each shard with no ready work is asked next (its timers; an empty pop asks every shard)
        self._visit_at = [time.monotonic() + IDLE_VISIT_SECONDS] * self.count
        self._shares: dict[str | None, tuple[float, list[int] | None]] = {}  # worker id -> (read at, weights)
        self._carry: set[str | None] = set()  # worker ids whose next round trip reads their counts (carry_reads)
        self._lock = threading.Lock()

    def next_start(self) -> int:
        """The next shard of a plain rotation (no counts known)."""
        return next(self._turn) % self.count

    def forget(self) -> None:
        """Drop the counts read: the next pop reads them again."""
        self._shares.clear()
        self._carry.clear()

    def rotation(self, worker_id: str | None = None) -> Op[list[int]]:
        """The shards in the order this pop asks them (:meth:`order`), the shard whose visit is due first."""
        order, visit = yield from self.order(worker_id)
        return order if visit is None else [visit, *order]

    def order(self, worker_id: str | None = None, carried: bool = False) -> Op[tuple[list[int], int | None]]:
        """The shards in the order this pop asks them (it stops at the first that leases something), and
        the shard with no ready work whose visit is due (None: none is; it is not in the order).

        The start shards follow a smooth weighted round robin over the shards with ready work, each
        weighted by its tenants with ready work for the worker (:meth:`weights`, read every
        ``SHARE_REFRESH_SECONDS``): a backlogged tenant gets about the same share whichever shard it
        is in. Then come the other shards with ready work, the next turns first, then the shards
        with none (so an empty pop asks every shard once). A shard with no ready work takes no turns:
        it is visited when its visit is due (``IDLE_VISIT_SECONDS`` after it was last asked, or
        sooner when its last pop said a delayed task or lease is due), so its timers run. Without
        counts (a failed read) or none with ready work: plain rotation. ``carried``: counts older than
        the read interval serve this pop, the caller's round trip reads them (:meth:`carry_reads`)."""
        n = self.count
        weights = yield from self.weights(worker_id, carried)
        now = time.monotonic()
        with self._lock:
            if weights is None or not any(weights):
                start = self.next_start()
                return [*range(start, n), *range(start)], None
            credit = self._advance(worker_id, weights)
            start = self._pick(weights)
            busy = sorted((i for i in range(n) if weights[i] and i != start), key=lambda i: -credit[i])
            idle = [i for i in range(n) if not weights[i]]
            visit = self._visit_due(idle, now)
            return [start, *busy, *idle], visit

    def _advance(self, worker_id: str | None, weights: list[int]) -> list[int]:
        """The weighted rotation's credits (under the lock), told the weights of this pop: a shard with
        no ready work has none; a shard whose tenants just got ready work goes first, once (as a tenant
        joining a shard's rotation is served next)."""
        credit = self._credit
        last = self._last_weights.get(worker_id)
        self._last_weights[worker_id] = weights
        for i, weight in enumerate(weights):
            if not weight:
                credit[i] = 0
        if last is not weights and last is not None:
            top, total = max(credit), sum(weights)
            for i, weight in enumerate(weights):
                if weight and not last[i]:  # ahead of every other after the next turn's additions
                    credit[i] = top = top + total
        return credit

    def _pick(self, weights: list[int], tasks: int = 1) -> int:
        """One turn of the smooth weighted round robin (under the lock), worth ``tasks`` tasks: the shard
        with ready work that leases them."""
        credit = self._credit
        best = -1
        for i, weight in enumerate(weights):
            if weight:
                credit[i] += weight * tasks
                if best < 0 or credit[i] > credit[best]:
                    best = i
        credit[best] -= sum(weights) * tasks
        return best

    def _visit_due(self, idle: list[int], now: float) -> int | None:
        """The shard with no ready work whose visit is most overdue (under the lock; taken out of
        ``idle``), or None: one idle shard's visit per pop, the next pop visits the next one."""
        visit = self._visit_at
        due = [i for i in idle if visit[i] <= now]
        if not due:
            return None
        first = min(due, key=visit.__getitem__)
        visit[first] = now + IDLE_VISIT_SECONDS
        idle.remove(first)
        return first

    def allot(self, worker_id: str | None, count: int, task_seconds: float | None = None, carried: bool = False,
              ) -> Op[tuple[dict[int, int], list[int], list[int]]]:
        """How many of ``count`` tasks each shard leases in one pop, the shards to ask next when none
        of them leased anything, and the shards to visit in the same round trip (a pop of no task: its
        timers run).

        With the shards' ready tenants known and ``count`` > 1, the pop's tasks are turns of the
        weighted rotation (:meth:`_pick`), each worth ``ceil(count / BATCH_SHARDS)`` tasks, or as many
        as run in ``TURN_SECONDS`` when more (``task_seconds``: how long the slot's tasks take, when
        known): a shard leases in proportion to its tenants with ready work over the batches, a batch
        asks at most ``BATCH_SHARDS`` shards, and their calls go in one round trip (:func:`~.ops.drive_together`);
        a shard with no ready work whose visit is due leases one of them (its timers run). Else the
        first shard of :meth:`order` leases its share (:meth:`share`), the others follow in its order,
        and a shard whose visit is due is visited (last in that order too: an empty pop asks every
        shard). ``carried``: as for :meth:`order`."""
        weights = (yield from self.weights(worker_id, carried)) if count > 1 else None
        if weights is None or not any(weights):
            order, visit = yield from self.order(worker_id, carried)
            visits = [] if visit is None else [visit]
            return {order[0]: self.share(worker_id, order[0], count)}, [*order[1:], *visits], visits
        n = self.count
        now = time.monotonic()
        allot: dict[int, int] = {}
        with self._lock:
            credit = self._advance(worker_id, weights)
            first = self._visit_due([i for i in range(n) if not weights[i]], now)
            if first is not None:
                allot[first] = 1
            left, turn = count - len(allot), turn_size(count, task_seconds)
            while left > 0:
                tasks = min(turn, left)
                pick = self._pick(weights, tasks)
                allot[pick] = allot.get(pick, 0) + tasks
                left -= tasks
            rest = sorted((i for i in range(n) if i not in allot), key=lambda i: (not weights[i], -credit[i]))
        return allot, rest, []

    def weights(self, worker_id: str | None, carried: bool = False) -> Op[list[int] | None]:
        """Each shard's tenants with ready work for the worker (:meth:`_count_reads`), read again when the
        last read is older than :meth:`_read_interval`; None: not known. ``carried``: counts read less
        than two intervals ago serve once more, and the caller's round trip reads them (:meth:`carry_reads`,
        :meth:`carried`): a busy worker's reads cost no round trip of their own."""
        now = time.monotonic()
        cached = self._shares.get(worker_id)
        interval = self._read_interval(worker_id)
        if cached is not None and now - cached[0] < interval:
            return cached[1]
        if carried and cached is not None and cached[1] is not None and now - cached[0] < 2 * interval:
            with self._lock:  # (the other slots meanwhile use these)
                self._shares[worker_id] = (now, cached[1])
                self._carry.add(worker_id)
            return cached[1]
        weights: list[int] | None = None
        reads = self._count_reads(worker_id)
        if reads:
            try:
                # not retried (ShardTransport.home_round_trip): a failed read falls back to plain rotation
                weights = self._counted(worker_id, (yield "home_round_trip", (reads,)))
            except redis.RedisError as exc:  # plain rotation until the next read
                logger.debug("fairque: could not read the shards' ready tenants (%s)", exc)
        self._shares[worker_id] = (now, weights)
        return weights

    def carry_reads(self, worker_id: str | None) -> list[list[Any]]:
        """The count reads a pop's round trip carries (:meth:`weights` with ``carried`` found them due), or
        none; their replies go to :meth:`carried`."""
        with self._lock:
            if worker_id not in self._carry:
                return []
            self._carry.discard(worker_id)
        return self._count_reads(worker_id)

    def carried(self, worker_id: str | None, replies: Sequence[Any] | BaseException) -> None:
        """The replies of :meth:`carry_reads`' reads (or what their round trip raised: the counts known
        serve until the next read)."""
        if isinstance(replies, BaseException):
            logger.debug("fairque: could not read the shards' ready tenants (%s)", replies)
            return
        weights = self._counted(worker_id, replies)
        if weights is not None:
            self._shares[worker_id] = (time.monotonic(), weights)

    def _read_interval(self, worker_id: str | None) -> float:
        """How long the worker's counts serve: ``SHARE_REFRESH_SECONDS``, longer with many reads (at most
        ``SHARE_READS_PER_SECOND`` ZCARDs a second)."""
        plan = self.home.proto.plan(worker_id)
        reads = self.count * ((1 if plan.own_partition else 0) + len(plan.steal_partitions))
        return max(SHARE_REFRESH_SECONDS, reads / SHARE_READS_PER_SECOND)

    def _count_reads(self, worker_id: str | None) -> list[list[Any]]:
        """The ZCARDs of the worker's ready tenants in each shard, ``shards * (1 + steal partitions)`` of
        them: the tenants of its own partition and of the steal copies of its steal partitions."""
        plan = self.home.proto.plan(worker_id)
        part = plan.own_partition
        reads: list[list[Any]] = []
        for queue in self._shards:
            if part:
                reads.append(["ZCARD", queue.keys.ready(part)])
            reads += [["ZCARD", queue.keys.steal_ready(other, plan.worker_id)] for other in plan.steal_partitions]
        return reads

    def _counted(self, worker_id: str | None, replies: Sequence[Any]) -> list[int] | None:
        """The weights of :meth:`_count_reads`' replies: each shard's tenants of the worker's own partition,
        or, when no shard has any, of its steal copies (as ``pop.lua`` steals only when its own partition
        has no ready tenant); None when a reply is an error."""
        if any(isinstance(reply, Exception) for reply in replies):
            return None
        plan = self.home.proto.plan(worker_id)
        own = 1 if plan.own_partition else 0
        per = own + len(plan.steal_partitions)
        if not per:
            return None
        counts = [int(c) for c in replies]
        shards = range(self.count)
        mine = [counts[i * per] for i in shards] if own else []
        return mine if any(mine) else [sum(counts[i * per + own:(i + 1) * per]) for i in shards]

    def share(self, worker_id: str | None, shard: int, count: int) -> int:
        """How many of ``count`` tasks a pop leases from shard ``shard``: its share of the batch, by its
        tenants with ready work among all shards' (at least 1): as one shard's batch holds about one
        task per tenant with ready work, a shard's holds about one per tenant of its own, so no
        shard's batch holds the others' tenants up for longer than their turn."""
        cached = self._shares.get(worker_id)
        weights = None if cached is None else cached[1]
        if count <= 1 or not weights:
            return count
        total, weight = sum(weights), weights[shard]
        if not total:
            return count
        return max(1, min(count, -(-count * max(weight, 1) // (total + (0 if weight else 1)))))

    def visited(self, shard: int, due: float | None, now: float) -> None:
        """Shard ``shard`` was asked now (its pop said something is due in ``due`` seconds): its next
        idle visit is due then, or ``IDLE_VISIT_SECONDS`` from now."""
        wait = IDLE_VISIT_SECONDS if due is None else min(IDLE_VISIT_SECONDS, max(due, 0.0))
        self._visit_at[shard] = now + wait


def turn_size(count: int, task_seconds: float | None) -> int:
    """The tasks a turn of a batch pop of ``count`` is worth: ``ceil(count / BATCH_SHARDS)``, or as many
    tasks of ``task_seconds`` as run in ``TURN_SECONDS`` when more (at most ``count``)."""
    turn = -(-count // BATCH_SHARDS)
    if task_seconds is not None and task_seconds >= 0:
        turn = max(turn, int(TURN_SECONDS / max(task_seconds, 1e-6)))
    return max(1, min(count, turn))
