"""``manage.py fairque_health WORKER_ID``: exit 0 when that worker is ``alive``, 1 when it is
``stale``, ``down`` or ``never seen`` (the liveness labels of ``core.observe``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.conf import get_config, get_queue
from fairque_django.core.errors import FairQueueError, UnknownWorkerError
from fairque_django.core.observe import light_snapshot
from fairque_django.core.observe.stalled import describe_stalled


class Command(BaseCommand):
    help = "Liveness probe: exit 0 if WORKER_ID has a fresh heartbeat in Redis, else 1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("worker_id")
        parser.add_argument("--json", action="store_true", help="print the health record as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        worker_id: str = options["worker_id"]
        try:
            get_config().get_worker(worker_id)  # a configured id: the snapshot has a row for it
        except UnknownWorkerError as exc:
            raise CommandError(str(exc)) from exc
        try:
            snapshot = light_snapshot(get_queue())
        except FairQueueError as exc:
            self.stderr.write(f"{worker_id}: unhealthy: {exc}")
            sys.exit(1)
        state = snapshot.worker(worker_id)
        if state is None:
            raise CommandError(f"{worker_id}: no liveness row (not configured?)")
        record = state.record
        if snapshot.stalled:  # reported by every probe; the exit status stays the worker's liveness
            self.stderr.write(f"warning: {describe_stalled(snapshot.stalled)}")
        if options["json"]:
            self.stdout.write(json.dumps({"worker_id": worker_id, "status": state.status, "alive": state.alive,
                                          "heartbeat_age": state.heartbeat_age, "record": record,
                                          "stalled": [s.to_dict() for s in snapshot.stalled]}))
        elif state.alive and record is not None:
            self.stdout.write(f"{worker_id}: alive (pid {record['pid']} on {record['host']}, heartbeat "
                              f"{record['heartbeat_age']:.1f}s ago, {record['processed']} processed)")
        else:
            since = f", last seen {state.heartbeat_age:.0f}s ago" if state.heartbeat_age is not None else ""
            self.stderr.write(f"{worker_id}: {state.status} (no fresh heartbeat{since})")
        sys.exit(0 if state.alive else 1)
