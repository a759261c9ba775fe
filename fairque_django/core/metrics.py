"""Metrics read API: one bounded-cost snapshot of everything a dashboard, an exporter or an alert
rule needs (no Django imports).

:func:`collect_metrics` returns a :class:`QueueMetrics`:

* per tenant, for the ``top_n`` tenants with the most unfinished work (the ``live`` sorted set):
  depth by lane (critical / normal / delayed / leased), the age of the oldest ready task, the
  enqueued / completed / failed / dead counters and the wait-time and run-time histograms;
* ``other``: the same numbers for every remaining tenant at once, computed as the global figures
  minus the top ``n`` (so labels stay bounded however many tenants there are);
* per worker: liveness (:data:`LIVENESS`, one rule: :func:`worker_liveness`), heartbeat age,
  busy slots, processed / failed, current tasks;
* ``starved``: partitions whose waiting tenants no live worker may take (:func:`starved_partitions`);
* global: counters, depth, DLQ size, histograms, throughput over the last minute and hour (from
  the per-minute completion counts ``{prefix}:m:~tput``) and, on request, counter deltas over
  time windows (from the counter snapshots shared with :class:`~.inspect.QueueInspector`).

The histograms are the ones the Lua scripts keep (``lua/lib.lua``: fixed bounds in ms, shared by
every worker, so they can be summed); :data:`BUCKETS_MS` lists the bounds.

Cost: four pipelined round trips whose size grows with ``top_n``, the number of leased tasks
(at most ``lease_scan_limit``) and at most ``other_scan_limit`` further tenants -- never with the
total number of tenants or queued tasks (the fourth reads at most ``STARVED_SCAN`` waiting tenants
of each partition whose worker is not alive, and of the pool). The writes are small and rate-limited: one counter
snapshot per ``sample_interval`` (10 s) shared by all processes, and :func:`record_history`
(one dashboard chart point per minute).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import redis

from .config import POOL_PARTITION, WorkerConfig, glob_match
from .keys import Keys
from .protocol import PRIORITY_PUSHED, STAT_FIELDS, _text, stat_counters
from .queue import TaskQueue, redis_errors

__all__ = [
    "ALIVE",
    "BUCKETS_MS",
    "DOWN",
    "LIVENESS",
    "NEVER_SEEN",
    "STALE",
    "CounterWindow",
    "Histogram",
    "Liveness",
    "QueueMetrics",
    "StarvedPartition",
    "TenantMetrics",
    "UnservedAssignment",
    "WorkerMetrics",
    "collect_metrics",
    "describe_starved",
    "down_after",
    "health_status",
    "load_history",
    "mark_stopped",
    "read_worker_traces",
    "record_history",
    "stale_after",
    "starved_partitions",
    "throughput_estimate",
    "trim_throughput",
    "unserved_assignments",
    "worker_liveness",
    "worker_states",
]

BUCKETS_MS: Final[tuple[int, ...]] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                                      300000)
"""Upper bounds (ms) of the finite histogram buckets; a last bucket (``inf``) takes the rest.
Must match ``BUCKETS`` in ``lua/lib.lua``."""

_FIELDS: Final = (*(str(b) for b in BUCKETS_MS), "inf")
OTHER: Final = "other"
"""The tenant label of the aggregate of every tenant outside the top ``n``."""

TPUT_KEEP_MINUTES: Final = 120
"""Per-minute completion counts older than this are trimmed (:func:`trim_throughput`)."""

SAMPLE_INTERVAL: Final = 10.0
SAMPLE_RETENTION: Final = 3600.0
SAMPLE_FIELDS: Final = ("pushed", "completed", "failed", "retried", "dead", "expired", "requeued", "deleted")
TENANT_COUNTERS: Final = (("enqueued", "pushed"), ("completed", "completed"), ("failed", "failed"),
                          ("dead", "dead"))
HISTORY_MINUTES: Final = 60
HISTORY_TENANTS: Final = 8

# Worker liveness: the one set of labels every view uses (docs/monitoring.md, "Worker liveness").
ALIVE: Final = "alive"
"""Health record present, last heartbeat younger than :func:`stale_after`."""
STALE: Final = "stale"
"""Seen, did not stop cleanly, last heartbeat older than :func:`stale_after` but younger than
:func:`down_after`: it died or hangs; its leased tasks return when their leases expire."""
DOWN: Final = "down"
"""Seen before, but stopped cleanly, or silent for longer than :func:`down_after`."""
NEVER_SEEN: Final = "never seen"
"""No trace in ``{prefix}:workers``: this id never ran against this Redis (and prefix)."""
LIVENESS: Final = (ALIVE, STALE, DOWN, NEVER_SEEN)
DOWN_FACTOR: Final = 2.0
WORKERS_READ: Final = 1000  # most recently seen worker ids read from {prefix}:workers
FORGET_UNCONFIGURED: Final = 86400.0  # an unconfigured id down for longer is not listed
STARVED_SCAN: Final = 200  # waiting tenants of a partition checked for a live worker that may take them


# --------------------------------------------------------------------------- key names

def metrics_key(keys: Keys, user: str) -> str:
    """The histogram hash of one user (``~all``: everyone)."""
    return keys.metrics_all if user == "~all" else keys.metrics_user(user)


def tput_key(keys: Keys) -> str:
    """Completions per minute (written by ``complete.lua``)."""
    return keys.metrics_throughput


def samples_key(keys: Keys) -> str:
    """Counter snapshots, shared with ``QueueInspector.samples_key`` (same key and format)."""
    return f"{keys.base}:admin:samples"


def history_key(keys: Keys) -> str:
    return f"{keys.base}:m:history"


# --------------------------------------------------------------------------- histograms

@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations per fixed bucket (not cumulative; the last one is ``+Inf``) and their sum."""

    counts: tuple[int, ...] = (0,) * (len(BUCKETS_MS) + 1)
    sum_ms: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any], kind: str) -> Histogram:
        """Read the ``<kind>:<le>`` / ``<kind>:sum`` fields of a metrics hash (kind ``w`` or ``r``)."""
        f = {_text(k): v for k, v in raw.items()}
        counts = tuple(_int(f.get(f"{kind}:{le}")) for le in _FIELDS)
        return cls(counts, _int(f.get(f"{kind}:sum")))

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def sum_seconds(self) -> float:
        return self.sum_ms / 1000.0

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound in seconds, observations <= it)``, ending with ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*BUCKETS_MS, math.inf), self.counts, strict=True):
            total += n
            out.append((bound / 1000.0, total))
        return out

    def quantile(self, q: float) -> float | None:
        """Estimated ``q``-quantile in seconds (linear within a bucket, as Prometheus'
        ``histogram_quantile``); the largest finite bound when it falls in ``+Inf``; None if empty."""
        total = self.count
        if total == 0:
            return None
        rank = max(0.0, min(1.0, q)) * total
        lower, seen = 0.0, 0
        for bound, n in zip(BUCKETS_MS, self.counts, strict=False):
            if n and seen + n >= rank:
                return (lower + (bound - lower) * (rank - seen) / n) / 1000.0
            seen += n
            lower = float(bound)
        return BUCKETS_MS[-1] / 1000.0

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
                         self.sum_ms + other.sum_ms)

    def minus(self, other: Histogram) -> Histogram:
        """``self - other`` clamped at zero per bucket (counters may be reset in between)."""
        return Histogram(tuple(max(0, a - b) for a, b in zip(self.counts, other.counts, strict=True)),
                         max(0, self.sum_ms - other.sum_ms))

    def summary(self) -> dict[str, Any]:
        p50, p95 = self.quantile(0.5), self.quantile(0.95)
        return {"count": self.count, "sum_ms": self.sum_ms, "counts": list(self.counts),
                "p50_ms": None if p50 is None else round(p50 * 1000, 1),
                "p95_ms": None if p95 is None else round(p95 * 1000, 1)}


