"""The read model: one bounded-cost snapshot of a queue (:class:`QueueMetrics`) that the admin
dashboard, ``fairque_stats``, ``fairque_health``, the health view, Prometheus and the alert rules
all read. No Django imports.

:func:`collect_metrics` reads, at one moment:

* per tenant, for the ``top_n`` tenants with the most unfinished work (the ``live`` sorted set):
  depth by lane (critical / normal / delayed / leased), the age of each lane's head, the
  enqueued / completed / failed / dead counters, the wait-time and run-time histograms, and its
  limits: tasks leased now (``P:tleased``), cap and rate in force (runtime ``P:tlimits`` over the
  settings), paused (``P:tpaused``) and why it is held out of its rotation (``P:theld``);
* ``other``: the same numbers for every remaining tenant at once, computed as the global figures
  minus the top ``n`` (so labels stay bounded however many tenants there are);
* per worker id: liveness (:mod:`.liveness`), heartbeat age, busy slots, processed / failed,
  current tasks (each with its ``progress``: :func:`~fairque_django.set_progress`, read with the
  lease scan), leased tasks, the health record;
* ``starved``: partitions whose waiting tenants no live worker may take (:mod:`.starved`);
* ``stalled``: tenants with ready tasks that are in no partition's rotation (:mod:`.stalled`);
* ``orphaned``: partitions whose workers have no live heartbeat and who takes them over;
* global: counters, depth, DLQ size, tenants paused and held (``HLEN``), histograms, throughput
  over the last minute and hour, and, on request, counter deltas over time windows
  (:mod:`.samples`) and the stored alert states.

Cost: three pipelined round trips (the first one a transaction: one consistent view of the global
figures). Each structure is read once: the leases are scanned once (at most ``lease_scan_limit``
ids, each read for its user, its worker and its progress), the worker records once, the stats hash once. Their
size grows with ``top_n``, the leases scanned, at most ``other_scan_limit`` further tenants and
at most ``STARVED_SCAN`` waiting tenants of each partition whose worker is not alive -- never with
the total number of tenants or queued tasks. The only write is a counter snapshot, at most one
per ``sample_interval`` (shared by all processes), folded into the same round trips.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.cluster import RedisCluster

from ..codec import count, text
from ..config.limits import LimitSpec, effective_limits
from ..keys import Keys
from ..lanes import (
    COUNT_READS,
    CRITICAL_READS,
    HEAD_READS,
    TOTAL_READS,
    add_count_reads,
    add_critical_reads,
    add_head_reads,
    add_total_reads,
    counts_from,
    critical_from,
    heads_from,
    total_from,
)
from ..queue import TaskQueue, redis_errors
from ..results import PROGRESS_FIELD, progress_of
from ..scripts.commands import PRIORITY_PUSHED, STAT_FIELDS, stat_counters, stat_problems
from .fanout import QueueShards, Trip, split_limit
from .liveness import LIVENESS, WORKERS_READ, parse_record, worker_states
from .rows import OTHER, ShardMetrics, TenantMetrics, WorkerMetrics
from .samples import (
    BUCKETS_MS,
    SAMPLE_INTERVAL,
    CounterWindow,
    Histogram,
    parse_windows,
    queue_sample,
    queue_window_reads,
    throughput_estimate,
    wanted_windows,
)
from .stalled import (
    STALL_SCAN,
    StalledTenant,
    queue_recheck_reads,
    queue_rotation_reads,
    stalled_from,
    suspects,
)
from .starved import (
    STARVED_SCAN,
    OrphanedPartition,
    StarvedPartition,
    candidate_partitions,
    orphaned_partitions,
    queue_ready_reads,
    starved_partitions,
    with_waiting,
)
from .values import floats, to_int

TENANT_COUNTERS = (("enqueued", "pushed"), ("completed", "completed"), ("failed", "failed"), ("dead", "dead"))
"""Per-tenant counters: (name in :class:`TenantMetrics`, field in the stats hash ``u:<tenant>:<field>``)."""


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
    orphaned: list[OrphanedPartition] = field(default_factory=list)
    leases_scanned: int = 0
    alert_states: dict[str, str] | None = None  # the raw alert hash, when asked for (``alerts=True``)
    stalled: list[StalledTenant] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # stats fields holding garbage (read as 0)
    tenants_paused: int = 0  # tenants paused now (all of them: HLEN of P:tpaused)
    tenants_held: int = 0  # tenants held out of their rotation with work queued (HLEN of P:theld)
    shards: list[ShardMetrics] = field(default_factory=list)  # each keyspace shard's part (none with one shard)

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

    def worker(self, worker_id: str) -> WorkerMetrics | None:
        for row in self.workers:
            if row.worker_id == worker_id:
                return row
        return None

    def workers_by_status(self) -> dict[str, int]:
        """How many worker ids carry each liveness label."""
        return {label: sum(1 for w in self.workers if w.status == label) for label in LIVENESS}

    def all_tenant_rows(self) -> list[TenantMetrics]:
        """The top ``n`` and, when there are other tenants, the ``other`` aggregate."""
        return [*self.tenants, *([self.other] if self.other is not None else [])]

    def stats(self) -> dict[str, Any]:
        """The counters and gauges in the shape of ``TaskQueue.get_stats`` (``tasks_<counter>``,
        ``tasks_active`` / ``tasks_delayed`` / ``tasks_queued`` / ``tasks_pending``, ``dlq_size``)."""
        out: dict[str, Any] = {f"tasks_{name}": self.totals.get(name, 0) for name in STAT_FIELDS}
        pending = (out["tasks_pushed"] - out["tasks_completed"] - out["tasks_deleted"] - out["tasks_cancelled"]
                   - self.dlq_size)
        out.update(tasks_active=self.leased, tasks_delayed=self.delayed, dlq_size=self.dlq_size,
                   tasks_pending=pending, tasks_queued=max(0, pending - self.leased - self.delayed),
                   timestamp=self.timestamp, problems=list(self.problems))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp, "prefix": self.prefix, "top_n": self.top_n,
            "tenants_with_work": self.tenants_with_work,
            "tenants_paused": self.tenants_paused, "tenants_held": self.tenants_held,
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
            "stalled": [s.to_dict() for s in self.stalled],
            "problems": list(self.problems),
            "orphaned": [p.to_dict() for p in self.orphaned],
            "buckets_ms": [*BUCKETS_MS, "inf"],
        }


def collect_metrics(queue: QueueShards, top_n: int = 20, *, windows: Iterable[float] = (),
                    record_sample: bool = True, sample_interval: float = SAMPLE_INTERVAL,
                    lease_scan_limit: int = 10_000, other_scan_limit: int = 1000,
                    check_starved: bool = True, alerts: bool = False, stall_scan: int = STALL_SCAN) -> QueueMetrics:
    """A :class:`QueueMetrics` snapshot of ``queue`` (see the module docstring for the cost).

    ``top_n``: tenants with a row of their own (0: none, only ``other``); ``windows``: seconds
    over which counter deltas are wanted (``QueueMetrics.windows``); a counter snapshot is stored
    at most every ``sample_interval`` seconds (by any process) unless ``record_sample`` is False;
    ``alerts``: also read the stored alert states (``QueueMetrics.alert_states``); ``stall_scan``:
    tenants (most unfinished work first) checked for a stall (``QueueMetrics.stalled``, 0: none).
    With several keyspace shards the lease, ``other`` and stall scans are shared out among them
    (each shard reads ``ceil(limit / shards)``)."""
    return _Reader(queue, max(0, int(top_n)), lease_scan_limit=max(0, lease_scan_limit),
                   other_scan_limit=max(0, other_scan_limit), stall_scan=max(0, stall_scan)).read(
        windows=wanted_windows(windows), record_sample=record_sample, sample_interval=sample_interval,
        check_starved=check_starved, alerts=alerts)


_Read = tuple[str, Any, str, tuple[Any, ...], dict[str, Any]]  # name, default, command, args, kwargs


def _add_reads(trip: Trip, queue: TaskQueue, reads: Sequence[_Read]) -> int:
    def fill(pipe: Any) -> list[Any]:
        for _, _, command, args, kwargs in reads:
            getattr(pipe, command)(*args, **kwargs)
        return [default for _, default, _, _, _ in reads]

    return trip.add(queue, fill)


class _Reader:
    """One snapshot's reads, in three round trips over the queue's shards (see the module docstring)."""

    def __init__(self, queue: QueueShards, top_n: int, *, lease_scan_limit: int, other_scan_limit: int,
                 stall_scan: int = STALL_SCAN) -> None:
        self.queue = queue
        self.shards = queue.shard_queues
        self.home = queue.home_queue
        n = len(self.shards)
        self.config = queue.config
        self.top_n = top_n
        self.lease_scan_limit = split_limit(lease_scan_limit, n)
        self.other_scan_limit = split_limit(other_scan_limit, n)
        self.stall_scan = split_limit(stall_scan, n)
        self.starved_scan = split_limit(STARVED_SCAN, n)

    def read(self, *, windows: Sequence[float], record_sample: bool, sample_interval: float,
             check_starved: bool, alerts: bool) -> QueueMetrics:
        with redis_errors("collect_metrics"):
            g = self._globals(alerts)
            totals = g["totals"]
            now = g["now_ms"] / 1000.0
            d = self._details(g, totals, now, windows, record_sample, sample_interval)
            workers = self._workers(g, d)
            orphans = orphaned_partitions(self.config, workers, g["beats"]) if check_starved else []
            parts = candidate_partitions(self.config, workers) if check_starved else []
            parts += [o.partition for o in orphans if o.partition not in parts]
            heads, ready_sets, stalled = self._third(g, d, parts, totals, now, record_sample)
        n_leased, n_delayed, n_dlq, n_users = g["leased"], g["delayed"], g["dlq"], g["n_users"]
        rows = self._tenant_rows(g, d, heads)
        pending, ready = g["pending"], g["ready"]
        wait_all, run_all = g["wait_all"], g["run_all"]
        other = _other(rows, n_users, totals, pending, ready, n_leased, n_delayed, wait_all, run_all,
                       d["other_critical"], exact=n_users - len(rows) <= g["n_others"])
        per_minute = g["tput"]
        now_ms = g["now_ms"]
        current = now_ms // 60_000
        return QueueMetrics(
            timestamp=g["now_exact"], prefix=self.config.queue.stats_prefix, top_n=self.top_n, tenants=rows,
            other=other, tenants_with_work=n_users, totals=totals, ready=ready, delayed=n_delayed,
            leased=n_leased, dlq_size=n_dlq, wait=wait_all, run=run_all,
            throughput_last_minute=throughput_estimate(per_minute, now_ms, 1),
            throughput_last_hour=throughput_estimate(per_minute, now_ms, 60),
            throughput_per_minute=[(m, per_minute.get(m, 0)) for m in range(current - 59, current + 1)],
            workers=workers, windows=d["windows"], leases_truncated=g["n_lease_ids"] < n_leased,
            starved=starved_partitions(self.config, workers, parts, ready_sets,
                                       {o.partition for o in orphans if o.served_by}) if parts else [],
            orphaned=with_waiting(orphans, parts, ready_sets),
            leases_scanned=g["n_lease_ids"], alert_states=g["alerts"], stalled=stalled, problems=g["problems"],
            tenants_paused=g["n_paused"], tenants_held=g["n_held"], shards=g["shards"],
        )

    # --- round trip 1: the global figures, in one transaction (per shard on a cluster) -------
    def _shard_globals(self, keys: Keys) -> list[_Read]:
        reads: list[_Read] = []

        def add(name: str, default: Any, command: str, *args: Any, **kwargs: Any) -> None:
            reads.append((name, default, command, args, kwargs))

        if self.top_n:
            add("top", [], "zrevrange", keys.live, 0, self.top_n - 1, withscores=True)
        add("n_users", 0, "zcard", keys.live)
        add("stats", [None] * (len(STAT_FIELDS) + len(PRIORITY_PUSHED)), "hmget", keys.stats, *STAT_FIELDS,
            *PRIORITY_PUSHED)
        add("leased", 0, "zcard", keys.leases)
        add("delayed", 0, "zcard", keys.delayed)
        add("dlq", 0, "zcard", keys.dlq)
        add("n_paused", 0, "hlen", keys.tenant_paused)
        add("n_held", 0, "hlen", keys.tenant_held)
        if self.lease_scan_limit:
            add("lease_ids", [], "zrange", keys.leases, 0, self.lease_scan_limit - 1)
        add("all_hist", {}, "hgetall", keys.metrics_all)
        add("tput", {}, "hgetall", keys.metrics_throughput)
        if self.other_scan_limit:
            add("others", [], "zrevrange", keys.live, self.top_n, self.top_n + self.other_scan_limit - 1)
        if self.stall_scan:
            add("scan", [], "zrevrange", keys.live, 0, self.stall_scan - 1)
        return reads

    def _home_globals(self, keys: Keys, alerts: bool) -> list[_Read]:
        reads: list[_Read] = [("seen", [], "zrevrange", (keys.workers, 0, WORKERS_READ - 1), {"withscores": True}),
                              ("stopped", {}, "hgetall", (keys.workers_stopped,), {})]
        worker_ids = self.config.worker_ids
        if worker_ids and isinstance(self.home.client, RedisCluster):  # (a cluster pipeline refuses MGET)
            reads += [(f"beat:{w}", None, "get", (keys.beat(w),), {}) for w in worker_ids]
        elif worker_ids:
            reads.append(("beats", [None] * len(worker_ids), "mget", ([keys.beat(w) for w in worker_ids],), {}))
        if alerts:
            reads.append(("alerts", {}, "hgetall", (keys.alerts,), {}))
        if not isinstance(self.home.client, RedisCluster):  # (a cluster pipeline refuses TIME: read after)
            reads.append(("time", None, "time", (), {}))
        return reads

    def _globals(self, alerts: bool) -> dict[str, Any]:
        trip = Trip(transaction=True)
        shard_reads = [self._shard_globals(q.keys) for q in self.shards]
        home_reads = self._home_globals(self.home.keys, alerts)
        sections = [_add_reads(trip, q, reads) for q, reads in zip(self.shards, shard_reads, strict=True)]
        home_section = _add_reads(trip, self.home, home_reads)
        out = trip.execute()
        # a key of the wrong type (corrupt data, see pop.lua's quarantine) must not hide the rest
        per_shard: list[dict[str, Any]] = []
        for i, reads in zip(sections, shard_reads, strict=True):
            sg: dict[str, Any] = {"top": [], "lease_ids": [], "others": [], "scan": []}
            sg.update(zip((r[0] for r in reads), out[i], strict=True))
            per_shard.append(sg)
        home: dict[str, Any] = {"alerts": None}
        home.update(zip((r[0] for r in home_reads), out[home_section], strict=True))
        if isinstance(self.home.client, RedisCluster):
            home["beats"] = [home.pop(f"beat:{w}") for w in self.config.worker_ids]
            home["time"] = self.home.client.time()  # one more round trip, on a cluster only
        g = self._merge_globals(per_shard)
        sec, usec = home.pop("time")
        g["now_ms"] = int(sec) * 1000 + int(usec) // 1000
        g["now_exact"] = int(sec) + int(usec) / 1e6  # orders snapshots (alert transitions)
        g["seen"] = {text(w): float(s) for w, s in home["seen"]}
        g["stopped"] = home["stopped"]
        g["worker_ids"] = list(dict.fromkeys([*self.config.worker_ids, *g["seen"]]))
        worker_ids = self.config.worker_ids
        g["beats"] = {w: beat is not None for w, beat in zip(worker_ids, home.get("beats") or [], strict=False)}
        g["alerts"] = None if home["alerts"] is None else {text(k): text(v) for k, v in home["alerts"].items()}
        return g

    def _merge_globals(self, per_shard: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The shards' global figures summed; the top tenants of all shards (most unfinished work
        first), each with its shard; per shard, the tenants outside the top to count as ``other``
        and those to check for a stall."""
        names = [*STAT_FIELDS, *PRIORITY_PUSHED]
        totals = dict.fromkeys(STAT_FIELDS, 0)
        problems: list[str] = []
        g: dict[str, Any] = {"leased": 0, "delayed": 0, "dlq": 0, "n_users": 0, "n_paused": 0, "n_held": 0,
                             "pending": 0, "ready": 0, "wait_all": Histogram(), "run_all": Histogram()}
        tput: Counter[int] = Counter()
        tops: list[tuple[str, int, int]] = []
        shards: list[ShardMetrics] = []
        for shard, sg in enumerate(per_shard):
            counters = stat_counters(names, sg["stats"])
            problems += stat_problems(self.shards[shard].keys.stats, names, sg["stats"])
            for name in STAT_FIELDS:
                totals[name] += counters[name]
            leased, delayed, dlq = int(sg["leased"]), int(sg["delayed"]), int(sg["dlq"])
            pending = max(0, counters["pushed"] - counters["completed"] - counters["deleted"]
                          - counters["cancelled"] - dlq)
            ready, n_users = max(0, pending - leased - delayed), int(sg["n_users"])
            shards.append(ShardMetrics(shard, ready, delayed, leased, n_users))
            g["pending"] += pending
            g["ready"] += ready
            g["leased"] += leased
            g["delayed"] += delayed
            g["dlq"] += dlq
            g["n_users"] += n_users
            g["n_paused"] += to_int(sg["n_paused"])
            g["n_held"] += to_int(sg["n_held"])
            g["wait_all"] += Histogram.from_hash(sg["all_hist"], "w")
            g["run_all"] += Histogram.from_hash(sg["all_hist"], "r")
            tput.update({to_int(k): to_int(v) for k, v in sg["tput"].items()})
            tops += [(text(u), to_int(s), shard) for u, s in sg["top"]]
        # one shard: its order as read; several: most unfinished first (ties: shard order)
        top = tops if len(per_shard) == 1 else sorted(tops, key=lambda t: -t[1])[:self.top_n]
        chosen = {(u, shard) for u, _, shard in top}
        g["users"] = [(u, n) for u, n, _ in top]
        g["user_shards"] = [shard for _, _, shard in top]
        g["others"] = [([u for u, _, s in tops if s == shard and (u, shard) not in chosen]
                        if self.other_scan_limit else []) + [text(u) for u in sg["others"]]
                       for shard, sg in enumerate(per_shard)]
        g["n_others"] = sum(len(o) for o in g["others"])
        g["scan"] = [[text(u) for u in sg["scan"]] for sg in per_shard]
        g["lease_ids"] = [[text(i) for i in sg["lease_ids"]] for sg in per_shard]
        g["n_lease_ids"] = sum(len(ids) for ids in g["lease_ids"])
        g["totals"], g["problems"], g["tput"] = totals, problems, dict(tput)
        g["shards"] = shards if len(shards) > 1 else []
        return g

    # --- round trip 2: tenant lanes and counters, leases, worker records, windows ----------------
    def _shard_details(self, keys: Keys, pipe: Any, users: Sequence[str], lease_ids: Sequence[str],
                       others: Sequence[str], scan: Sequence[str]) -> list[Any]:
        defaults: list[Any] = []
        for user in users:
            defaults += add_count_reads(pipe, keys, user)
            defaults += add_head_reads(pipe, keys, user)
            defaults += [[None] * len(TENANT_COUNTERS), {}, None, None, None, None]
            pipe.hmget(keys.stats, *(f"u:{user}:{f}" for _, f in TENANT_COUNTERS))
            pipe.hgetall(keys.metrics_user(user))
            for limits_key in (keys.tenant_leased, keys.tenant_limits, keys.tenant_paused, keys.tenant_held):
                pipe.hget(limits_key, user)
        for task_id in lease_ids:
            pipe.hmget(keys.task(task_id), "u", "wk", "st", "tok", PROGRESS_FIELD)
        tail: list[Any] = []  # (critical counts of the other tenants, queued counts of those checked for a stall)
        for user in others:
            tail += add_critical_reads(pipe, keys, user)
        for user in scan:
            tail += add_total_reads(pipe, keys, user)
        rotation_defaults = queue_rotation_reads(pipe, keys, self.config, scan)
        return [*defaults, *([[None] * 5] * len(lease_ids)), *tail, *rotation_defaults]

    def _details(self, g: dict[str, Any], totals: Mapping[str, int], now: float, windows: Sequence[float],
                 record_sample: bool, sample_interval: float) -> dict[str, Any]:
        trip = Trip()
        users_of: list[list[str]] = [[] for _ in self.shards]
        for (user, _), shard in zip(g["users"], g["user_shards"], strict=True):
            users_of[shard].append(user)
        sections = []
        for shard, q in enumerate(self.shards):
            sections.append(trip.add(q, functools.partial(
                self._shard_details, q.keys, users=users_of[shard], lease_ids=g["lease_ids"][shard],
                others=g["others"][shard], scan=g["scan"][shard])))
        worker_ids = g["worker_ids"]
        home = self.home.keys
        n_windows = 0

        def fill_home(pipe: Any) -> list[Any]:
            nonlocal n_windows
            for wid in worker_ids:
                pipe.hgetall(home.worker(wid))
            n_windows = queue_window_reads(pipe, home, now, windows, sample_interval) if windows else 0
            if record_sample:
                pipe.set(home.guard(home.samples), "1", nx=True, px=max(1, int(sample_interval * 1000)))
            return [*([{}] * len(worker_ids)), *([[]] * n_windows), *([None] * record_sample)]

        home_section = trip.add(self.home, fill_home)
        out = trip.execute()
        per_user_of: list[list[list[Any]]] = []
        by_user: Counter[str] = Counter()
        by_worker: Counter[str] = Counter()
        progress: dict[str, dict[str, Any]] = {}  # task id -> what it reported (set_progress)
        other_critical = 0
        found_suspects: list[list[str]] = []
        for shard, section in enumerate(sections):
            it = iter(out[section])
            per_user_of.append([_user_row([next(it) for _ in range(COUNT_READS + HEAD_READS + 6)])
                                for _ in users_of[shard]])
            lease_ids = g["lease_ids"][shard]
            for task_id, (u, wk, st, tok, pg) in zip(lease_ids, (next(it) for _ in lease_ids), strict=True):
                if u is not None:
                    by_user[text(u)] += 1
                if wk is not None:
                    by_worker[text(wk)] += 1
                if pg is not None:
                    reported = progress_of({"st": text(st or ""), "tok": text(tok or ""),
                                            PROGRESS_FIELD: text(pg)})
                    if reported is not None:
                        progress[task_id] = reported.to_dict()
            other_critical += sum(critical_from([next(it) for _ in range(CRITICAL_READS)]) for _ in g["others"][shard])
            scan = g["scan"][shard]
            lanes = [total_from([next(it) for _ in range(TOTAL_READS)]) for _ in scan]
            scores = [next(it) for _ in scan]
            found_suspects.append(suspects(scan, lanes, scores))
        positions = [0] * len(self.shards)
        per_user = []
        for shard in g["user_shards"]:
            per_user.append(per_user_of[shard][positions[shard]])
            positions[shard] += 1
        it = iter(out[home_section])
        records = {wid: next(it) or {} for wid in worker_ids}
        found = [next(it) for _ in range(n_windows)]
        acquired = bool(next(it)) if record_sample else False
        return {"per_user": per_user, "leased_by_user": by_user, "leased_by_worker": by_worker,
                "records": records, "other_critical": other_critical, "progress": progress, "sample": acquired,
                "suspects": found_suspects,
                "windows": parse_windows(found, windows, totals, now) if windows else {}}

    # --- round trip 3: the lanes' heads, the ready sets that may starve, the counter snapshot ----
    def _third(self, g: dict[str, Any], d: dict[str, Any], parts: Sequence[str], totals: Mapping[str, int],
               now: float, record_sample: bool) -> tuple[dict[str, Any], list[Any], list[StalledTenant]]:
        heads: list[list[str]] = [[] for _ in self.shards]
        for shard, (crit_head, normal_head) in zip(g["user_shards"], ((r[2], r[3]) for r in d["per_user"]),
                                                   strict=True):
            for head in (crit_head, normal_head[0] if normal_head else None):
                if head is not None:
                    heads[shard].append(text(head))
        write = record_sample and d["sample"]
        suspected: list[list[str]] = d["suspects"]
        if not any(heads) and not parts and not write and not any(suspected):
            return {}, [], []
        # a transaction when a stall is suspected: the recheck must be one consistent view
        trip = Trip(transaction=any(suspected))
        sections = []
        for shard, q in enumerate(self.shards):
            def fill(pipe: Any, keys: Keys = q.keys, shard: int = shard) -> list[Any]:
                for head in heads[shard]:
                    pipe.hget(keys.task(head), "e")
                return [*([None] * len(heads[shard])), *queue_ready_reads(pipe, keys, parts, self.starved_scan),
                        *queue_recheck_reads(pipe, keys, self.config, suspected[shard])]
            sections.append(trip.add(q, fill))
        if write:
            def sample(pipe: Any) -> list[Any]:
                queue_sample(pipe, self.home.keys, totals, now)
                return [None] * 3
            trip.add(self.home, sample)
        out = trip.execute()
        ready_since: dict[str, Any] = {}
        merged: list[Any] = [0, []] * len(parts)
        stalled: list[StalledTenant] = []
        for shard, section in enumerate(sections):
            replies_ = out[section]
            n_heads = len(heads[shard])
            ready_since.update(zip(heads[shard], replies_[:n_heads], strict=True))
            ready = replies_[n_heads:n_heads + 2 * len(parts)]
            for i in range(len(parts)):
                merged[2 * i] = int(merged[2 * i]) + int(ready[2 * i] or 0)
                merged[2 * i + 1] = [*merged[2 * i + 1], *ready[2 * i + 1]]
            if suspected[shard]:
                stalled += stalled_from(self.config, suspected[shard], replies_[n_heads + 2 * len(parts):])
        return ready_since, merged, stalled

    # --- building the rows ------------------------------------------------------------------------
    def _workers(self, g: dict[str, Any], d: dict[str, Any]) -> list[WorkerMetrics]:
        now = time.time()  # heartbeats are written with the workers' clocks
        configured = {w.id: w for w in self.config.workers}
        records = {wid: parse_record(raw, now) for wid, raw in d["records"].items()}
        beats = {wid: (rec["last_seen"] if rec is not None else None) for wid, rec in records.items()}
        truncated = g["n_lease_ids"] < g["leased"]
        out: list[WorkerMetrics] = []
        for wid, state in worker_states(self.config, g["seen"], floats(g["stopped"]), beats, now).items():
            cfg = configured.get(wid)
            rec = records.get(wid)
            r: dict[str, Any] = rec or {}
            current = [{**c, "progress": d["progress"].get(str(c.get("task_id")))}
                       for c in r.get("current", []) if isinstance(c, dict)] if state.alive else []
            assigned = cfg.assigned_users if cfg is not None else tuple(map(str, r.get("assigned", [])))
            steals = cfg.steal_targets if cfg is not None else tuple(map(str, r.get("steals", [])))
            out.append(WorkerMetrics(
                worker_id=wid, configured=cfg is not None, status=state.status, heartbeat_age=state.heartbeat_age,
                last_seen=state.last_seen, busy_slots=len(current),
                slots=r.get("concurrency") or (cfg.max_concurrent_tasks if cfg is not None else 0),
                processed=r.get("processed", 0), failed=r.get("failed", 0), current=current,
                assigned=tuple(assigned), steals=tuple(steals), host=r.get("host"), pid=r.get("pid") or None,
                leased=d["leased_by_worker"].get(wid, 0), leases_truncated=truncated, record=rec,
            ))
        return out

    def _tenant_rows(self, g: dict[str, Any], d: dict[str, Any], ready_since: dict[str, Any]) -> list[TenantMetrics]:
        now_ms = g["now_ms"]
        owners = bool(self.config.workers)
        rows: list[TenantMetrics] = []
        q = self.config.queue
        for (user, unfinished), (crit, normal, crit_head, normal_head, counters, hist, running, runtime, paused,
                                 held) in zip(g["users"], d["per_user"], strict=True):
            crit, normal = int(crit), int(normal)
            leased = min(d["leased_by_user"].get(user, 0), unfinished)
            ages: list[float | None] = []
            for head in (crit_head, normal_head[0] if normal_head else None):
                e = count(ready_since.get(text(head))) if head is not None else None  # garbage: unknown
                ages.append(max(0.0, (now_ms - e) / 1000.0) if e else None)
            enqueued, completed, failed, dead = (to_int(v) for v in counters)
            limits = effective_limits(q.tenant_concurrency, q.tenant_limits, user,
                                      LimitSpec.decode(text(runtime)) if runtime is not None else None)
            rows.append(TenantMetrics(
                tenant=user, unfinished=unfinished, critical=crit, normal=normal,
                delayed=max(0, unfinished - crit - normal - leased), leased=leased,
                enqueued=enqueued, completed=completed, failed=failed, dead=dead,
                wait=Histogram.from_hash(hist, "w"), run=Histogram.from_hash(hist, "r"),
                oldest_critical_seconds=ages[0], oldest_normal_seconds=ages[1],
                owner=self.config.owner_of(user) if owners else None,
                running=count(running) or 0, cap=limits["concurrency"], rate=limits["rate"],
                paused=paused is not None, held=text(held) if held is not None else None,
            ))
        return rows


