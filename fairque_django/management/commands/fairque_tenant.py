"""``manage.py fairque_tenant USER``: show and change one tenant's limits and pause.

::

    fairque_tenant USER [--show] [--json]
    fairque_tenant USER --pause | --resume
    fairque_tenant USER [--concurrency N|none] [--rate 10/s|none] [--burst N]
    fairque_tenant USER --clear
    fairque_tenant USER --cancel-queued

Changes are runtime limits (they win over ``queue.tenant_limits`` until ``--clear``); ``none``
means no limit. ``--cancel-queued`` cancels every queued and delayed task of the tenant (its
running tasks are not touched). Every call ends by showing the tenant's state. See docs/limits.md.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.conf import get_queue
from fairque_django.core.config.limits import UNCHANGED, Unchanged
from fairque_django.core.errors import FairQueueError


def _limit(value: str | None, what: str) -> int | Unchanged | None:
    if value is None:
        return UNCHANGED
    if value.lower() == "none":
        return None
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"--{what} must be an integer >= 1 or 'none', not {value!r}")
    return int(value)


def describe(state: dict[str, Any]) -> str:
    """The tenant's state as a few lines of text."""
    def source(name: str) -> str:
        return str(state[f"{name}_source"])
    cap = state["concurrency"] if state["concurrency"] is not None else "no cap"
    lines = [
        f"tenant       {state['user_id']}",
        f"concurrency  {cap}  ({source('concurrency')})",
        f"rate         {state['rate'] or 'no limit'}  ({source('rate')}), burst {state['burst']} ({source('burst')})",
        f"leased now   {state['leased']}",
        f"paused       {'yes' if state['paused'] else 'no'}",
        f"held         {state['held'] or '-'}",
    ]
    if "cancelled" in state:
        lines.append(f"cancelled    {state['cancelled']} queued or delayed task(s)")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Show or change one tenant's concurrency cap, rate limit and pause (runtime limits)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the tenant's user id")
        parser.add_argument("--show", action="store_true", help="show the tenant's limits and state (the default)")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--pause", action="store_true", help="lease nothing of the tenant until --resume")
        group.add_argument("--resume", action="store_true", help="let a paused tenant rejoin its rotation")
        parser.add_argument("--concurrency", metavar="N", help="cap on its tasks leased at once ('none': no cap)")
        parser.add_argument("--rate", metavar="N/s", help="rate limit: N/s, N/m or N/h ('none': no limit)")
        parser.add_argument("--burst", metavar="N", help="tokens it may use at once (rate limit)")
        parser.add_argument("--clear", action="store_true", help="drop its runtime limits (the settings apply)")
        parser.add_argument("--cancel-queued", action="store_true",
                            help="cancel every queued and delayed task of the tenant (running tasks go on)")
        parser.add_argument("--json", action="store_true", help="print the state as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        user = options["user"]
        queue = get_queue()
        conc = _limit(options["concurrency"], "concurrency")
        burst = _limit(options["burst"], "burst")
        rate: str | Unchanged | None = UNCHANGED
        if options["rate"] is not None:
            rate = None if options["rate"].lower() == "none" else options["rate"]
        if options["clear"] and any(v is not UNCHANGED for v in (conc, rate, burst)):
            raise CommandError("--clear drops the runtime limits: give no new ones with it")
        try:
            if options["clear"]:
                queue.clear_tenant_limits(user)
            if any(v is not UNCHANGED for v in (conc, rate, burst)):
                queue.set_tenant_limits(user, concurrency=conc, rate=rate, burst=burst)
            if options["pause"]:
                queue.pause_tenant(user)
            if options["resume"]:
                queue.resume_tenant(user)
            cancelled = queue.cancel_tenant(user)["cancelled"] if options["cancel_queued"] else None
            state = queue.get_tenant_limits(user)
        except FairQueueError as exc:
            raise CommandError(str(exc)) from exc
        if cancelled is not None:
            state["cancelled"] = cancelled
        self.stdout.write(json.dumps(state, sort_keys=True) if options["json"] else describe(state))
