"""The rows of a snapshot: one per tenant (or the ``other`` aggregate), one per worker id and, with
several keyspace shards, one per shard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .samples import Histogram

OTHER: Final = "other"
"""The tenant label of the aggregate of every tenant outside the top ``n``."""


@dataclass(frozen=True, slots=True)
class TenantMetrics:
    """One tenant (or, for ``tenant == "other"``, every tenant outside the top ``n``).

    ``delayed`` is derived (unfinished - ready - leased): exact, except that when the lease scan
    was truncated (``QueueMetrics.leases_truncated``) ``leased`` is a lower bound and ``delayed``
    may hold the leased tasks not scanned. For ``other``, ``critical`` is exact only when
    ``exact_lanes`` (at most ``other_scan_limit`` such tenants); otherwise it is a lower bound and
    ``normal`` holds the rest of the ready tasks. The ages are seconds the head of each lane has
    been ready (None for ``other`` and for an empty lane). ``owner``: the configured worker whose
    partition holds the tenant (None: the pool, or no workers configured).

    Limits (:mod:`~fairque_django.core.config.limits`; defaults for ``other``): ``running`` the
    tasks leased now, fleet-wide (``P:tleased``: exact, where ``leased`` comes from the lease
    scan), ``cap`` and ``rate`` in force (None: none), ``paused``, and ``held`` why the tenant is
    out of its rotation with work queued (``"paused"``, ``"cap"``, ``"rate"`` or None)."""

    tenant: str
    unfinished: int
    critical: int
    normal: int
    delayed: int
    leased: int
    enqueued: int
    completed: int
    failed: int
    dead: int
    wait: Histogram
    run: Histogram
    oldest_critical_seconds: float | None = None
    oldest_normal_seconds: float | None = None
    owner: str | None = None
    tenants: int = 1
    exact_lanes: bool = True
    running: int = 0
    cap: int | None = None
    rate: str | None = None
    paused: bool = False
    held: str | None = None

    @property
    def at_cap(self) -> bool:
        """Whether the tenant has as many tasks leased as its cap allows (or more: a lowered cap)."""
        return self.cap is not None and self.running >= self.cap

    @property
    def ready(self) -> int:
        return self.critical + self.normal

    @property
    def oldest_wait_seconds(self) -> float | None:
        """How long the next ready task (of either lane) has waited; None: nothing ready."""
        ages = [a for a in (self.oldest_critical_seconds, self.oldest_normal_seconds) if a is not None]
        return max(ages) if ages else None

    @property
    def depth(self) -> dict[str, int]:
        return {"critical": self.critical, "normal": self.normal, "delayed": self.delayed, "leased": self.leased}

    def to_dict(self) -> dict[str, Any]:
        oldest = self.oldest_wait_seconds
        return {
            "tenant": self.tenant, "unfinished": self.unfinished, "ready": self.ready, "depth": self.depth,
            "oldest_wait_seconds": None if oldest is None else round(oldest, 3),
            "enqueued": self.enqueued, "completed": self.completed, "failed": self.failed, "dead": self.dead,
            "wait": self.wait.summary(), "run": self.run.summary(), "tenants": self.tenants,
            "exact_lanes": self.exact_lanes,
            "limits": {"running": self.running, "cap": self.cap, "rate": self.rate, "paused": self.paused,
                       "held": self.held},
        }


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """A worker id: ``status`` is one of :data:`~.liveness.LIVENESS` (``alive``, ``stale``,
    ``down``, ``never seen``; see :func:`~.liveness.worker_liveness`). ``processed``/``failed``
    count since the worker process started; ``current`` (the tasks it runs) is kept only while it
    is alive. ``record`` is its health record while one is on file (alive, or stale before it
    expires). ``leased``: tasks leased to this id in Redis (a lower bound when
    ``leases_truncated``)."""

    worker_id: str
    configured: bool
    status: str
    heartbeat_age: float | None
    last_seen: float | None
    busy_slots: int
    slots: int
    processed: int
    failed: int
    current: list[dict[str, Any]]
    assigned: tuple[str, ...]
    steals: tuple[str, ...]
    host: str | None
    pid: int | None
    leased: int = 0
    leases_truncated: bool = False
    record: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.status == "alive"

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id, "configured": self.configured, "status": self.status,
            "alive": self.alive,
            "heartbeat_age": None if self.heartbeat_age is None else round(self.heartbeat_age, 3),
            "last_seen": self.last_seen, "busy_slots": self.busy_slots, "slots": self.slots,
            "processed": self.processed, "failed": self.failed, "current": self.current,
            "assigned": list(self.assigned), "steals": list(self.steals), "host": self.host, "pid": self.pid,
        }


@dataclass(frozen=True, slots=True)
class ShardMetrics:
    """One keyspace shard's part of a snapshot's global figures (``queue.shards`` > 1): its tasks
    by state (``ready`` in a lane, ``delayed``, ``leased``) and its tenants with unfinished tasks.
    Summed over the shards they are the snapshot's ``ready``, ``delayed``, ``leased`` and
    ``tenants_with_work``."""

    shard: int
    ready: int
    delayed: int
    leased: int
    tenants_with_work: int

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "ready": self.ready, "delayed": self.delayed, "leased": self.leased,
                "tenants_with_work": self.tenants_with_work}