def _int(value: Any) -> int:
    if value is None:
        return 0
    try:
        return int(float(_text(value)))
    except ValueError:
        return 0


# --------------------------------------------------------------------------- the snapshot

@dataclass(frozen=True, slots=True)
class TenantMetrics:
    """One tenant (or, for ``tenant == "other"``, every tenant outside the top ``n``).

    ``delayed`` is derived (unfinished - ready - leased). For ``other``, ``critical`` is exact
    only when ``exact_lanes`` (at most ``other_scan_limit`` such tenants); otherwise it is a lower
    bound and ``normal`` holds the rest of the ready tasks. ``oldest_wait_seconds`` is None for
    ``other`` and for a tenant with nothing ready."""

    tenant: str
    unfinished: int
    critical: int
    normal: int
    delayed: int
    leased: int
    oldest_wait_seconds: float | None
    enqueued: int
    completed: int
    failed: int
    dead: int
    wait: Histogram
    run: Histogram
    tenants: int = 1
    exact_lanes: bool = True

    @property
    def ready(self) -> int:
        return self.critical + self.normal

    @property
    def depth(self) -> dict[str, int]:
        return {"critical": self.critical, "normal": self.normal, "delayed": self.delayed, "leased": self.leased}

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "unfinished": self.unfinished, "ready": self.ready, "depth": self.depth,
            "oldest_wait_seconds": None if self.oldest_wait_seconds is None else round(self.oldest_wait_seconds, 3),
            "enqueued": self.enqueued, "completed": self.completed, "failed": self.failed, "dead": self.dead,
            "wait": self.wait.summary(), "run": self.run.summary(), "tenants": self.tenants,
            "exact_lanes": self.exact_lanes,
        }


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """A worker id: ``status`` is one of :data:`LIVENESS` (``alive``, ``stale``, ``down``,
    ``never seen``; see :func:`worker_liveness`). ``processed``/``failed`` count since the worker
    process started (live workers)."""

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
class CounterWindow:
    """Counter increase over ``seconds`` (the real time between a stored snapshot and now;
    shorter than asked when no snapshot is that old yet). A delta is None when the counter
    went down (stats were reset)."""

    requested: float
    seconds: float
    deltas: dict[str, int | None]

    def __getitem__(self, name: str) -> int | None:
        return self.deltas.get(name)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Everything at one moment (see the module docstring)."""

    timestamp: float  # Redis server time
    prefix: str
    top_n: int
    tenants: list[TenantMetrics]
    other: TenantMetrics | None
    tenants_with_work: int
    totals: dict[str, int]
    ready: int
    delayed: int
    leased: int
    dlq_size: int
    wait: Histogram
    run: Histogram
    throughput_last_minute: float
    throughput_last_hour: float
    throughput_per_minute: list[tuple[int, int]]  # (epoch minute, completions), last 60 minutes
    workers: list[WorkerMetrics]
    windows: dict[float, CounterWindow] = field(default_factory=dict)
    leases_truncated: bool = False
    starved: list[StarvedPartition] = field(default_factory=list)

    @property
    def depth(self) -> int:
        """Tasks waiting to run (ready in a lane), all tenants."""
        return self.ready

    @property
    def live_workers(self) -> list[WorkerMetrics]:
        return [w for w in self.workers if w.alive]

    def tenant(self, tenant: str) -> TenantMetrics | None:
        for row in self.tenants:
            if row.tenant == tenant:
                return row
        return None

    def all_tenant_rows(self) -> list[TenantMetrics]:
        """The top ``n`` and, when there are other tenants, the ``other`` aggregate."""
        return [*self.tenants, *([self.other] if self.other is not None else [])]

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp, "prefix": self.prefix, "top_n": self.top_n,
            "tenants_with_work": self.tenants_with_work,
            "tenants": [t.to_dict() for t in self.tenants],
            "other": self.other.to_dict() if self.other is not None else None,
            "totals": dict(self.totals),
            "depth": {"ready": self.ready, "delayed": self.delayed, "leased": self.leased},
            "dlq_size": self.dlq_size,
            "wait": self.wait.summary(), "run": self.run.summary(),
            "throughput": {"last_minute": round(self.throughput_last_minute, 3),
                           "last_hour": round(self.throughput_last_hour, 3),
                           "per_minute": [[m * 60, n] for m, n in self.throughput_per_minute]},
            "workers": [w.to_dict() for w in self.workers],
            "windows": {f"{k:g}": {"seconds": round(v.seconds, 3), "deltas": v.deltas}
                        for k, v in self.windows.items()},
            "leases_truncated": self.leases_truncated,
            "starved": [p.to_dict() for p in self.starved],
            "buckets_ms": [*BUCKETS_MS, "inf"],
        }


# --------------------------------------------------------------------------- throughput

def throughput_estimate(per_minute: Mapping[int, int], now_ms: int, minutes: int) -> float:
    """Completions in the last ``minutes`` minutes from per-minute counts: the current (partial)
    minute, the ``minutes - 1`` before it, and the oldest one weighted by the part of it that
    still lies inside the window."""
    current = now_ms // 60_000
    elapsed = (now_ms % 60_000) / 60_000
    total = float(sum(per_minute.get(current - i, 0) for i in range(minutes)))
    return total + per_minute.get(current - minutes, 0) * (1.0 - elapsed)


def trim_throughput(client: Any, keys: Keys, *, now_ms: int | None = None,
                    keep_minutes: int = TPUT_KEEP_MINUTES) -> int:
    """Drop per-minute completion counts older than ``keep_minutes``; returns how many."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    oldest = now_ms // 60_000 - keep_minutes
    key = tput_key(keys)
    with redis_errors("trim_throughput"):
        stale = [f for f in client.hkeys(key) if _int(f) < oldest]
        if stale:
            client.hdel(key, *stale)
    return len(stale)