def _user_row(replies: Sequence[Any]) -> list[Any]:
    """A tenant's row of round trip 2: its critical and other queued counts, the heads of its critical
    lane and of its first other lane (as a list: empty for none), then the replies that follow."""
    lanes = counts_from(replies[:COUNT_READS])
    crit_head, normal_head = heads_from(replies[COUNT_READS:COUNT_READS + HEAD_READS])
    return [lanes[6], sum(n for p, n in lanes.items() if p != 6), crit_head,
            [] if normal_head is None else [normal_head], *replies[COUNT_READS + HEAD_READS:]]


def _other(rows: Sequence[TenantMetrics], n_users: int, totals: Mapping[str, int], pending: int, ready: int,
           leased: int, delayed: int, wait: Histogram, run: Histogram, critical_scanned: int, *,
           exact: bool) -> TenantMetrics | None:
    """Everything outside the top rows: the global figures minus theirs."""
    count = n_users - len(rows)
    if count <= 0:
        return None
    o_ready = max(0, ready - sum(r.ready for r in rows))
    o_critical = min(critical_scanned, o_ready)
    counters = {name: max(0, totals.get(stat, 0) - sum(getattr(r, name) for r in rows))
                for name, stat in TENANT_COUNTERS}
    o_wait, o_run = wait, run
    for r in rows:
        o_wait, o_run = o_wait.minus(r.wait), o_run.minus(r.run)
    return TenantMetrics(tenant=OTHER, unfinished=max(0, pending - sum(r.unfinished for r in rows)),
                         critical=o_critical, normal=o_ready - o_critical,
                         delayed=max(0, delayed - sum(r.delayed for r in rows)),
                         leased=max(0, leased - sum(r.leased for r in rows)), wait=o_wait, run=o_run,
                         tenants=count, exact_lanes=exact, enqueued=counters["enqueued"],
                         completed=counters["completed"], failed=counters["failed"], dead=counters["dead"])
