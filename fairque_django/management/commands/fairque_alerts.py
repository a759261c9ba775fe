"""``manage.py fairque_alerts [--json] [--notify]``: the state of every alert rule; exit 1 if any fires."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fairque_django.alerts import AlertEvaluator, alert_rules, current_alerts
from fairque_django.conf import get_queue
from fairque_django.core.errors import FairQueueError


def _age(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0, int(time.time() - ts))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


class Command(BaseCommand):
    help = ("Evaluate the alert rules of FAIRQUE['ALERTS'] now and print the state of each; exit 1 when any "
            "fires (for cron jobs and probes), 2 when the queue cannot be read.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
        parser.add_argument("--notify", action="store_true",
                            help="also record the states and report transitions (signal + log), as the "
                                 "workers do")

    def handle(self, *args: Any, **options: Any) -> None:
        rules = alert_rules()  # FAIRQUE["ALERTS"] and the built-in tenant-starved rule
        try:
            if options["notify"]:
                AlertEvaluator(get_queue(), rules, guard=False).run()
            alerts = current_alerts(get_queue(), rules)
        except FairQueueError as exc:
            self.stderr.write(f"cannot evaluate the alert rules: {exc}")
            sys.exit(2)
        firing = [a for a in alerts if a["firing"]]
        if options["json"]:
            self.stdout.write(json.dumps({"firing": len(firing), "rules": alerts}, indent=2, sort_keys=True,
                                         default=str))
        elif not alerts:
            self.stdout.write("No alert rules configured (FAIRQUE['ALERTS']).")
        else:
            for a in alerts:
                label = "FIRING" if a["firing"] else "ok"
                since = f" (since {_age(a['since'])})" if a["since"] is not None else ""
                self.stdout.write(f"{label:<6}  {a['name']} [{a['type']}, {a['severity']}]{since}: {a['message']}")
            self.stdout.write(f"{len(firing)} of {len(alerts)} rule(s) firing")
        if firing:
            sys.exit(1)
