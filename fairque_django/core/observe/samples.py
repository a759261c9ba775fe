"""Series kept next to the queue for monitoring: wait/run histograms, completions per minute,
counter snapshots (rates and counter windows) and the dashboard's chart points.

Who writes what: the Lua scripts keep the histograms and the per-minute completions
(``lua/lib.lua``); the workers trim the completions (:func:`trim_throughput`); any reader of a
snapshot stores at most one counter snapshot per ``sample_interval`` (shared ``SET NX`` guard,
see :func:`queue_sample`); the alert evaluator and the dashboard store at most one chart point
per minute (:func:`record_history`). Every write is bounded (trimmed and given a TTL).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..codec import text
from ..keys import Keys
from ..queue import redis_errors
from .values import to_int

if TYPE_CHECKING:
    from .fanout import QueueShards
    from .snapshot import QueueMetrics

BUCKETS_MS: Final[tuple[int, ...]] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                                      300000)
"""Upper bounds (ms) of the finite histogram buckets; a last bucket (``inf``) takes the rest.
Must match ``BUCKETS`` in ``lua/lib.lua``."""

_FIELDS: Final = (*(str(b) for b in BUCKETS_MS), "inf")
TPUT_KEEP_MINUTES: Final = 120
"""Per-minute completion counts older than this are trimmed (:func:`trim_throughput`)."""
SAMPLE_INTERVAL: Final = 10.0
SAMPLE_RETENTION: Final = 3600.0
SAMPLE_FIELDS: Final = ("pushed", "completed", "failed", "retried", "dead", "expired", "requeued", "deleted")
"""The counters a snapshot stores (and whose rates and windows can be asked for)."""
HISTORY_MINUTES: Final = 60
HISTORY_TENANTS: Final = 8


# --------------------------------------------------------------------------- histograms

@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations per fixed bucket (not cumulative; the last one is ``+Inf``) and their sum."""

    counts: tuple[int, ...] = (0,) * (len(BUCKETS_MS) + 1)
    sum_ms: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any], kind: str) -> Histogram:
        """Read the ``<kind>:<le>`` / ``<kind>:sum`` fields of a metrics hash (kind ``w`` or ``r``)."""
        f = {text(k): v for k, v in raw.items()}
        return cls(tuple(to_int(f.get(f"{kind}:{le}")) for le in _FIELDS), to_int(f.get(f"{kind}:sum")))

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
    with redis_errors("trim_throughput"):
        stale = [f for f in client.hkeys(keys.metrics_throughput) if to_int(f) < oldest]
        if stale:
            client.hdel(keys.metrics_throughput, *stale)
    return len(stale)


# --------------------------------------------------------------------------- counter snapshots

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

    def per_minute(self, name: str) -> float | None:
        """The counter's increase per minute over this window (None: it went down)."""
        delta = self.deltas.get(name)
        return None if delta is None else delta * 60.0 / self.seconds


def queue_sample(pipe: Any, keys: Keys, counters: Mapping[str, int], now: float,
                 retention: float = SAMPLE_RETENTION) -> None:
    """Add the writes of one counter snapshot to ``pipe`` (the caller holds the guard)."""
    now_ms = int(now * 1000)
    member = json.dumps({"t": now, **{n: int(counters.get(n, 0)) for n in SAMPLE_FIELDS}}, separators=(",", ":"))
    pipe.zadd(keys.samples, {member: now_ms})
    pipe.zremrangebyscore(keys.samples, "-inf", now_ms - int(retention * 1000))
    pipe.pexpire(keys.samples, int(retention * 1000) + 60_000)


def queue_window_reads(pipe: Any, keys: Keys, now: float, wanted: Sequence[float],
                       min_seconds: float = SAMPLE_INTERVAL) -> int:
    """Add the reads of :func:`parse_windows` to ``pipe``; returns how many replies they take."""
    now_ms = int(now * 1000)
    for w in wanted:
        # the newest snapshot at least w old; else the oldest one at least min_seconds old
        pipe.zrevrangebyscore(keys.samples, now_ms - int(w * 1000), "-inf", start=0, num=1)
    pipe.zrangebyscore(keys.samples, "-inf", now_ms - int(min_seconds * 1000), start=0, num=1)
    return len(wanted) + 1


def parse_windows(found: Sequence[Any], wanted: Sequence[float], counters: Mapping[str, int],
                  now: float) -> dict[float, CounterWindow]:
    """The counter windows from the replies of :func:`queue_window_reads`."""
    *bases, oldest = found
    out: dict[float, CounterWindow] = {}
    for w, base in zip(wanted, bases, strict=True):
        member = base[0] if base else (oldest[0] if oldest else None)
        if member is None:
            continue
        try:  # a sample that is not what queue_sample writes is skipped
            old = json.loads(text(member))
            then = float(old["t"])
            before = {name: int(old.get(name, 0)) for name in SAMPLE_FIELDS}
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            continue
        if not now - then > 0:
            continue
        deltas: dict[str, int | None] = {}
        for name in SAMPLE_FIELDS:
            d = int(counters.get(name, 0)) - before[name]
            deltas[name] = None if d < 0 else d
        out[w] = CounterWindow(requested=w, seconds=now - then, deltas=deltas)
    return out


# --------------------------------------------------------------------------- chart history

def record_history(queue: QueueShards, metrics: QueueMetrics, *, interval: float = 60.0,
                   max_tenants: int = HISTORY_TENANTS, keep_minutes: int = HISTORY_MINUTES) -> bool:
    """Store one chart point (the busiest tenants' ready depth and median wait since the previous
    point) unless one was stored in the last ``interval`` seconds by any process. Bounded: at
    most ``keep_minutes`` points of ``max_tenants`` tenants. Returns True when one was stored.
    The points are home keys (one series whatever ``queue.shards`` is)."""
    home = queue.home_queue
    key = home.keys.history
    client = home.client
    with redis_errors("record_history"):
        if not client.set(home.keys.guard(home.keys.history), "1", nx=True, px=max(1, int(interval * 1000))):
            return False
        last = client.zrevrange(key, 0, 0)
        previous: dict[str, Any] = {}
        if last:
            try:
                previous = dict(json.loads(text(last[0])).get("u") or {})
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


def load_history(queue: QueueShards, *, minutes: int = HISTORY_MINUTES,
                 now: float | None = None) -> list[dict[str, Any]]:
    """The stored chart points of the last ``minutes`` minutes before ``now`` (Redis time, e.g. a
    snapshot's ``timestamp``; default: asked from Redis), oldest first:
    ``{"t": seconds, "tenants": {tenant: {"ready": n, "wait_p50_ms": ms or None}}}``."""
    home = queue.home_queue
    with redis_errors("load_history"):
        if now is None:
            sec, usec = home.client.time()
            now = int(sec) + int(usec) / 1e6
        raw = home.client.zrangebyscore(home.keys.history, int(now * 1000) - minutes * 60_000, "+inf")
    out: list[dict[str, Any]] = []
    for member in raw:
        try:
            point = json.loads(text(member))
            tenants = {str(u): {"ready": int(v.get("r", 0)), "wait_p50_ms": v.get("w")}
                       for u, v in dict(point.get("u") or {}).items() if isinstance(v, dict)}
            out.append({"t": float(point["t"]), "tenants": tenants})
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def wanted_windows(windows: Iterable[float]) -> list[float]:
    return sorted({float(w) for w in windows})
