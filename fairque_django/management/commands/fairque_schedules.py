"""``manage.py fairque_schedules``: list the periodic schedules, run one now, pause or resume one.

::

    fairque_schedules list [--json]
    fairque_schedules run NAME
    fairque_schedules pause NAME
    fairque_schedules resume NAME

``run`` pushes the schedule's tasks at once (ids of their own: its ticks are not affected);
``pause`` skips its ticks until ``resume`` (ticks due meanwhile are not caught up).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules

from fairque_django.conf import get_setting
from fairque_django.core.errors import FairQueueError
from fairque_django.core.registry import import_task_modules
from fairque_django.core.scheduler import ScheduleStatus
from fairque_django.schedules import find_schedule, pause, resume, run_now, statuses

from .fairque_stats import format_table


def _local(ts: float | None, status: ScheduleStatus) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, status.schedule.zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def status_data(status: ScheduleStatus) -> dict[str, Any]:
    """A schedule's state as JSON-ready data."""
    s = status.schedule
    tenants: Any = s.user if s.user is not None else (list(s.tenants) if isinstance(s.tenants, tuple)
                                                       else s.tenants or "(callable)")
    return {
        "name": s.name, "task": s.task, "cron": s.cron, "every": s.every, "timezone": s.timezone,
        "tenants": tenants, "catch_up": s.catch_up, "paused": status.paused, "last_tick": status.last_tick,
        "next_tick": status.next_tick, "fired": status.fired, "skipped": status.skipped,
        "pending_claims": list(status.pending),
    }


class Command(BaseCommand):
    help = "List the periodic schedules (FAIRQUE['SCHEDULES'], @periodic); run, pause or resume one."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="every schedule with its last and next tick")
        listing.add_argument("--json", action="store_true", help="print JSON")
        for action, text in (("run", "push the schedule's tasks now"), ("pause", "skip its ticks"),
                             ("resume", "fire its ticks again")):
            sub.add_parser(action, help=text).add_argument("name", help="schedule name")

    def handle(self, *args: Any, **options: Any) -> None:
        autodiscover_modules("tasks")  # @periodic schedules live in the apps' tasks modules
        import_task_modules(get_setting("TASK_MODULES"))
        action = options["action"]
        try:
            if action == "list":
                self._list(options["json"])
                return
            try:
                name = find_schedule(options["name"]).name
            except KeyError as exc:
                raise CommandError(exc.args[0]) from exc
            if action == "run":
                self.stdout.write(f"schedule {name}: pushed {run_now(name)} task(s)")
            elif action == "pause":
                pause(name)
                self.stdout.write(f"schedule {name}: paused")
            else:
                resume(name)
                self.stdout.write(f"schedule {name}: resumed")
        except FairQueueError as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, as_json: bool) -> None:
        found = statuses()
        if as_json:
            self.stdout.write(json.dumps([status_data(s) for s in found], indent=2))
            return
        if not found:
            self.stdout.write("no schedules (FAIRQUE['SCHEDULES'] is empty and no @periodic task is imported)")
            return
        rows = []
        for st in found:
            data = status_data(st)
            timing = f"cron {st.schedule.cron} ({st.schedule.timezone})" if st.schedule.cron else \
                f"every {st.schedule.every} s"
            rows.append([st.schedule.name, st.schedule.task, timing, str(data["tenants"]),
                         _local(st.last_tick, st), _local(st.next_tick, st),
                         "paused" if st.paused else "active", str(st.fired)])
        self.stdout.write(format_table(["name", "task", "timing", "tenants", "last tick", "next tick", "state",
                                        "fired"], rows))
