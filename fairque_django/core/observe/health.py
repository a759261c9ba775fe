"""Probes built on the read model: the load-balancer health body and, for a starting worker,
what the configured workers that are not running leave unserved."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .fanout import QueueShards
from .liveness import ALIVE
from .snapshot import QueueMetrics, collect_metrics
from .stalled import STALL_SCAN
from .starved import UnservedAssignment, unserved_from

logger = logging.getLogger("fairque_django.health")


def light_snapshot(queue: QueueShards, *, alerts: bool = False, stall_scan: int = STALL_SCAN) -> QueueMetrics:
    """The global figures, the workers and the stall check (``stall_scan`` tenants) only: no tenant
    rows, no lease scan, no starvation check, no counter snapshot (what a liveness or health probe
    needs)."""
    return collect_metrics(queue, 0, lease_scan_limit=0, other_scan_limit=0, check_starved=False,
                           stall_scan=stall_scan,
                           record_sample=False, alerts=alerts)


def unserved_assignments(queue: QueueShards, also_alive: Iterable[str] = ()) -> list[UnservedAssignment]:
    """What the configured workers that are not alive leave unserved, counting the ids in
    ``also_alive`` (e.g. a worker that is starting) as alive."""
    statuses = {w.worker_id: w.status for w in light_snapshot(queue, stall_scan=0).workers}
    return unserved_from(queue.config, statuses, also_alive)


def health_status(queue: QueueShards, *, details: bool = False) -> tuple[bool, dict[str, Any]]:
    """Load-balancer health: (healthy, JSON-ready body). Healthy when Redis answers and at least
    one worker is ``alive``. The body holds counts only (workers per liveness label, stalled
    tenants: see :mod:`.stalled`), never tenant data or worker names; why Redis failed (its
    address included) only with ``details``."""
    body: dict[str, Any] = {"redis": False, "live_workers": 0, "workers": len(queue.config.workers),
                            "workers_by_status": None, "dlq_size": None, "firing_alerts": None,
                            "stalled_tenants": None}
    try:
        snapshot = light_snapshot(queue, alerts=True)
    except Exception as exc:  # any failure to reach Redis makes the instance unhealthy
        logger.warning("fairque health: Redis unavailable: %s: %s", type(exc).__name__, exc)
        why = f"{type(exc).__name__}: {exc}" if details else "unreachable"
        body.update(status="unavailable", reason=f"redis: {why}")
        return False, body
    by_status = snapshot.workers_by_status()
    firing = sum(1 for k, v in (snapshot.alert_states or {}).items() if k.startswith("s:") and v == "firing")
    body.update(redis=True, live_workers=by_status[ALIVE], workers_by_status=by_status,
                dlq_size=snapshot.dlq_size, firing_alerts=firing, stalled_tenants=len(snapshot.stalled))
    if by_status[ALIVE] == 0:
        body.update(status="unavailable", reason="no live worker (no fresh heartbeat)")
        return False, body
    body["status"] = "ok"
    return True, body
