"""Periodic schedules in a Django project: ``FAIRQUE["SCHEDULES"]`` plus the ``@periodic`` ones.

``runfairworker`` fires them (``--no-schedules`` turns that off); the admin's schedule page and
``manage.py fairque_schedules`` list them and run, pause or resume one. See docs/schedules.md.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from .conf import get_queue, get_setting
from .core.schedule import Schedule, registered_schedules
from .core.scheduler import ScheduleStatus, fire_now, schedule_status
from .tenancy import resolve_user_id

__all__ = ["find_schedule", "get_schedules", "pause", "resume", "run_now", "statuses", "to_user"]


def get_schedules() -> tuple[Schedule, ...]:
    """Every schedule: those of ``FAIRQUE["SCHEDULES"]``, then those declared with ``@periodic``
    (a setting of the same name wins: settings can re-time or retarget a decorated task)."""
    configured: tuple[Schedule, ...] = get_setting("SCHEDULES") or ()
    names = {s.name for s in configured}
    declared = registered_schedules(getattr(settings, "TIME_ZONE", None) or "UTC")
    return (*configured, *(s for s in declared if s.name not in names))


def find_schedule(name: str) -> Schedule:
    """The schedule called ``name``; ``KeyError`` naming the known ones otherwise."""
    for schedule in get_schedules():
        if schedule.name == name:
            return schedule
    known = ", ".join(s.name for s in get_schedules()) or "(none)"
    raise KeyError(f"no schedule {name!r} (schedules: {known})")


def to_user(obj: Any) -> str:
    """A tenant returned by a ``tenants`` callable (a model instance, ...) as a user id."""
    return resolve_user_id(obj)


def statuses() -> list[ScheduleStatus]:
    """Last and next tick, pause and counts of every schedule (one round trip)."""
    return schedule_status(get_queue(), get_schedules())


def run_now(name: str) -> int:
    """Push the schedule's tasks now (outside its timing); how many were pushed."""
    return fire_now(get_queue(), find_schedule(name), to_user)


def pause(name: str) -> None:
    """Skip the schedule's ticks until :func:`resume` (ticks due meanwhile are not caught up)."""
    get_queue().schedule_set(find_schedule(name).name, {"paused": "1"})


def resume(name: str) -> None:
    """Fire the schedule's ticks again, from the next one on."""
    get_queue().schedule_set(find_schedule(name).name, {}, ["paused"])
