"""Periodic schedules: what fires when, and for whom (no I/O here; :mod:`.scheduler` fires them).

A :class:`Schedule` names a registered task, a timing (``cron`` in a time zone, evaluated by
``cronsim`` with Debian cron's DST rules, or ``every`` N seconds) and its tenants: one ``user``,
or ``tenants`` (ids and glob patterns over known tenants, or a dotted path to a callable that
returns ids) for one task per tenant per tick. Schedules come from ``FAIRQUE["SCHEDULES"]``
(:func:`parse_schedules`) or the :func:`periodic` decorator (:func:`registered_schedules`).

A *tick* is one due time, identified by its epoch second; a task fired for it has the id
``sched:<name>:<tick>:<tenant>``, so pushing it twice is a duplicate (see :mod:`.scheduler`).
"""

from __future__ import annotations

import hashlib
import importlib
import re
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .config.kinds import Problem, item, map_item, raise_problems, type_name, unknown_key
from .config.schema import SCHEDULE
from .errors import ConfigurationError
from .ids import user_id_problem
from .registry import TaskFunction
from .registry import task as register_task

__all__ = ["Schedule", "parse_schedules", "periodic", "registered_schedules", "schedule_task_id"]

NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
MAX_TASK_ID: Final = 200

_registry: dict[str, tuple[Schedule, bool]] = {}  # name -> (schedule, its time zone was given)
_lock = threading.Lock()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic schedule (checked when built; see ``SCHEDULE`` in the config schema)."""

    name: str
    task: str
    cron: str | None = None
    every: int | None = None
    user: str | None = None
    tenants: tuple[str, ...] | str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}), hash=False)
    priority: int | None = None
    max_retries: int | None = None
    catch_up: bool = SCHEDULE["catch_up"].default
    grace_seconds: float = SCHEDULE["grace_seconds"].default
    timezone: str = "UTC"
    # a callable of the decorator's tenants= (not part of equality)
    tenants_callable: Callable[[], Iterable[Any]] | None = field(default=None, compare=False, repr=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = f"SCHEDULES[{self.name!r}]"
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigurationError("a schedule name is 1-100 letters, digits, '_', '.' or '-'", base)
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError("give exactly one of cron and every", base)
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime(2000, 1, 1, tzinfo=timezone.utc))
            except CronSimError as exc:
                raise ConfigurationError(f"bad cron expression {self.cron!r}: {exc}", f"{base}.cron") from exc
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"unknown time zone {self.timezone!r}", f"{base}.timezone") from exc
        targets = [self.user is not None, self.tenants is not None, self.tenants_callable is not None]
        if sum(targets) != 1:
            raise ConfigurationError("give exactly one of user and tenants", base)
        if self.user is not None and (problem := user_id_problem(self.user)) is not None:
            raise ConfigurationError(problem, f"{base}.user")
        if isinstance(self.tenants, tuple):
            for i, user in enumerate(self.tenants):
                if (problem := user_id_problem(user, allow_pattern=True)) is not None:
                    raise ConfigurationError(problem, item(f"{base}.tenants", i))
        if not isinstance(self.kwargs, types.MappingProxyType):
            object.__setattr__(self, "kwargs", types.MappingProxyType(dict(self.kwargs)))

    # --- timing -------------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def next_after(self, ts: float) -> int:
        """The first tick strictly after epoch second ``ts``."""
        if self.every is not None:
            return (int(ts) // self.every + 1) * self.every
        assert self.cron is not None
        start = _utc(int(ts)).astimezone(self.zone)
        return int(next(CronSim(self.cron, start)).timestamp())

    def latest_at(self, ts: float) -> int | None:
        """The last tick at or before epoch second ``ts`` (None: none in cronsim's 50 years)."""
        if self.every is not None:
            return int(ts) // self.every * self.every
        assert self.cron is not None
        start = _utc(int(ts) + 1).astimezone(self.zone)
        try:
            return int(next(CronSim(self.cron, start, reverse=True)).timestamp())
        except StopIteration:
            return None

    def due(self, last: int | None, now: float) -> tuple[list[int], int | None]:
        """What a scheduler fires at ``now`` after the last tick claimed was ``last``.

        Returns (ticks to fire in order, the tick to skip to without firing, or None). Ticks due
        within ``grace_seconds`` are on time: each fires. Older unclaimed ticks were missed (no
        worker was up): ``catch_up`` fires the latest of them once, otherwise they are skipped.
        ``last`` None (never fired): no tick is missed."""
        edge = now - self.grace_seconds
        on_time: list[int] = []
        t = self.next_after(max(edge, last if last is not None else edge))
        while t <= now and len(on_time) < 1000:
            on_time.append(t)
            t = self.next_after(t)
        if last is None:  # never fired: only the latest tick, if it is on time
            return on_time[-1:], None
        missed = self.latest_at(edge)
        if missed is None or missed <= last:
            return on_time, None
        if self.catch_up:
            return [missed, *on_time], None
        return on_time, missed

    # --- tasks ----------------------------------------------------------------------------
    def task_id(self, tick: int | str, tenant: str) -> str:
        return schedule_task_id(self.name, tick, tenant)


def schedule_task_id(name: str, tick: int | str, tenant: str) -> str:
    """``sched:<name>:<tick>:<tenant>``; a tenant id that would make it longer than 200
    characters is replaced by a digest of it (still one id per tenant)."""
    task_id = f"sched:{name}:{tick}:{tenant}"
    if len(task_id) <= MAX_TASK_ID:
        return task_id
    return f"sched:{name}:{tick}:#{hashlib.sha256(tenant.encode('utf-8')).hexdigest()[:32]}"


def load_callable(path: str, key: str) -> Callable[[], Iterable[Any]]:
    """The callable a configured dotted path names (configuration only, never data from Redis)."""
    module, _, attr = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr) if module else None
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"tenants {path!r} does not import: {exc}", key) from exc
    if not callable(obj):
        raise ConfigurationError(f"tenants {path!r} is not a callable", key)
    result: Callable[[], Iterable[Any]] = obj
    return result


