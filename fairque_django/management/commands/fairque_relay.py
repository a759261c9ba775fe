"""``manage.py fairque_relay``: push the outbox's rows to Redis (``ENQUEUE_MODE = "outbox"``)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.outbox import Relay


class Command(BaseCommand):
    help = ("Push the tasks of the transactional outbox to Redis and delete their rows, until SIGTERM/SIGINT "
            "(--once: until the outbox is empty).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true",
                            help="relay what is due now and exit (exit code 1 when Redis cannot be reached)")
        parser.add_argument("--database", default=None,
                            help="database alias of the outbox (default: the router's choice, usually 'default')")
        parser.add_argument("--batch-size", type=int, default=None,
                            help="rows per transaction (default: FAIRQUE['OUTBOX_BATCH_SIZE'])")
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between looks at an empty outbox (default: FAIRQUE['OUTBOX_RELAY_INTERVAL'])")
        parser.add_argument("--loglevel", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["interval"] is not None and options["interval"] <= 0:
            raise CommandError("--interval must be greater than 0")
        logger = logging.getLogger("fairque_django")
        logger.setLevel(options["loglevel"])
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        relay = Relay(using=options["database"], batch_size=options["batch_size"], interval=options["interval"])
        if options["once"]:
            try:
                result = relay.drain()
            except Exception as exc:  # Redis or the database: nothing was lost, the rows stay
                raise CommandError(f"outbox relay stopped, the rows left stay in the outbox: {exc}") from exc
            self.stdout.write(f"relayed {result.pushed} task(s)"
                              + (f", {result.set_aside} set aside (see their last_error)" if result.set_aside else ""))
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        relay.run(stop)
