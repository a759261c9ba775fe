"""``manage.py fairque_health WORKER_ID``: exit 0 when that worker is alive, 1 when not."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.conf import get_config, get_queue
from fairque_django.core.exceptions import FairQueueError, UnknownWorkerError
from fairque_django.core.worker import worker_health


class Command(BaseCommand):
    help = "Liveness probe: exit 0 if WORKER_ID has a fresh heartbeat in Redis, else 1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("worker_id")
        parser.add_argument("--json", action="store_true", help="print the health record as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        worker_id: str = options["worker_id"]
        try:
            settings = config.get_worker(worker_id)
        except UnknownWorkerError as exc:
            raise CommandError(str(exc)) from exc
        try:
            record = worker_health(get_queue(), worker_id)
        except FairQueueError as exc:
            self.stderr.write(f"{worker_id}: unhealthy: {exc}")
            sys.exit(1)
        max_age = 3 * min(settings.heartbeat_interval_seconds, config.queue.lease_timeout_seconds / 3)
        alive = record is not None and record["heartbeat_age"] <= max_age
        if options["json"]:
            self.stdout.write(json.dumps({"worker_id": worker_id, "alive": alive, "record": record}))
        elif alive and record is not None:
            self.stdout.write(f"{worker_id}: alive (pid {record['pid']} on {record['host']}, heartbeat "
                              f"{record['heartbeat_age']:.1f}s ago, {record['processed']} processed)")
        else:
            self.stderr.write(f"{worker_id}: not alive (no fresh heartbeat)")
        sys.exit(0 if alive else 1)
