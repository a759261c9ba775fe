"""Starvation by configuration: tenants with ready tasks that no live worker may take (the
partition's owner is not alive and no live worker is assigned them or may steal them); and
orphan takeover: partitions whose workers have no live heartbeat, which live workers serve."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from ..codec import text
from ..config import POOL_PARTITION, FairQueueConfig, glob_match
from ..keys import Keys
from .liveness import ALIVE, NEVER_SEEN
from .rows import WorkerMetrics

STARVED_SCAN: Final = 200  # waiting tenants of a partition checked for a live worker that may take them


@dataclass(frozen=True, slots=True)
class StarvedPartition:
    """Tenants with ready tasks that no live worker may take: the partition's owner is not
    alive and no live worker is assigned them or may steal them. ``tenants`` are those found
    among the first ``scanned`` of the ``waiting`` tenants of the partition (ready-set order);
    ``start`` names the configured worker ids whose start would serve them."""

    partition: str  # the owner's worker id, or "~pool" (users no worker is assigned)
    owner_status: str | None  # the owner's liveness label; None for the pool
    assigned: tuple[str, ...]  # the owner's assigned_users (what is unserved)
    tenants: tuple[str, ...]
    waiting: int
    scanned: int
    start: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "owner_status": self.owner_status, "assigned": list(self.assigned),
                "tenants": list(self.tenants), "waiting": self.waiting, "scanned": self.scanned,
                "start": list(self.start)}


@dataclass(frozen=True, slots=True)
class OrphanedPartition:
    """A partition none of whose workers (its owner; for the pool, the workers that may steal from
    it) has a live heartbeat key (``{prefix}:beat:<id>``, ``queue.orphan_after_seconds``): the live
    workers in ``served_by`` take its tenants over, by virtual time (none alive: it starves)."""

    partition: str  # the owner's worker id, or "~pool"
    servers: tuple[str, ...]  # the workers that serve it by configuration
    statuses: tuple[str, ...]  # their liveness labels
    served_by: tuple[str, ...]  # live workers taking it over
    waiting: int = 0  # tenants with ready tasks in it

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "servers": list(self.servers), "statuses": list(self.statuses),
                "served_by": list(self.served_by), "waiting": self.waiting}


def orphaned_partitions(config: FairQueueConfig, workers: Sequence[WorkerMetrics],
                        beats: Mapping[str, bool]) -> list[OrphanedPartition]:
    """The orphaned partitions (``beats``: worker id -> whether its heartbeat key exists) and the
    live workers that serve them; none when ``queue.orphan_takeover`` is off."""
    if not config.queue.orphan_takeover:
        return []
    status = {w.worker_id: w.status for w in workers}
    takers = tuple(w.id for w in config.workers if beats.get(w.id) and status.get(w.id) == ALIVE)
    return [OrphanedPartition(part, servers, tuple(status.get(s, NEVER_SEEN) for s in servers), takers)
            for part, servers in config.partition_servers().items() if not any(beats.get(s) for s in servers)]


def with_waiting(orphans: Sequence[OrphanedPartition], parts: Sequence[str],
                 replies: Sequence[Any]) -> list[OrphanedPartition]:
    """``orphans`` with their waiting tenants counted from the replies of :func:`queue_ready_reads`."""
    waiting = {part: int(replies[2 * i] or 0) for i, part in enumerate(parts)} if replies else {}
    return [replace(o, waiting=waiting.get(o.partition, 0)) for o in orphans]


def describe_starved(parts: Sequence[StarvedPartition], *, names: int = 5) -> str:
    """One sentence per starved partition: who waits, why, which worker ids to start."""
    out = []
    for p in parts:
        shown = ", ".join(p.tenants[:names]) + (f" and {len(p.tenants) - names} more" if len(p.tenants) > names else "")
        if p.partition == POOL_PARTITION:
            where = "assigned to no worker"
        else:
            where = f"assigned to {p.partition} ({', '.join(p.assigned)}; {p.owner_status})"
        start = f"start {' or '.join(p.start)}" if p.start else "assign them to a worker"
        out.append(f"{len(p.tenants)} waiting tenant(s) {where} and no live worker may steal them: {shown}; "
                   f"{start}")
    return "; ".join(out)


def may_take(worker: WorkerMetrics, user: str) -> bool:
    """Whether ``worker`` is assigned ``user`` or may steal it (exact ids or glob patterns)."""
    return any(entry == user or glob_match(entry, user) for entry in (*worker.assigned, *worker.steals))


def candidate_partitions(config: FairQueueConfig, workers: Sequence[WorkerMetrics]) -> list[str]:
    """The partitions that may starve: those whose owner is not alive, and the pool."""
    status = {w.worker_id: w.status for w in workers}
    return [wid for wid in config.worker_ids if status.get(wid) != ALIVE] + [POOL_PARTITION]


def queue_ready_reads(pipe: Any, keys: Keys, parts: Sequence[str], scan: int = STARVED_SCAN) -> list[Any]:
    """Add the reads of :func:`starved_partitions` to ``pipe``; returns the reply defaults."""
    for part in parts:
        pipe.zcard(keys.ready(part))
        pipe.zrange(keys.ready(part), 0, scan - 1)
    return [0, []] * len(parts)


def starved_partitions(config: FairQueueConfig, workers: Sequence[WorkerMetrics], parts: Sequence[str],
                       replies: Sequence[Any], taken_over: Collection[str] = ()) -> list[StarvedPartition]:
    """The partitions among ``parts`` whose waiting tenants no live worker may take, from the
    replies of :func:`queue_ready_reads` (``taken_over``: orphaned partitions live workers serve)."""
    status = {w.worker_id: w.status for w in workers}
    live = [w for w in workers if w.alive]
    out: list[StarvedPartition] = []
    for i, part in enumerate(parts):
        if part in taken_over:
            continue
        waiting, users = int(replies[2 * i]), [text(u) for u in replies[2 * i + 1]]
        starved = tuple(u for u in users if not any(may_take(w, u) for w in live))
        if not starved:
            continue
        owner_status: str | None
        assigned: tuple[str, ...]
        if part == POOL_PARTITION:
            owner_status, assigned = None, ()
            start = tuple(w.id for w in config.workers if any(w.may_steal(u) for u in starved))
        else:
            owner_status, start = status.get(part, NEVER_SEEN), (part,)
            assigned = config.get_worker(part).assigned_users
        out.append(StarvedPartition(partition=part, owner_status=owner_status, assigned=assigned, tenants=starved,
                                    waiting=waiting, scanned=len(users), start=start))
    return out


@dataclass(frozen=True, slots=True)
class UnservedAssignment:
    """A configured worker id that is not alive and the ``assigned_users`` entries it leaves:
    ``unserved`` no live worker may steal (their tenants wait until it starts); ``steal_only``
    are covered by the live ``stealers`` (served only when those have nothing of their own)."""

    worker_id: str
    status: str
    unserved: tuple[str, ...]
    steal_only: tuple[str, ...]
    stealers: tuple[str, ...]


def unserved_from(config: FairQueueConfig, statuses: Mapping[str, str],
                  also_alive: Iterable[str] = ()) -> list[UnservedAssignment]:
    """What the configured workers that are not alive (by their liveness ``statuses``, counting
    the ids in ``also_alive`` as alive) leave unserved."""
    alive = {w for w, s in statuses.items() if s == ALIVE} | set(also_alive)
    live = [w for w in config.workers if w.id in alive]
    out: list[UnservedAssignment] = []
    for worker in config.workers:
        if worker.id in alive:
            continue
        unserved: list[str] = []
        steal_only: list[str] = []
        stealers: list[str] = []
        for entry in worker.assigned_users:
            takers = [w.id for w in live if any(t == entry or glob_match(t, entry) for t in w.steal_targets)]
            (steal_only if takers else unserved).append(entry)
            stealers += [t for t in takers if t not in stealers]
        out.append(UnservedAssignment(worker.id, statuses.get(worker.id, NEVER_SEEN),
                                      tuple(unserved), tuple(steal_only), tuple(stealers)))
    return out
