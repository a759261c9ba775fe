"""Worker liveness: the one rule and the one set of labels every view uses (docs/monitoring.md,
"Worker liveness"), the worker health record as read back, and the clean-stop mark."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..codec import text
from ..config import FairQueueConfig, WorkerConfig
from ..keys import Keys
from .values import json_list, to_float, to_int

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


def stale_after(config: FairQueueConfig, worker: WorkerConfig | None) -> float:
    """Seconds without a heartbeat after which a worker is no longer ``alive`` (its record's TTL)."""
    beat = worker.heartbeat_interval_seconds if worker is not None else 5.0
    return max(3 * beat, config.queue.lease_timeout_seconds)


def beat_interval(config: FairQueueConfig, worker: WorkerConfig | None) -> float:
    """Seconds between two heartbeats of a worker (at most a third of the lease time)."""
    beat = worker.heartbeat_interval_seconds if worker is not None else 5.0
    return min(beat, config.queue.lease_timeout_seconds / 3)


def orphan_after(config: FairQueueConfig, worker: WorkerConfig | None) -> float:
    """Seconds without a heartbeat after which a worker's partition is orphaned and live workers
    take its tenants over (``queue.orphan_after_seconds``, default :func:`stale_after`)."""
    setting = config.queue.orphan_after_seconds
    return setting if setting is not None else stale_after(config, worker)


def down_after(config: FairQueueConfig, worker: WorkerConfig | None) -> float:
    """Seconds without a heartbeat after which a worker that did not stop cleanly is ``down``."""
    return DOWN_FACTOR * stale_after(config, worker)


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


def worker_states(config: FairQueueConfig, seen: Mapping[str, float], stopped: Mapping[str, float],
                  beats: Mapping[str, float | None], now: float) -> dict[str, Liveness]:
    """Liveness of every configured worker id (configuration order), then of the other ids seen
    in the last :data:`FORGET_UNCONFIGURED` seconds (sorted)."""
    configured = {w.id: w for w in config.workers}
    others = sorted((set(seen) | {w for w, b in beats.items() if b is not None}) - set(configured))
    out: dict[str, Liveness] = {}
    for wid in [*configured, *others]:
        cfg = configured.get(wid)
        state = worker_liveness(last_beat=beats.get(wid), last_seen=seen.get(wid), stopped_at=stopped.get(wid),
                                now=now, stale=stale_after(config, cfg), down=down_after(config, cfg))
        if cfg is None and state.status == DOWN and (state.heartbeat_age or 0.0) > FORGET_UNCONFIGURED:
            continue  # an old id no longer configured: not worth a row
        out[wid] = state
    return out


_RECORD_KINDS: Final = {"current": json_list, "assigned": json_list, "steals": json_list,
                        "started": lambda v: to_float(v) or 0.0, "last_seen": lambda v: to_float(v) or 0.0,
                        "pid": to_int, "processed": to_int, "failed": to_int, "concurrency": to_int}


def parse_record(raw: Mapping[Any, Any] | None, now: float) -> dict[str, Any] | None:
    """A worker's health record (the hash its heartbeat writes) with typed fields and
    ``heartbeat_age``; None when there is none (the worker is not alive, or its record expired)."""
    if not raw:
        return None
    record: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
    for name, convert in _RECORD_KINDS.items():
        record[name] = convert(record.get(name))
    record["heartbeat_age"] = max(0.0, now - record["last_seen"])
    return record