# --------------------------------------------------------------------------- workers

def stale_after(queue: TaskQueue, worker: WorkerConfig | None) -> float:
    """Seconds without a heartbeat after which a worker is no longer ``alive`` (its record's TTL)."""
    beat = worker.heartbeat_interval_seconds if worker is not None else 5.0
    return max(3 * beat, queue.config.queue.lease_timeout_seconds)


def down_after(queue: TaskQueue, worker: WorkerConfig | None) -> float:
    """Seconds without a heartbeat after which a worker that did not stop cleanly is ``down``."""
    return DOWN_FACTOR * stale_after(queue, worker)


def mark_stopped(client: Any, keys: Keys, worker_id: str, at: float | None = None) -> None:
    """Record a clean stop: the id stays in ``{prefix}:workers`` (it has run), reads ``down``."""
    at = time.time() if at is None else at
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.workers, {worker_id: at})
    pipe.hset(keys.workers_stopped, worker_id, repr(at))
    pipe.execute()


@dataclass(frozen=True, slots=True)
class Liveness:
    """A worker id's liveness: ``status`` is one of :data:`LIVENESS`; ``last_seen`` the time of
    its last trace (heartbeat or stop), ``heartbeat_age`` seconds since then (None: never seen)."""

    status: str
    last_seen: float | None
    heartbeat_age: float | None

    @property
    def alive(self) -> bool:
        return self.status == ALIVE


