"""Alert rules evaluated against a :class:`~.snapshot.QueueMetrics` snapshot (no Django imports).

* :func:`parse_rules` builds rule dataclasses from plain data (the ``FAIRQUE["ALERTS"]`` list),
  with errors that name the offending key;
* :func:`evaluate` checks every rule against one snapshot and returns an :class:`AlertState`
  per rule (pure: no I/O);
* :class:`AlertTracker` stores each rule's state in Redis (``{prefix}:alerts``) and detects
  transitions with one atomic script (``lua/alert_transition.lua``), so that when several
  processes evaluate the same rules each change (``firing`` / ``resolved``) is reported once.

Rule types: ``dlq_size_above``, ``total_depth_above``, ``oldest_wait_above``, ``no_live_worker``,
``heartbeat_older_than``, ``failure_ratio_above``, ``unserved_tenants``, ``stalled_tenants``,
``tenant_at_cap`` (see ``docs/monitoring.md``).
:data:`BUILTIN_RULES` (the ``tenant-starved`` rule) are added to the configured ones by
:func:`with_builtin_rules` unless a configured rule has the same name or type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from ..config import Section, glob_match
from ..config.kinds import unknown_key
from ..config.schema import ALERT_RULE, ALERT_RULE_OPTIONS
from ..errors import ConfigurationError
from .rows import WorkerMetrics
from .snapshot import QueueMetrics
from .stalled import describe_stalled
from .starved import describe_starved

__all__ = [
    "BUILTIN_RULES",
    "FIRING",
    "OK",
    "RESOLVED",
    "RULE_TYPES",
    "AlertRule",
    "AlertState",
    "DlqSizeAbove",
    "FailureRatioAbove",
    "HeartbeatOlderThan",
    "NoLiveWorker",
    "OldestWaitAbove",
    "TenantAtCap",
    "TotalDepthAbove",
    "UnservedTenants",
    "evaluate",
    "parse_rules",
    "required_top_n",
    "required_windows",
    "with_builtin_rules",
]

FIRING: Final = "firing"
OK: Final = "ok"
RESOLVED: Final = "resolved"
NAMES_LISTED: Final = 20  # tenants / workers named in an alert's details


# --------------------------------------------------------------------------- states

@dataclass(frozen=True, slots=True)
class AlertState:
    """The outcome of one rule on one snapshot. ``details`` is JSON-ready and always holds
    ``message``, ``value`` and ``threshold``."""

    rule: AlertRule
    firing: bool
    value: float | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def state(self) -> str:
        return FIRING if self.firing else OK


def _state(rule: AlertRule, firing: bool, value: float | None, message: str, **extra: Any) -> AlertState:
    details = {"message": message, "value": value, "threshold": rule.threshold_value, "type": rule.type,
               "severity": rule.severity, **extra}
    return AlertState(rule, firing, value, message, details)


# --------------------------------------------------------------------------- rules

@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    """Common fields of every rule. Subclasses set ``type`` and implement :meth:`check`."""

    type: ClassVar[str] = ""
    name: str
    severity: str = "warning"
    description: str = ""

    @property
    def threshold_value(self) -> float | None:
        return getattr(self, "threshold", None)

    def check(self, metrics: QueueMetrics) -> AlertState:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        for f in self.__dataclass_fields__:
            if f != "name":
                value = getattr(self, f)
                out[f] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DlqSizeAbove(AlertRule):
    """Fires while the dead-letter queue holds more than ``threshold`` tasks."""

    type: ClassVar[str] = "dlq_size_above"
    threshold: int

    def check(self, metrics: QueueMetrics) -> AlertState:
        n = metrics.dlq_size
        return _state(self, n > self.threshold, n,
                      f"the dead-letter queue holds {n} task(s) (threshold {self.threshold})")


@dataclass(frozen=True, slots=True, kw_only=True)
class TotalDepthAbove(AlertRule):
    """Fires while more than ``threshold`` tasks (of all tenants) are in ``lanes``
    (default: ready, i.e. waiting for a worker; also ``delayed``, ``leased``)."""

    type: ClassVar[str] = "total_depth_above"
    threshold: int
    lanes: tuple[str, ...] = ("ready",)

    def check(self, metrics: QueueMetrics) -> AlertState:
        by_lane = {"ready": metrics.ready, "delayed": metrics.delayed, "leased": metrics.leased}
        n = sum(by_lane[lane] for lane in self.lanes)
        return _state(self, n > self.threshold, n,
                      f"{n} task(s) {'/'.join(self.lanes)} across all tenants (threshold {self.threshold})",
                      lanes={lane: by_lane[lane] for lane in self.lanes})


@dataclass(frozen=True, slots=True, kw_only=True)
class OldestWaitAbove(AlertRule):
    """Fires while some tenant's oldest ready task has waited more than ``threshold`` seconds;
    names the tenants. Looks at the ``scan`` tenants with the most unfinished work (optionally
    only those matching ``tenants``: ids or glob patterns)."""

    type: ClassVar[str] = "oldest_wait_above"
    threshold: float
    tenants: tuple[str, ...] = ()
    scan: int = 1000

    def check(self, metrics: QueueMetrics) -> AlertState:
        rows = [t for t in metrics.tenants if t.oldest_wait_seconds is not None
                and (not self.tenants or any(p == t.tenant or glob_match(p, t.tenant) for p in self.tenants))]
        late = sorted((t for t in rows if (t.oldest_wait_seconds or 0.0) > self.threshold),
                      key=lambda t: -(t.oldest_wait_seconds or 0.0))
        worst = max((t.oldest_wait_seconds or 0.0 for t in rows), default=None)
        listed = [{"tenant": t.tenant, "oldest_wait_seconds": round(t.oldest_wait_seconds or 0.0, 3)}
                  for t in late[:NAMES_LISTED]]
        if late:
            names = ", ".join(f"{t.tenant} ({t.oldest_wait_seconds:.0f} s)" for t in late[:5])
            more = f" and {len(late) - 5} more" if len(late) > 5 else ""
            message = f"{len(late)} tenant(s) waited more than {self.threshold:g} s: {names}{more}"
        else:
            message = f"no tenant waited more than {self.threshold:g} s"
        return _state(self, bool(late), None if worst is None else round(worst, 3), message,
                      tenants=[t.tenant for t in late[:NAMES_LISTED]], late=listed, late_count=len(late),
                      scanned_tenants=len(metrics.tenants), tenants_with_work=metrics.tenants_with_work)


def covers(worker: WorkerMetrics, target: str) -> bool:
    """Whether ``worker`` is assigned or may steal ``target`` (a user id, or a pattern taken
    literally: ``tenant:*`` is covered by the entries ``tenant:*`` and ``*``, not ``tenant:a*``)."""
    return any(entry == target or glob_match(entry, target) for entry in (*worker.assigned, *worker.steals))


@dataclass(frozen=True, slots=True, kw_only=True)
class NoLiveWorker(AlertRule):
    """Fires while some of ``users`` (ids or patterns) has no live worker that is assigned or
    may steal it -- none configured, or all of them dead. Without ``users``: while no worker
    at all is alive."""

    type: ClassVar[str] = "no_live_worker"
    users: tuple[str, ...] = ()

    def check(self, metrics: QueueMetrics) -> AlertState:
        live = [w.worker_id for w in metrics.live_workers]
        if not self.users:
            return _state(self, not live, len(live),
                          "no worker is alive" if not live else f"{len(live)} worker(s) alive",
                          live_workers=live)
        uncovered: list[str] = []
        targets: dict[str, Any] = {}
        problems: list[str] = []
        for target in self.users:
            serving = [w for w in metrics.workers if covers(w, target)]
            alive = [w.worker_id for w in serving if w.alive]
            targets[target] = {"workers": [w.worker_id for w in serving], "live": alive}
            if not alive:
                uncovered.append(target)
                if serving:
                    problems.append(f"{target} (its workers are not alive: "
                                    f"{', '.join(f'{w.worker_id} {w.status}' for w in serving)})")
                else:
                    problems.append(f"{target} (no worker is assigned or may steal it)")
        message = ("no live worker serves " + "; ".join(problems)) if uncovered else \
            "every listed user has a live worker"
        return _state(self, bool(uncovered), len(uncovered), message, uncovered=uncovered, targets=targets,
                      live_workers=live)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatOlderThan(AlertRule):
    """Fires while a worker's last heartbeat is older than ``threshold`` seconds (configured
    workers, or those listed in ``workers``). A worker that stopped cleanly (or never started)
    has no heartbeat on record and does not count: use ``no_live_worker`` for that."""

    type: ClassVar[str] = "heartbeat_older_than"
    threshold: float
    workers: tuple[str, ...] = ()

    def check(self, metrics: QueueMetrics) -> AlertState:
        rows = [w for w in metrics.workers if (w.worker_id in self.workers if self.workers
                                               else (w.configured or w.alive))]
        old = sorted((w for w in rows if w.heartbeat_age is not None and w.heartbeat_age > self.threshold),
                     key=lambda w: -(w.heartbeat_age or 0.0))
        worst = max((w.heartbeat_age for w in rows if w.heartbeat_age is not None), default=None)
        if old:
            message = "heartbeat older than {:g} s: {}".format(
                self.threshold, ", ".join(f"{w.worker_id} ({w.heartbeat_age:.0f} s, {w.status})" for w in old[:5]))
        else:
            message = f"every heartbeat is younger than {self.threshold:g} s"
        return _state(self, bool(old), None if worst is None else round(worst, 3), message,
                      workers=[w.worker_id for w in old[:NAMES_LISTED]],
                      ages={w.worker_id: round(w.heartbeat_age or 0.0, 3) for w in old[:NAMES_LISTED]})


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureRatioAbove(AlertRule):
    """Fires while failed attempts / (failed attempts + completions) over the last ``window``
    seconds exceeds ``threshold``, once at least ``min_events`` of them happened. Computed from
    counter snapshots (one per 10 s, kept an hour, so the window is 1 s to 1 h and effectively
    rounded up to the snapshot spacing); until a snapshot exists it does not fire."""

    type: ClassVar[str] = "failure_ratio_above"
    threshold: float
    window: float = 300.0
    min_events: int = 10

    def check(self, metrics: QueueMetrics) -> AlertState:
        win = metrics.windows.get(float(self.window))
        failed = win["failed"] if win is not None else None
        done = win["completed"] if win is not None else None
        if win is None or failed is None or done is None:
            return _state(self, False, None, "no counter snapshot to compare with yet", window_seconds=None)
        events = failed + done
        ratio = failed / events if events else 0.0
        firing = events >= self.min_events and ratio > self.threshold
        message = (f"{ratio:.1%} of {events} finished attempt(s) failed in the last {win.seconds:.0f} s "
                   f"(threshold {self.threshold:.1%}, at least {self.min_events} attempts)")
        return _state(self, firing, round(ratio, 4), message, failed=failed, completed=done,
                      window_seconds=round(win.seconds, 3))


@dataclass(frozen=True, slots=True, kw_only=True)
class UnservedTenants(AlertRule):
    """Fires while tenants have ready tasks that no live worker may take: the worker their
    partition belongs to is not alive and no live worker may steal them (starvation by
    configuration). Names the tenants, their partitions and the worker ids to start."""

    type: ClassVar[str] = "unserved_tenants"

    def check(self, metrics: QueueMetrics) -> AlertState:
        parts = metrics.starved
        n = sum(len(p.tenants) for p in parts)
        message = describe_starved(parts) if parts else "every waiting tenant has a live worker that may take it"
        tenants = [t for p in parts for t in p.tenants][:NAMES_LISTED]
        return _state(self, bool(parts), n, message, tenants=tenants,
                      partitions=[p.to_dict() for p in parts][:NAMES_LISTED],
                      start=sorted({w for p in parts for w in p.start}))


@dataclass(frozen=True, slots=True, kw_only=True)
class StalledTenants(AlertRule):
    """Fires while tenants have ready tasks in their lanes but are in no partition's rotation, so
    no worker pops them (a silent stall; :mod:`.stalled`). Names the tenants."""

    type: ClassVar[str] = "stalled_tenants"

    def check(self, metrics: QueueMetrics) -> AlertState:
        stalled = metrics.stalled
        message = (describe_stalled(stalled) if stalled
                   else "every tenant with ready tasks is in its partition's rotation")
        return _state(self, bool(stalled), len(stalled), message,
                      tenants=[s.to_dict() for s in stalled][:NAMES_LISTED])


AT_CAP_KEPT: Final = 200  # tenants whose "at its cap since" a tenant_at_cap rule keeps in its details


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantAtCap(AlertRule):
    """Fires while some tenant has stayed at its concurrency cap (tasks leased now >= its cap) for
    ``for_seconds`` or more; names the tenants. Looks at the ``scan`` tenants with the most
    unfinished work (optionally only those matching ``tenants``: ids or glob patterns).

    "Since when" is carried from one evaluation to the next in the rule's recorded details (the
    snapshot's ``alert_states``, read with ``alerts=True``): a tenant counts as at its cap the whole
    time between two evaluations that both found it there. Without recorded states (or with
    ``for_seconds`` 0) a tenant at its cap now is enough."""

    type: ClassVar[str] = "tenant_at_cap"
    for_seconds: float = 300.0
    tenants: tuple[str, ...] = ()
    scan: int = 1000

    @property
    def threshold_value(self) -> float | None:
        return self.for_seconds

    def _previous(self, metrics: QueueMetrics) -> dict[str, float]:
        raw = (metrics.alert_states or {}).get(f"d:{self.name}")
        try:
            since = json.loads(raw).get("at_cap_since", {}) if raw else {}
        except (ValueError, AttributeError):
            return {}
        return {str(t): float(v) for t, v in since.items() if isinstance(v, (int, float))} \
            if isinstance(since, dict) else {}

    def check(self, metrics: QueueMetrics) -> AlertState:
        now = metrics.timestamp
        previous = self._previous(metrics)
        rows = [t for t in metrics.tenants if t.at_cap
                and (not self.tenants or any(p == t.tenant or glob_match(p, t.tenant) for p in self.tenants))]
        since = {t.tenant: min(previous.get(t.tenant, now), now) for t in rows}
        long = sorted((t for t in rows if now - since[t.tenant] >= self.for_seconds),
                      key=lambda t: since[t.tenant])
        kept = dict(sorted(since.items(), key=lambda kv: kv[1])[:AT_CAP_KEPT])
        listed = [{"tenant": t.tenant, "leased": t.running, "cap": t.cap, "waiting": t.ready,
                   "seconds": round(now - since[t.tenant], 3)} for t in long[:NAMES_LISTED]]
        if long:
            names = ", ".join(f"{t.tenant} ({t.running}/{t.cap}, {now - since[t.tenant]:.0f} s)" for t in long[:5])
            more = f" and {len(long) - 5} more" if len(long) > 5 else ""
            message = f"{len(long)} tenant(s) at their cap for {self.for_seconds:g} s or more: {names}{more}"
        else:
            message = (f"{len(rows)} tenant(s) at their cap, none for {self.for_seconds:g} s yet" if rows
                       else "no tenant is at its cap")
        worst = max((now - since[t.tenant] for t in rows), default=None)
        return _state(self, bool(long), None if worst is None else round(worst, 3), message,
                      tenants=[t.tenant for t in long[:NAMES_LISTED]], at_cap=listed, at_cap_count=len(long),
                      at_cap_since=kept, scanned_tenants=len(metrics.tenants))


RULE_TYPES: Final[Mapping[str, type[AlertRule]]] = {
    cls.type: cls for cls in (DlqSizeAbove, TotalDepthAbove, OldestWaitAbove, NoLiveWorker, HeartbeatOlderThan,
                              FailureRatioAbove, UnservedTenants, StalledTenants, TenantAtCap)
}

BUILTIN_RULES: Final[tuple[AlertRule, ...]] = (
    UnservedTenants(name="tenant-starved", severity="critical",
                    description="tenants wait for a worker id that is not running and that no live worker may "
                                "steal from: start it"),
    StalledTenants(name="partition-stalled", severity="critical",
                   description="tenants have ready tasks but are in no partition's rotation, so no worker pops "
                               "them: push a task for them, and see the worker log for repaired data"),
)
"""Rules evaluated even when ``FAIRQUE["ALERTS"]`` does not list them (see :func:`with_builtin_rules`)."""


def with_builtin_rules(rules: Iterable[AlertRule]) -> tuple[AlertRule, ...]:
    """``rules`` plus each built-in rule whose name and type no rule in ``rules`` uses (so a
    configured ``tenant-starved`` or ``unserved_tenants`` rule replaces the built-in one)."""
    rules = tuple(rules)
    names, types = {r.name for r in rules}, {r.type for r in rules}
    return rules + tuple(b for b in BUILTIN_RULES if b.name not in names and b.type not in types)


def evaluate(metrics: QueueMetrics, rules: Iterable[AlertRule]) -> list[AlertState]:
    """The state of every rule on ``metrics`` (pure: no I/O)."""
    return [rule.check(metrics) for rule in rules]


def required_top_n(rules: Iterable[AlertRule], default: int) -> int:
    """How many tenants a snapshot must cover for ``rules`` (the ``scan`` of ``oldest_wait_above``
    and ``tenant_at_cap``)."""
    return max([default, *(r.scan for r in rules if isinstance(r, (OldestWaitAbove, TenantAtCap)))])


def required_windows(rules: Iterable[AlertRule]) -> tuple[float, ...]:
    """The counter windows (seconds) ``rules`` need in the snapshot."""
    return tuple(sorted({float(r.window) for r in rules if isinstance(r, FailureRatioAbove)}))


# --------------------------------------------------------------------------- parsing

def _rule_options(raw: Mapping[Any, Any], key: str) -> tuple[str, Section]:
    """The rule type of *raw* and the schema of its options; unknown types and options raise."""
    rule_type = raw.get("type")
    if not isinstance(rule_type, str) or rule_type not in ALERT_RULE_OPTIONS:
        raise ConfigurationError(unknown_key(rule_type, ALERT_RULE_OPTIONS, noun="alert type", listing="types"),
                                 f"{key}.type")
    options = ALERT_RULE_OPTIONS[rule_type]
    for option in raw:
        if option not in ALERT_RULE and option not in options:
            raise ConfigurationError(unknown_key(option, [*ALERT_RULE.names, *options.names], noun="option",
                                                 listing=f"options of a {rule_type} rule"), f"{key}.{option}")
    return rule_type, options


def parse_rule(raw: Any, key: str) -> AlertRule:
    """One rule from a mapping such as ``{"name": "dlq", "type": "dlq_size_above", "threshold": 100}``;
    its fields are checked against the schema (``ALERT_RULE`` and ``ALERT_RULE_OPTIONS``)."""
    if isinstance(raw, AlertRule):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"each alert rule must be a dict, not {type(raw).__name__} ({raw!r})", key)
    name = ALERT_RULE["name"].check(raw.get("name"), f"{key}.name")
    rule_type, options = _rule_options(raw, key)
    kwargs: dict[str, Any] = {"name": name}
    for spec in (*ALERT_RULE.fields, *options.fields):
        if spec.name in ("name", "type"):
            continue
        if spec.name in raw:
            kwargs[spec.name] = spec.check(raw[spec.name], f"{key}.{spec.name}")
        elif spec.required:
            raise ConfigurationError(f"a {rule_type} rule needs {spec.name!r}", f"{key}.{spec.name}")
    return RULE_TYPES[rule_type](**kwargs)


def parse_rules(raw: Any, key: str = "ALERTS") -> tuple[AlertRule, ...]:
    """Rules from a list of mappings (or rule objects); names must be unique."""
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, (list, tuple)):
        raise ConfigurationError(f"must be a list of alert rules (dicts), not {type(raw).__name__}", key)
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        rule = parse_rule(item, f"{key}[{i}]")
        if rule.name in seen:
            raise ConfigurationError(f"duplicate alert name {rule.name!r}", f"{key}[{i}].name")
        seen.add(rule.name)
        rules.append(rule)
    return tuple(rules)
