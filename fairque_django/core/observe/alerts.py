"""Alert states kept in Redis: :class:`AlertTracker` stores each rule's state in ``{prefix}:alerts``
and detects transitions with one atomic script (``alert_transition.lua``), so that when several
processes evaluate the same rules each change (``firing`` / ``resolved``) is reported once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..codec import text
from ..queue import redis_errors
from .alert_rules import FIRING, RESOLVED, AlertRule, AlertState
from .fanout import QueueShards
from .snapshot import QueueMetrics
from .values import to_float

__all__ = ["AlertTracker", "AlertTransition", "StoredAlert"]


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """A change of a rule's state: ``state`` is ``firing`` or ``resolved``."""

    rule: AlertRule
    state: str
    previous: str | None
    since: float
    alert: AlertState

    @property
    def details(self) -> dict[str, Any]:
        return self.alert.details


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """A rule's state as last recorded in Redis by any process."""

    name: str
    state: str
    since: float | None
    evaluated_at: float | None
    details: dict[str, Any]

    @property
    def firing(self) -> bool:
        return self.state == FIRING


class AlertTracker:
    """Rule states in the Redis hash ``{prefix}:alerts``; :meth:`update` reports each change once
    across every process that evaluates the same rules."""

    def __init__(self, queue: QueueShards) -> None:
        self.queue = queue.home_queue  # the states are home keys (one hash whatever queue.shards is)
        self.key = self.queue.keys.alerts

    def update(self, states: Sequence[AlertState], *, at: float | None = None) -> list[AlertTransition]:
        """Record ``states``, evaluated on a snapshot taken at ``at`` (seconds, Redis time:
        ``QueueMetrics.timestamp``; default now); return the transitions this call was the first
        to see. States of a snapshot older than one already recorded for a rule are ignored."""
        if not states:
            return []
        at_ms = (time.time() if at is None else at) * 1000
        args: list[Any] = [f"{at_ms:.3f}"]
        for s in states:
            args += [s.name, s.state, json.dumps(s.details, default=str, separators=(",", ":"))]
        with redis_errors("alert transition"):
            reply = self.queue.scripts.alert_transition(keys=[self.key], args=args)
        by_name = {s.name: s for s in states}
        out: list[AlertTransition] = []
        for i in range(0, len(reply), 4):
            name, old, new, since = (text(x) for x in reply[i:i + 4])
            alert = by_name[name]
            out.append(AlertTransition(rule=alert.rule, state=FIRING if new == FIRING else RESOLVED,
                                       previous=old or None, since=float(since) / 1000.0, alert=alert))
        return out

    def load(self, names: Iterable[str] | None = None, *,
             snapshot: QueueMetrics | None = None) -> dict[str, StoredAlert]:
        """The recorded state of every rule (or of ``names``): as read by ``snapshot`` when it
        read them (``collect_metrics(..., alerts=True)``), else read now."""
        if snapshot is not None and snapshot.alert_states is not None:
            raw = snapshot.alert_states
        else:
            with redis_errors("alert states"):
                raw = {text(k): text(v) for k, v in self.queue.client.hgetall(self.key).items()}
        wanted = set(names) if names is not None else None
        out: dict[str, StoredAlert] = {}
        for k, state in raw.items():
            if not k.startswith("s:"):
                continue
            name = k[2:]
            if wanted is not None and name not in wanted:
                continue
            try:
                details = json.loads(raw.get(f"d:{name}", "{}"))
            except ValueError:
                details = {}
            since, evaluated = raw.get(f"t:{name}"), raw.get(f"e:{name}")
            since_ms, evaluated_ms = to_float(since), to_float(evaluated)  # garbage reads as unknown
            out[name] = StoredAlert(name=name, state=state, since=since_ms / 1000.0 if since_ms else None,
                                    evaluated_at=evaluated_ms / 1000.0 if evaluated_ms else None,
                                    details=details if isinstance(details, dict) else {})
        return out

    def forget(self, names: Iterable[str]) -> None:
        """Drop the recorded state of rules (e.g. removed from the configuration)."""
        fields = [f"{p}:{n}" for n in names for p in ("s", "t", "e", "d")]
        if fields:
            with redis_errors("alert forget"):
                self.queue.client.hdel(self.key, *fields)
