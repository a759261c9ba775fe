"""Read API for dashboards: queue overview, per-user depth, workers and a filterable DLQ.

:class:`QueueInspector` wraps a :class:`TaskQueue` and never imports Django. Every method has a
bounded cost: scans read at most ``scan_limit`` entries of a sorted set and report when they
stopped early (``truncated``), so counts shown from a scan are lower bounds ("≥ n").

The only write is the rate sample of :meth:`QueueInspector.overview`: at most one small
snapshot of the counters per ``sample_interval`` seconds (shared by all processes through a
``SET NX`` guard), kept for ``sample_retention`` seconds under ``{prefix}:admin:samples``.
Rates are the difference between the current counters and a stored snapshot, divided by the
real time between them; with no snapshot old enough yet, there are no rates (``None``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import WorkerConfig
from .metrics import ALIVE, STALE, read_worker_traces, stale_after, worker_states
from .models import DLQEntry
from .protocol import _text, chunks
from .queue import TaskQueue, redis_errors
from .worker import worker_health

__all__ = [
    "DLQFacets",
    "DLQPage",
    "Overview",
    "QueueInspector",
    "Rates",
    "UserRow",
    "UsersReport",
    "WorkerRow",
]

# Counters whose rate the overview reports (names as in the stats hash).
RATE_FIELDS = ("pushed", "completed", "failed", "retried", "dead", "expired", "requeued", "deleted")
_PIPE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Rates:
    """Counter increase per minute between a stored snapshot and now."""

    window_seconds: float
    per_minute: dict[str, float | None]  # None: the counter went down (stats were reset)

    def __getitem__(self, name: str) -> float | None:
        return self.per_minute.get(name)


@dataclass(frozen=True, slots=True)
class Overview:
    """Totals from :meth:`TaskQueue.get_stats` plus rates and the number of users with work."""

    stats: dict[str, Any]
    users_with_work: int
    rates: Rates | None
    redis_time: float

    @property
    def counters(self) -> dict[str, int]:
        return {name: int(self.stats.get(f"tasks_{name}", 0)) for name in RATE_FIELDS}


@dataclass(frozen=True, slots=True)
class UserRow:
    """One user with unfinished work. ``delayed``/``leased`` are lower bounds when the report's
    scans were truncated; ages are seconds the head of each lane has been ready (None: empty)."""

    user_id: str
    unfinished: int
    critical: int
    normal: int
    delayed: int
    leased: int
    oldest_critical_age: float | None
    oldest_normal_age: float | None
    owner: str | None

    @property
    def ready(self) -> int:
        return self.critical + self.normal

    @property
    def oldest_wait_age(self) -> float | None:
        ages = [a for a in (self.oldest_critical_age, self.oldest_normal_age) if a is not None]
        return max(ages) if ages else None


@dataclass(frozen=True, slots=True)
class UsersReport:
    rows: list[UserRow]
    total_users: int  # users with unfinished work (the size of the live set)
    limit: int
    delayed_total: int
    delayed_scanned: int
    leases_total: int
    leases_scanned: int

    @property
    def delayed_truncated(self) -> bool:
        return self.delayed_scanned < self.delayed_total

    @property
    def leases_truncated(self) -> bool:
        return self.leases_scanned < self.leases_total

    @property
    def users_truncated(self) -> bool:
        return len(self.rows) < self.total_users


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker id with its heartbeat. ``status`` is one of the liveness labels shared by every
    view (:data:`~.metrics.LIVENESS`: ``alive``, ``stale``, ``down``, ``never seen``)."""

    worker_id: str
    configured: bool
    status: str
    heartbeat_age: float | None
    last_seen: float | None
    health: dict[str, Any] | None
    assigned_users: tuple[str, ...]
    steal_targets: tuple[str, ...]
    running: list[dict[str, Any]]
    leased: int  # tasks leased to this worker id in Redis (lower bound when leases were truncated)
    leases_truncated: bool

    @property
    def alive(self) -> bool:
        return self.status == "alive"


@dataclass(frozen=True, slots=True)
class DLQPage:
    """One page of the dead-letter queue, newest first.

    Without filters ``total`` is exact. With filters only the newest ``scanned`` entries were
    examined; when ``exact`` is False older matches may exist beyond them.
    """

    entries: list[DLQEntry]
    offset: int
    limit: int
    total: int
    exact: bool
    dlq_size: int
    scanned: int
    filtered: bool

    @property
    def truncated(self) -> bool:
        return not self.exact