# --------------------------------------------------------------------------- settings


def _one(name: Any, raw: Any, zone: str, key: str) -> tuple[Schedule | None, list[Problem]]:
    base = map_item(key, name)
    if not isinstance(raw, Mapping):
        return None, [Problem(base, f"must be a dict, not {type_name(raw)}")]
    problems = [Problem(f"{base}.{k}", unknown_key(k, SCHEDULE.names)) for k in SCHEDULE.unknown(raw)]
    values, found = SCHEDULE.check(raw, lambda k: f"{base}.{k}")
    problems += found
    for req in ("task",):
        if req not in raw:
            problems.append(Problem(f"{base}.{req}", "is required"))
    if problems:
        return None, problems
    every = values.pop("every", None)
    tenants = values.pop("tenants", None)
    if isinstance(tenants, list):
        tenants = tuple(tenants)
    if values.get("timezone") is None:
        values["timezone"] = zone
    try:
        return Schedule(name=name, every=None if every is None else int(every), tenants=tenants, **values), []
    except ConfigurationError as exc:
        where = base + (exc.key or "").partition("]")[2]  # the field the schedule named
        return None, [Problem(where, str(exc).removeprefix(f"{exc.key}: "))]


def parse_schedules(raw: Any, *, timezone_name: str = "UTC", key: str = "SCHEDULES") -> tuple[Schedule, ...]:
    """Schedules from ``FAIRQUE["SCHEDULES"]``: a dict of name -> fields (``SCHEDULE``);
    cron is evaluated in ``timezone_name`` (Django's ``TIME_ZONE``) unless a schedule names one."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"must be a dict of schedule name -> schedule, not {type_name(raw)}", key)
    out: list[Schedule] = []
    problems: list[Problem] = []
    for name, entry in raw.items():
        schedule, found = _one(name, entry, timezone_name, key)
        problems += found
        if schedule is not None:
            out.append(schedule)
    raise_problems(problems)
    return tuple(out)


# --------------------------------------------------------------------------- decorator


def periodic(*, cron: str | None = None, every: timedelta | float | None = None, user: str | None = None,
             tenants: Iterable[str] | str | Callable[[], Iterable[Any]] | None = None, name: str | None = None,
             args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, priority: int | None = None,
             max_retries: int | None = None, catch_up: bool = True, grace_seconds: float = 10.0,
             timezone: str | None = None) -> Callable[[Any], TaskFunction[Any, Any]]:
    """Run a task periodically: ``@periodic(cron="*/5 * * * *", user="org:1")`` above (or instead
    of) ``@task``. ``every`` takes a timedelta or seconds (whole seconds, at least 1); ``tenants``
    a list of ids / glob patterns, a dotted path or a callable returning tenant ids (one task per
    tenant per tick). ``timezone`` None: the workers' (Django: ``settings.TIME_ZONE``)."""
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if seconds is not None and (seconds < 1 or float(seconds) != int(seconds)):
        raise ConfigurationError(f"every must be whole seconds >= 1 (got {every!r})", "periodic")

    def wrap(fn: Any) -> TaskFunction[Any, Any]:
        task_fn = fn if isinstance(fn, TaskFunction) else register_task(fn)
        target: dict[str, Any] = {}
        if callable(tenants):
            target["tenants_callable"] = tenants
        elif isinstance(tenants, str):
            target["tenants"] = tenants
        elif tenants is not None:
            target["tenants"] = tuple(tenants)
        schedule = Schedule(
            name=name or task_fn.name, task=task_fn.name, cron=cron, every=None if seconds is None else int(seconds),
            user=user, args=tuple(args), kwargs=dict(kwargs or {}), priority=priority, max_retries=max_retries,
            catch_up=catch_up, grace_seconds=grace_seconds, timezone=timezone or "UTC", **target)
        with _lock:
            _registry[schedule.name] = (schedule, timezone is not None)
        return task_fn

    return wrap


def registered_schedules(timezone_name: str | None = None) -> tuple[Schedule, ...]:
    """Schedules declared with :func:`periodic`; those without a time zone of their own get
    ``timezone_name`` (when given; else UTC)."""
    with _lock:
        found = list(_registry.values())
    return tuple(s if given or timezone_name is None else replace(s, timezone=timezone_name) for s, given in found)


def forget_schedule(name: str) -> None:
    """Remove a schedule declared with :func:`periodic` (tests)."""
    with _lock:
        _registry.pop(name, None)