def worker_liveness(*, last_beat: float | None, last_seen: float | None, stopped_at: float | None, now: float,
                    stale: float, down: float) -> Liveness:
    """The one liveness rule (see docs/monitoring.md, "Worker liveness").

    ``last_beat``: the beat of the worker's health record (None: no record); ``last_seen``: its
    score in ``{prefix}:workers`` (None: never there); ``stopped_at``: its last clean stop."""
    traces = [t for t in (last_beat, last_seen) if t is not None]
    if not traces:
        return Liveness(NEVER_SEEN, None, None)
    last = max(traces)
    age = max(0.0, now - last)
    if stopped_at is not None and stopped_at >= last - 0.001:  # (a stop written as text may round down)
        return Liveness(DOWN, last, age)  # stopped cleanly after its last beat
    if last_beat is not None and now - last_beat <= stale:
        return Liveness(ALIVE, last, age)
    return Liveness(STALE if age <= down else DOWN, last, age)


def read_worker_traces(queue: TaskQueue) -> tuple[dict[str, float], dict[str, float], dict[str, float | None]]:
    """(``{prefix}:workers`` scores, clean stops, health-record beats) of the configured ids and
    the most recently seen others -- the inputs of :func:`worker_states`."""
    keys = queue.keys
    with redis_errors("worker liveness"):
        pipe = queue.client.pipeline(transaction=False)
        pipe.zrevrange(keys.workers, 0, WORKERS_READ - 1, withscores=True)
        pipe.hgetall(keys.workers_stopped)
        seen_raw, stopped_raw = _replies(pipe.execute(raise_on_error=False), ([], {}))
        seen = {_text(w): float(s) for w, s in seen_raw}
        ids = list(dict.fromkeys([*queue.config.worker_ids, *seen]))
        pipe = queue.client.pipeline(transaction=False)
        for wid in ids:
            pipe.hget(keys.worker(wid), "last_seen")
        beats = dict(zip(ids, _replies(pipe.execute(raise_on_error=False), [None] * len(ids)), strict=True))
    return seen, _floats(stopped_raw), {w: (_float(b) if b is not None else None) for w, b in beats.items()}


def worker_states(queue: TaskQueue, seen: Mapping[str, float], stopped: Mapping[str, float],
                  beats: Mapping[str, float | None], now: float) -> dict[str, Liveness]:
    """Liveness of every configured worker id (configuration order), then of the other ids seen
    in the last :data:`FORGET_UNCONFIGURED` seconds (sorted)."""
    configured = {w.id: w for w in queue.config.workers}
    others = sorted((set(seen) | {w for w, b in beats.items() if b is not None}) - set(configured))
    out: dict[str, Liveness] = {}
    for wid in [*configured, *others]:
        cfg = configured.get(wid)
        state = worker_liveness(last_beat=beats.get(wid), last_seen=seen.get(wid), stopped_at=stopped.get(wid),
                                now=now, stale=stale_after(queue, cfg), down=down_after(queue, cfg))
        if cfg is None and state.status == DOWN and (state.heartbeat_age or 0.0) > FORGET_UNCONFIGURED:
            continue  # an old id no longer configured: not worth a row
        out[wid] = state
    return out


def _float(value: Any) -> float | None:
    try:
        return float(_text(value))
    except (TypeError, ValueError):
        return None