@dataclass(frozen=True, slots=True)
class DLQFacets:
    """Users and error types among the newest ``scanned`` dead tasks, most frequent first."""

    users: list[tuple[str, int]]
    error_types: list[tuple[str, int]]
    scanned: int
    dlq_size: int

    @property
    def truncated(self) -> bool:
        return self.scanned < self.dlq_size


@dataclass(slots=True)
class _LeaseScan:
    by_user: Counter[str] = field(default_factory=Counter)
    by_worker: Counter[str] = field(default_factory=Counter)
    total: int = 0
    scanned: int = 0

    @property
    def truncated(self) -> bool:
        return self.scanned < self.total


class QueueInspector:
    """Read-only, bounded-cost views of one queue's Redis state (see the module docstring)."""

    def __init__(self, queue: TaskQueue, *, scan_limit: int = 10_000, sample_interval: float = 10.0,
                 sample_retention: float = 3600.0, rate_window: float = 60.0,
                 record_samples: bool = True) -> None:
        if scan_limit < 1:
            raise ValueError("scan_limit must be >= 1")
        self.queue = queue
        self.client = queue.client
        self.keys = queue.keys
        self.config = queue.config
        self.scan_limit = scan_limit
        self.sample_interval = sample_interval
        self.sample_retention = sample_retention
        self.rate_window = rate_window
        self.record_samples = record_samples

    @property
    def samples_key(self) -> str:
        return f"{self.keys.base}:admin:samples"

    # --- overview ---------------------------------------------------------------------
    def redis_time(self) -> float:
        """The Redis server's clock (task times such as ``dt`` and ``e`` come from it)."""
        with redis_errors("redis_time"):
            sec, usec = self.client.time()
        return float(sec) + usec / 1e6

    def overview(self) -> Overview:
        """Totals, gauges and per-minute rates (None until a snapshot is old enough)."""
        stats = self.queue.get_stats()
        with redis_errors("overview"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(self.keys.live)
            pipe.time()
            users, (sec, usec) = pipe.execute()
        now = sec + usec / 1e6
        counters = {name: int(stats.get(f"tasks_{name}", 0)) for name in RATE_FIELDS}
        rates = self._rates(counters, now)
        return Overview(stats=stats, users_with_work=int(users), rates=rates, redis_time=now)

    def _rates(self, counters: dict[str, int], now: float) -> Rates | None:
        key = self.samples_key
        now_ms = int(now * 1000)
        with redis_errors("overview rates"):
            if self.record_samples and self.client.set(
                    f"{key}:guard", "1", nx=True, px=max(1, int(self.sample_interval * 1000))):
                member = json.dumps({"t": now, **counters}, separators=(",", ":"))
                pipe = self.client.pipeline(transaction=False)
                pipe.zadd(key, {member: now_ms})
                pipe.zremrangebyscore(key, "-inf", now_ms - int(self.sample_retention * 1000))
                pipe.pexpire(key, int(self.sample_retention * 1000) + 60_000)
                pipe.execute()
            # the newest snapshot at least rate_window old; else the oldest at least one
            # sample interval old (a shorter, still real, window)
            base = self.client.zrevrangebyscore(key, now_ms - int(self.rate_window * 1000), "-inf",
                                                start=0, num=1)
            if not base:
                base = self.client.zrangebyscore(key, "-inf", now_ms - int(self.sample_interval * 1000),
                                                 start=0, num=1)
        if not base:
            return None
        try:
            old = json.loads(_text(base[0]))
            then = float(old["t"])
        except (ValueError, KeyError, TypeError):
            return None
        window = now - then
        if window <= 0:
            return None
        per_minute: dict[str, float | None] = {}
        for name, value in counters.items():
            delta = value - int(old.get(name, 0))
            per_minute[name] = None if delta < 0 else delta * 60.0 / window
        return Rates(window_seconds=window, per_minute=per_minute)

    # --- users ------------------------------------------------------------------------
    def users(self, limit: int = 50) -> UsersReport:
        """The ``limit`` users with the most unfinished work, with their depth per lane."""
        limit = max(1, int(limit))
        with redis_errors("users"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zrevrange(self.keys.live, 0, limit - 1, withscores=True)
            pipe.zcard(self.keys.live)
            pipe.time()
            top, total, (sec, usec) = pipe.execute()
            now_ms = sec * 1000 + usec // 1000
            users = [(_text(u), int(score)) for u, score in top]
            pipe = self.client.pipeline(transaction=False)
            for user, _ in users:
                pipe.llen(self.keys.critical(user))
                pipe.zcard(self.keys.normal(user))
                pipe.lindex(self.keys.critical(user), -1)  # RPOP side: served next
                pipe.zrange(self.keys.normal(user), 0, 0)
            lanes = pipe.execute()
            heads: list[tuple[str | None, str | None]] = []
            pipe = self.client.pipeline(transaction=False)
            for i in range(len(users)):
                crit_head = lanes[4 * i + 2]
                normal_head = lanes[4 * i + 3]
                c = _text(crit_head) if crit_head is not None else None
                n = _text(normal_head[0]) if normal_head else None
                heads.append((c, n))
                for head in (c, n):
                    if head is not None:
                        pipe.hget(self.keys.task(head), "e")
            ready_since = iter(pipe.execute())
            delayed_by_user, delayed_total, delayed_scanned = self._scan_users(self.keys.delayed)
            leases = self._scan_leases()
        rows: list[UserRow] = []
        for i, (user, unfinished) in enumerate(users):
            ages: list[float | None] = []
            for head in heads[i]:
                if head is None:
                    ages.append(None)
                    continue
                e = next(ready_since)
                ages.append(max(0.0, (now_ms - int(e)) / 1000.0) if e is not None else None)
            rows.append(UserRow(
                user_id=user, unfinished=unfinished,
                critical=int(lanes[4 * i]), normal=int(lanes[4 * i + 1]),
                delayed=delayed_by_user.get(user, 0), leased=leases.by_user.get(user, 0),
                oldest_critical_age=ages[0], oldest_normal_age=ages[1],
                owner=self.config.owner_of(user) if self.config.workers else None,
            ))
        return UsersReport(rows=rows, total_users=int(total), limit=limit,
                           delayed_total=delayed_total, delayed_scanned=delayed_scanned,
                           leases_total=leases.total, leases_scanned=leases.scanned)

    def _scan_users(self, key: str) -> tuple[Counter[str], int, int]:
        """Count the members of a task-id zset per user (at most ``scan_limit`` members)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrange(key, 0, self.scan_limit - 1)
        total, ids = pipe.execute()
        counts: Counter[str] = Counter()
        for group in chunks(ids, _PIPE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for task_id in group:
                pipe.hget(self.keys.task(_text(task_id)), "u")
            for user in pipe.execute():
                if user is not None:
                    counts[_text(user)] += 1
        return counts, int(total), len(ids)

    def _scan_leases(self) -> _LeaseScan:
        scan = _LeaseScan()
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self.keys.leases)
        pipe.zrange(self.keys.leases, 0, self.scan_limit - 1)
        total, ids = pipe.execute()
        scan.total, scan.scanned = int(total), len(ids)
        for group in chunks(ids, _PIPE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for task_id in group:
                pipe.hmget(self.keys.task(_text(task_id)), "u", "wk")
            for user, worker in pipe.execute():
                if user is not None:
                    scan.by_user[_text(user)] += 1
                if worker is not None:
                    scan.by_worker[_text(worker)] += 1
        return scan

    # --- workers ----------------------------------------------------------------------
    def stale_after(self, worker: WorkerConfig | None) -> float:
        """Seconds without a heartbeat after which a worker counts as stale (its record's TTL)."""
        return stale_after(self.queue, worker)

    def workers(self) -> list[WorkerRow]:
        """Every configured worker id (plus ids seen recently that are not configured)."""
        configured = {w.id: w for w in self.config.workers}
        states = worker_states(self.queue, *read_worker_traces(self.queue), time.time())
        with redis_errors("workers"):
            leases = self._scan_leases()
        rows: list[WorkerRow] = []
        for worker_id, state in states.items():
            cfg = configured.get(worker_id)
            health = worker_health(self.queue, worker_id) if state.status in (ALIVE, STALE) else None
            running = list(health.get("current") or []) if health is not None else []
            if cfg is not None:
                assigned, steals = cfg.assigned_users, cfg.steal_targets
            else:
                assigned = tuple(health.get("assigned") or ()) if health else ()
                steals = tuple(health.get("steals") or ()) if health else ()
            rows.append(WorkerRow(
                worker_id=worker_id, configured=cfg is not None, status=state.status,
                heartbeat_age=state.heartbeat_age, last_seen=state.last_seen, health=health,
                assigned_users=tuple(assigned), steal_targets=tuple(steals), running=running,
                leased=leases.by_worker.get(worker_id, 0), leases_truncated=leases.truncated,
            ))
        return rows

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_page(self, offset: int = 0, limit: int = 50, *, user: str | None = None,
                 error_type: str | None = None, search: str | None = None) -> DLQPage:
        """Dead tasks, newest first, optionally filtered by user and error type and searched
        by task id (exact, else prefix). Filtering examines at most ``scan_limit`` entries."""
        offset, limit = max(0, int(offset)), max(1, int(limit))
        user = user or None
        error_type = error_type or None
        search = (search or "").strip() or None
        with redis_errors("dlq_page"):
            size = int(self.client.zcard(self.keys.dlq))
            if user is None and error_type is None and search is None:
                ids = [_text(i) for i in self.client.zrevrange(self.keys.dlq, offset, offset + limit - 1)]
                return DLQPage(entries=self._entries(ids), offset=offset, limit=limit, total=size,
                               exact=True, dlq_size=size, scanned=0, filtered=False)
            if search is not None and user is None and error_type is None \
                    and self.client.zscore(self.keys.dlq, search) is not None:
                matches, scanned, exact = [search], 1, True
            else:
                matches, scanned = self._filter_dlq(user, error_type, search)
                exact = scanned >= size
        page = matches[offset:offset + limit]
        with redis_errors("dlq_page"):
            entries = self._entries(page)
        return DLQPage(entries=entries, offset=offset, limit=limit, total=len(matches), exact=exact,
                       dlq_size=size, scanned=scanned, filtered=True)

    def _filter_dlq(self, user: str | None, error_type: str | None,
                    search: str | None) -> tuple[list[str], int]:
        """Matching ids among the newest ``scan_limit`` dead tasks, and how many were examined."""
        window = [_text(i) for i in self.client.zrevrange(self.keys.dlq, 0, self.scan_limit - 1)]
        ids = window
        if search is not None:
            ids = [i for i in window if i == search] or [i for i in window if i.startswith(search)]
        if user is None and error_type is None:
            return ids, len(window)
        matches: list[str] = []
        for group in chunks(ids, _PIPE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for task_id in group:
                pipe.hmget(self.keys.task(task_id), "u", "et")
            for task_id, (u, et) in zip(group, pipe.execute(), strict=True):
                if user is not None and (u is None or _text(u) != user):
                    continue
                if error_type is not None and (_text(et or b"") or "?") != error_type:
                    continue
                matches.append(task_id)
        return matches, len(window)

    def _entries(self, ids: Sequence[str]) -> list[DLQEntry]:
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.keys.task(task_id))
        rows = pipe.execute(raise_on_error=False)
        return [self.queue.proto.decode_dead(task_id, row) for task_id, row in zip(ids, rows, strict=True)
                if isinstance(row, dict) and row]

    def dlq_facets(self, scan: int | None = None) -> DLQFacets:
        """Users and error types among the newest ``scan`` (default ``scan_limit``) dead tasks."""
        n = max(1, min(int(scan or self.scan_limit), self.scan_limit))
        users: Counter[str] = Counter()
        types: Counter[str] = Counter()
        with redis_errors("dlq_facets"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(self.keys.dlq)
            pipe.zrevrange(self.keys.dlq, 0, n - 1)
            size, ids = pipe.execute()
            for group in chunks(ids, _PIPE_CHUNK):
                pipe = self.client.pipeline(transaction=False)
                for task_id in group:
                    pipe.hmget(self.keys.task(_text(task_id)), "u", "et")
                for u, et in pipe.execute():
                    if u is not None:
                        users[_text(u)] += 1
                        types[_text(et or b"") or "?"] += 1
        return DLQFacets(users=users.most_common(), error_types=types.most_common(),
                         scanned=len(ids), dlq_size=int(size))

    def dead_tasks(self, task_ids: Iterable[str]) -> tuple[list[DLQEntry], list[str]]:
        """The dead tasks among ``task_ids`` (in the given order, duplicates dropped) and the
        ids that are not (or no longer) in the dead-letter queue."""
        ids = list(dict.fromkeys(str(i) for i in task_ids))
        if not ids:
            return [], []
        with redis_errors("dead_tasks"):
            pipe = self.client.pipeline(transaction=False)
            for task_id in ids:
                pipe.zscore(self.keys.dlq, task_id)
                pipe.hgetall(self.keys.task(task_id))
            replies = pipe.execute(raise_on_error=False)
        found: list[DLQEntry] = []
        missing: list[str] = []
        for i, task_id in enumerate(ids):
            score, row = replies[2 * i], replies[2 * i + 1]
            if score is None or not isinstance(row, dict) or not row:
                missing.append(task_id)
            else:
                found.append(self.queue.proto.decode_dead(task_id, row))
        return found, missing

    def dead_task(self, task_id: str) -> DLQEntry | None:
        return self.queue.get_dead(task_id)