def _floats(raw: Mapping[Any, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (raw or {}).items():
        f = _float(v)
        if f is not None:
            out[_text(k)] = f
    return out


def _json_list(value: Any) -> list[Any]:
    try:
        data = json.loads(_text(value)) if value is not None else []
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _workers(queue: TaskQueue, seen: dict[str, float], stopped: dict[str, float],
             records: dict[str, dict[str, str]], now: float) -> list[WorkerMetrics]:
    configured = {w.id: w for w in queue.config.workers}
    beats = {wid: _float(rec.get("last_seen")) if rec else None for wid, rec in records.items()}
    out: list[WorkerMetrics] = []
    for wid, state in worker_states(queue, seen, stopped, beats, now).items():
        cfg = configured.get(wid)
        rec = records.get(wid) or {}
        alive = state.alive
        current = [c for c in _json_list(rec.get("current")) if isinstance(c, dict)] if alive else []
        assigned = cfg.assigned_users if cfg is not None else tuple(map(str, _json_list(rec.get("assigned"))))
        steals = cfg.steal_targets if cfg is not None else tuple(map(str, _json_list(rec.get("steals"))))
        out.append(WorkerMetrics(
            worker_id=wid, configured=cfg is not None, status=state.status, heartbeat_age=state.heartbeat_age,
            last_seen=state.last_seen, busy_slots=len(current),
            slots=_int(rec.get("concurrency")) or (cfg.max_concurrent_tasks if cfg is not None else 0),
            processed=_int(rec.get("processed")), failed=_int(rec.get("failed")),
            current=current, assigned=tuple(assigned), steals=tuple(steals),
            host=rec.get("host"), pid=_int(rec["pid"]) if rec.get("pid") else None,
        ))
    return out


# --------------------------------------------------------------------------- starvation by configuration

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


def unserved_assignments(queue: TaskQueue, also_alive: Iterable[str] = ()) -> list[UnservedAssignment]:
    """What the configured workers that are not alive leave unserved, counting the ids in
    ``also_alive`` (e.g. a worker that is starting) as alive. Reads only the workers' liveness."""
    states = worker_states(queue, *read_worker_traces(queue), time.time())
    alive = {w for w, s in states.items() if s.alive} | set(also_alive)
    live = [w for w in queue.config.workers if w.id in alive]
    out: list[UnservedAssignment] = []
    for worker in queue.config.workers:
        if worker.id in alive:
            continue
        unserved: list[str] = []
        steal_only: list[str] = []
        stealers: list[str] = []
        for entry in worker.assigned_users:
            takers = [w.id for w in live if any(t == entry or glob_match(t, entry) for t in w.steal_targets)]
            (steal_only if takers else unserved).append(entry)
            stealers += [t for t in takers if t not in stealers]
        state = states.get(worker.id)
        out.append(UnservedAssignment(worker.id, state.status if state is not None else NEVER_SEEN,
                                      tuple(unserved), tuple(steal_only), tuple(stealers)))
    return out


def may_take(worker: WorkerMetrics, user: str) -> bool:
    """Whether ``worker`` is assigned ``user`` or may steal it (exact ids or glob patterns)."""
    return any(entry == user or glob_match(entry, user) for entry in (*worker.assigned, *worker.steals))


def starved_partitions(queue: TaskQueue, workers: Sequence[WorkerMetrics], *,
                       scan: int = STARVED_SCAN) -> list[StarvedPartition]:
    """The partitions whose waiting tenants no live worker may take (one pipelined round trip,
    at most ``scan`` tenants read per partition whose owner is not alive, and the pool)."""
    config = queue.config
    status = {w.worker_id: w.status for w in workers}
    live = [w for w in workers if w.alive]
    parts = [wid for wid in config.worker_ids if status.get(wid) != ALIVE] + [POOL_PARTITION]
    with redis_errors("starved partitions"):
        pipe = queue.client.pipeline(transaction=False)
        for part in parts:
            pipe.zcard(queue.keys.ready(part))
            pipe.zrange(queue.keys.ready(part), 0, scan - 1)
        replies = _replies(pipe.execute(raise_on_error=False), [0, []] * len(parts))
    out: list[StarvedPartition] = []
    for i, part in enumerate(parts):
        waiting, users = int(replies[2 * i]), [_text(u) for u in replies[2 * i + 1]]
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


# --------------------------------------------------------------------------- counter windows

def _record_sample(queue: TaskQueue, counters: Mapping[str, int], now: float,
                   interval: float = SAMPLE_INTERVAL, retention: float = SAMPLE_RETENTION) -> None:
    """Store a counter snapshot unless one was stored in the last ``interval`` seconds (any process)."""
    key = samples_key(queue.keys)
    client = queue.client
    if not client.set(f"{key}:guard", "1", nx=True, px=max(1, int(interval * 1000))):
        return
    now_ms = int(now * 1000)
    member = json.dumps({"t": now, **{n: int(counters.get(n, 0)) for n in SAMPLE_FIELDS}}, separators=(",", ":"))
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {member: now_ms})
    pipe.zremrangebyscore(key, "-inf", now_ms - int(retention * 1000))
    pipe.pexpire(key, int(retention * 1000) + 60_000)
    pipe.execute()


def _windows(queue: TaskQueue, counters: Mapping[str, int], now: float, windows: Iterable[float],
             min_seconds: float = SAMPLE_INTERVAL) -> dict[float, CounterWindow]:
    key = samples_key(queue.keys)
    now_ms = int(now * 1000)
    wanted = sorted(set(float(w) for w in windows))
    if not wanted:
        return {}
    pipe = queue.client.pipeline(transaction=False)
    for w in wanted:
        # the newest snapshot at least w old; else the oldest one at least min_seconds old
        pipe.zrevrangebyscore(key, now_ms - int(w * 1000), "-inf", start=0, num=1)
    pipe.zrangebyscore(key, "-inf", now_ms - int(min_seconds * 1000), start=0, num=1)
    *found, oldest = pipe.execute()
    out: dict[float, CounterWindow] = {}
    for w, base in zip(wanted, found, strict=True):
        member = base[0] if base else (oldest[0] if oldest else None)
        if member is None:
            continue
        try:
            old = json.loads(_text(member))
            then = float(old["t"])
        except (ValueError, KeyError, TypeError):
            continue
        if now - then <= 0:
            continue
        deltas: dict[str, int | None] = {}
        for name in SAMPLE_FIELDS:
            d = int(counters.get(name, 0)) - int(old.get(name, 0))
            deltas[name] = None if d < 0 else d
        out[w] = CounterWindow(requested=w, seconds=now - then, deltas=deltas)
    return out


# --------------------------------------------------------------------------- collect

def _replies(replies: Sequence[Any], defaults: Sequence[Any]) -> list[Any]:
    """Pipeline replies with errors (e.g. WRONGTYPE on a corrupt key) replaced by defaults;
    a connection problem is raised as usual."""
    out = []
    for reply, default in zip(replies, defaults, strict=True):
        if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
            raise reply
        out.append(default if isinstance(reply, Exception) else reply)
    return out


def collect_metrics(queue: TaskQueue, top_n: int = 20, *, windows: Iterable[float] = (),
                    record_sample: bool = True, sample_interval: float = SAMPLE_INTERVAL,
                    lease_scan_limit: int = 10_000, other_scan_limit: int = 1000,
                    check_starved: bool = True) -> QueueMetrics:
    """A :class:`QueueMetrics` snapshot of ``queue`` (see the module docstring for the cost).

    ``windows``: seconds over which counter deltas are wanted (``QueueMetrics.windows``); a
    counter snapshot is stored at most every ``sample_interval`` seconds (by any process)."""
    top_n = max(1, int(top_n))
    keys = queue.keys
    client = queue.client
    with redis_errors("collect_metrics"):
        pipe = client.pipeline(transaction=True)  # one consistent view of the global figures
        pipe.zrevrange(keys.live, 0, top_n - 1, withscores=True)
        pipe.zcard(keys.live)
        pipe.hmget(keys.stats, *STAT_FIELDS, *PRIORITY_PUSHED)
        pipe.zcard(keys.leases)
        pipe.zcard(keys.delayed)
        pipe.zcard(keys.dlq)
        pipe.zrange(keys.leases, 0, lease_scan_limit - 1)
        pipe.hgetall(metrics_key(keys, "~all"))
        pipe.hgetall(tput_key(keys))
        pipe.zrevrange(keys.workers, 0, WORKERS_READ - 1, withscores=True)
        pipe.hgetall(keys.workers_stopped)
        pipe.zrevrange(keys.live, top_n, top_n + other_scan_limit - 1)
        pipe.time()
        # a key of the wrong type (corrupt data, see pop.lua's quarantine) must not hide the rest
        defaults: tuple[Any, ...] = ([], 0, [None] * (len(STAT_FIELDS) + len(PRIORITY_PUSHED)), 0, 0, 0, [], {},
                                     {}, [], {}, [], None)
        (top, n_users, stat_values, n_leased, n_delayed, n_dlq, lease_ids, all_hist, tput, seen_raw,
         stopped_raw, others, (sec, usec)) = _replies(pipe.execute(raise_on_error=False), defaults)
        now_ms = int(sec) * 1000 + int(usec) // 1000
        now_exact = int(sec) + int(usec) / 1e6  # orders snapshots (alert transitions)
        users = [(_text(u), int(s)) for u, s in top]
        seen = {_text(w): float(s) for w, s in seen_raw}
        worker_ids = list(dict.fromkeys([*queue.config.worker_ids, *seen]))

        pipe = client.pipeline(transaction=False)
        for user, _ in users:
            pipe.llen(keys.critical(user))
            pipe.zcard(keys.normal(user))
            pipe.lindex(keys.critical(user), -1)  # RPOP side: the one served next
            pipe.zrange(keys.normal(user), 0, 0)
            pipe.hmget(keys.stats, *(f"u:{user}:{f}" for _, f in TENANT_COUNTERS))
            pipe.hgetall(metrics_key(keys, user))
        for task_id in lease_ids:
            pipe.hget(keys.task(_text(task_id)), "u")
        for wid in worker_ids:
            pipe.hgetall(keys.worker(wid))
        for user in others:
            pipe.llen(keys.critical(_text(user)))
        defaults = (*([0, 0, None, [], [None] * len(TENANT_COUNTERS), {}] * len(users)),
                    *([None] * len(lease_ids)), *([{}] * len(worker_ids)), *([0] * len(others)))
        replies = iter(_replies(pipe.execute(raise_on_error=False), defaults))
        per_user = [[next(replies) for _ in range(6)] for _ in users]
        lease_users = [next(replies) for _ in lease_ids]
        records = {wid: {_text(k): _text(v) for k, v in (next(replies) or {}).items()} for wid in worker_ids}
        other_critical = sum(int(next(replies)) for _ in others)

        heads: list[str] = []
        for crit_head, normal_head in ((r[2], r[3]) for r in per_user):
            for head in (crit_head, normal_head[0] if normal_head else None):
                if head is not None:
                    heads.append(_text(head))
        pipe = client.pipeline(transaction=False)
        for head in heads:
            pipe.hget(keys.task(head), "e")
        ready_since = dict(zip(heads, _replies(pipe.execute(raise_on_error=False), (None,) * len(heads)),
                               strict=True))

        counters = stat_counters([*STAT_FIELDS, *PRIORITY_PUSHED], [_int(v) for v in stat_values])
        totals = {name: counters[name] for name in STAT_FIELDS}
        windows = tuple(windows)
        if record_sample:
            _record_sample(queue, totals, now_ms / 1000.0, sample_interval)
        counter_windows = _windows(queue, totals, now_ms / 1000.0, windows, sample_interval) if windows else {}

    leased_by_user: dict[str, int] = {}
    for u in lease_users:
        if u is not None:
            leased_by_user[_text(u)] = leased_by_user.get(_text(u), 0) + 1

    rows: list[TenantMetrics] = []
    for (user, unfinished), (crit, normal, crit_head, normal_head, counters, hist) in zip(users, per_user,
                                                                                          strict=True):
        crit, normal = int(crit), int(normal)
        leased = min(leased_by_user.get(user, 0), unfinished)
        ages = []
        for head in (crit_head, normal_head[0] if normal_head else None):
            e = ready_since.get(_text(head)) if head is not None else None
            if e is not None:
                ages.append(max(0.0, (now_ms - _int(e)) / 1000.0))
        enqueued, completed, failed, dead = (_int(v) for v in counters)
        rows.append(TenantMetrics(
            tenant=user, unfinished=unfinished, critical=crit, normal=normal,
            delayed=max(0, unfinished - crit - normal - leased), leased=leased,
            oldest_wait_seconds=max(ages) if ages else None, enqueued=enqueued, completed=completed,
            failed=failed, dead=dead, wait=Histogram.from_hash(hist, "w"), run=Histogram.from_hash(hist, "r"),
        ))

    n_leased, n_delayed, n_dlq = int(n_leased), int(n_delayed), int(n_dlq)
    pending = max(0, totals["pushed"] - totals["completed"] - totals["deleted"] - n_dlq)
    ready = max(0, pending - n_leased - n_delayed)
    wait_all, run_all = Histogram.from_hash(all_hist, "w"), Histogram.from_hash(all_hist, "r")
    other = _other(rows, int(n_users), totals, pending, ready, n_leased, n_delayed, wait_all, run_all,
                   other_critical, exact=int(n_users) - len(rows) <= len(others))
    per_minute = {_int(k): _int(v) for k, v in tput.items()}
    current = now_ms // 60_000
    workers = _workers(queue, seen, _floats(stopped_raw), records, time.time())
    return QueueMetrics(
        timestamp=now_exact, prefix=queue.config.queue.stats_prefix, top_n=top_n, tenants=rows,
        other=other, tenants_with_work=int(n_users), totals=totals, ready=ready, delayed=n_delayed,
        leased=n_leased, dlq_size=n_dlq, wait=wait_all, run=run_all,
        throughput_last_minute=throughput_estimate(per_minute, now_ms, 1),
        throughput_last_hour=throughput_estimate(per_minute, now_ms, 60),
        throughput_per_minute=[(m, per_minute.get(m, 0)) for m in range(current - 59, current + 1)],
        workers=workers, windows=counter_windows, leases_truncated=len(lease_ids) < n_leased,
        starved=starved_partitions(queue, workers) if check_starved else [],
    )


def _other(rows: Sequence[TenantMetrics], n_users: int, totals: Mapping[str, int], pending: int, ready: int,
           leased: int, delayed: int, wait: Histogram, run: Histogram, critical_scanned: int, *,
           exact: bool) -> TenantMetrics | None:
    """Everything outside the top rows: the global figures minus theirs."""
    count = n_users - len(rows)
    if count <= 0:
        return None
    o_unfinished = max(0, pending - sum(r.unfinished for r in rows))
    o_leased = max(0, leased - sum(r.leased for r in rows))
    o_delayed = max(0, delayed - sum(r.delayed for r in rows))
    o_ready = max(0, ready - sum(r.ready for r in rows))
    o_critical = min(critical_scanned, o_ready)
    counters = {name: max(0, totals.get(stat, 0) - sum(getattr(r, name) for r in rows))
                for name, stat in TENANT_COUNTERS}
    o_wait, o_run = wait, run
    for r in rows:
        o_wait, o_run = o_wait.minus(r.wait), o_run.minus(r.run)
    return TenantMetrics(tenant=OTHER, unfinished=o_unfinished, critical=o_critical, normal=o_ready - o_critical,
                         delayed=o_delayed, leased=o_leased, oldest_wait_seconds=None, wait=o_wait, run=o_run,
                         tenants=count, exact_lanes=exact, enqueued=counters["enqueued"],
                         completed=counters["completed"], failed=counters["failed"], dead=counters["dead"])


# --------------------------------------------------------------------------- health

def health_status(queue: TaskQueue) -> tuple[bool, dict[str, Any]]:
    """Load-balancer health: (healthy, JSON-ready body). Healthy when Redis answers and at least
    one worker is ``alive``. The body holds counts only (workers per liveness label), never
    tenant data or worker names."""
    body: dict[str, Any] = {"redis": False, "live_workers": 0, "workers": len(queue.config.workers),
                            "workers_by_status": None, "dlq_size": None, "firing_alerts": None}
    keys = queue.keys
    try:
        with redis_errors("health"):
            pipe = queue.client.pipeline(transaction=False)
            pipe.ping()
            pipe.zcard(keys.dlq)
            pipe.hgetall(f"{keys.base}:alerts")
            _, dlq, alerts = pipe.execute()
            states = worker_states(queue, *read_worker_traces(queue), time.time())
    except Exception as exc:  # any failure to reach Redis makes the instance unhealthy
        body.update(status="unavailable", reason=f"redis: {type(exc).__name__}: {exc}")
        return False, body
    by_status = {label: sum(1 for s in states.values() if s.status == label) for label in LIVENESS}
    firing = sum(1 for k, v in alerts.items() if _text(k).startswith("s:") and _text(v) == "firing")
    body.update(redis=True, live_workers=by_status[ALIVE], workers_by_status=by_status, dlq_size=int(dlq),
                firing_alerts=firing)
    if by_status[ALIVE] == 0:
        body.update(status="unavailable", reason="no live worker (no fresh heartbeat)")
        return False, body
    body["status"] = "ok"
    return True, body


# --------------------------------------------------------------------------- chart history

def record_history(queue: TaskQueue, metrics: QueueMetrics, *, interval: float = 60.0,
                   max_tenants: int = HISTORY_TENANTS, keep_minutes: int = HISTORY_MINUTES) -> bool:
    """Store one chart point (the busiest tenants' ready depth and median wait since the previous
    point) unless one was stored in the last ``interval`` seconds by any process. Bounded: at
    most ``keep_minutes`` points of ``max_tenants`` tenants. Returns True when one was stored."""
    key = history_key(queue.keys)
    client = queue.client
    with redis_errors("record_history"):
        if not client.set(f"{key}:guard", "1", nx=True, px=max(1, int(interval * 1000))):
            return False
        last = client.zrevrange(key, 0, 0)
        previous: dict[str, Any] = {}
        if last:
            try:
                previous = dict(json.loads(_text(last[0])).get("u") or {})
            except (ValueError, AttributeError):
                previous = {}
        tenants: dict[str, Any] = {}
        for row in sorted(metrics.tenants, key=lambda r: (-r.ready, r.tenant))[:max_tenants]:
            counts = list(row.wait.counts)
            p50: float | None = None
            before = previous.get(row.tenant)
            if isinstance(before, dict) and isinstance(before.get("c"), list) and len(before["c"]) == len(counts):
                delta = Histogram(tuple(max(0, a - int(b)) for a, b in zip(counts, before["c"], strict=True)))
                q = delta.quantile(0.5)
                p50 = None if q is None else round(q * 1000, 1)
            tenants[row.tenant] = {"r": row.ready, "w": p50, "c": counts}
        now_ms = int(metrics.timestamp * 1000)
        member = json.dumps({"t": metrics.timestamp, "u": tenants}, separators=(",", ":"))
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {member: now_ms})
        pipe.zremrangebyscore(key, "-inf", now_ms - (keep_minutes + 1) * 60_000)
        pipe.zremrangebyrank(key, 0, -(keep_minutes + 2))
        pipe.pexpire(key, (keep_minutes + 60) * 60_000)
        pipe.execute()
    return True


def load_history(queue: TaskQueue, *, minutes: int = HISTORY_MINUTES) -> list[dict[str, Any]]:
    """The stored chart points of the last ``minutes`` minutes, oldest first:
    ``{"t": seconds, "tenants": {tenant: {"ready": n, "wait_p50_ms": ms or None}}}``."""
    key = history_key(queue.keys)
    with redis_errors("load_history"):
        sec, usec = queue.client.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        raw = queue.client.zrangebyscore(key, now_ms - minutes * 60_000, "+inf")
    out: list[dict[str, Any]] = []
    for member in raw:
        try:
            point = json.loads(_text(member))
            tenants = {str(u): {"ready": int(v.get("r", 0)), "wait_p50_ms": v.get("w")}
                       for u, v in dict(point.get("u") or {}).items() if isinstance(v, dict)}
            out.append({"t": float(point["t"]), "tenants": tenants})
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def with_windows(metrics: QueueMetrics, windows: dict[float, CounterWindow]) -> QueueMetrics:
    """A copy of ``metrics`` with other counter windows (for tests and re-evaluation)."""
    return replace(metrics, windows=windows)
