"""``manage.py runfairworker WORKER_ID``: run one configured worker until signalled."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils.module_loading import autodiscover_modules, import_string

from fairque_django.alerts import AlertEvaluator
from fairque_django.conf import get_config, get_queue, get_setting
from fairque_django.core.errors import FairQueueError, UnknownWorkerError
from fairque_django.core.handler import TaskHandler
from fairque_django.core.observe import orphan_after, unserved_assignments
from fairque_django.core.registry import import_task_modules
from fairque_django.core.worker import PREFETCH_BATCH_SECONDS, Worker
from fairque_django.outbox import Relay
from fairque_django.schedules import get_schedules, to_user

logger = logging.getLogger("fairque_django.worker")


class Command(BaseCommand):
    help = "Run the fairque worker WORKER_ID (from settings.FAIRQUE) until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("worker_id", help="a worker id from FAIRQUE['workers']")
        parser.add_argument("--concurrency", type=int, default=None,
                            help="tasks run at once (default: the worker's max_concurrent_tasks)")
        parser.add_argument("--burst", action="store_true",
                            help="exit once this worker has nothing left to do")
        parser.add_argument("--max-tasks", type=int, default=None, help="exit after this many tasks")
        parser.add_argument("--handler", default=None,
                            help="dotted path of a TaskHandler subclass (default: FAIRQUE['HANDLER'])")
        parser.add_argument("--relay", action=argparse.BooleanOptionalAction, default=None,
                            help="run the outbox relay in this process (default: when ENQUEUE_MODE is 'outbox')")
        parser.add_argument("--relay-database", default=None,
                            help="database alias of the outbox the relay reads (default: the router's choice)")
        parser.add_argument("--schedules", action=argparse.BooleanOptionalAction, default=True,
                            help="fire the periodic schedules (FAIRQUE['SCHEDULES'], @periodic) from this "
                                 "worker; any running worker may fire a tick, exactly once (default: on)")
        parser.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                            help="lease a short task's next task(s) while it runs (default: on; never with "
                                 "--burst or --max-tasks; see docs/operations.md)")
        parser.add_argument("--prefetch-batch-ms", type=float, default=PREFETCH_BATCH_SECONDS * 1000,
                            help="a prefetching slot leases as many tiny tasks at once as it runs in this many ms "
                                 "times the worker's slots (default %(default)g; 0: one task a prefetch)")
        parser.add_argument("--loglevel", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        worker_id: str = options["worker_id"]
        try:
            config.get_worker(worker_id)
        except UnknownWorkerError as exc:
            raise CommandError(str(exc)) from exc
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["max_tasks"] is not None and options["max_tasks"] < 1:
            raise CommandError("--max-tasks must be at least 1")
        batch_ms = options["prefetch_batch_ms"]
        if not 0 <= batch_ms <= 1000:  # (also NaN)
            raise CommandError(f"--prefetch-batch-ms must be between 0 and 1000, not {batch_ms:g}")
        self._setup_logging(options["loglevel"])
        self._warn_unserved(worker_id)
        autodiscover_modules("tasks")
        handler = self._handler(options["handler"] or get_setting("HANDLER"))
        import_task_modules(get_setting("TASK_MODULES"))  # their @periodic schedules count too
        schedules = get_schedules() if options["schedules"] else ()
        worker = Worker(
            config, handler, worker_id=worker_id, queue=get_queue(worker_id),
            concurrency=options["concurrency"], burst=options["burst"], max_tasks=options["max_tasks"],
            task_modules=get_setting("TASK_MODULES"), around_task=close_old_connections,
            periodic=AlertEvaluator(get_queue(worker_id)), periodic_interval=get_setting("ALERT_INTERVAL"),
            schedules=schedules, to_user=to_user, prefetch=options["prefetch"],
            prefetch_batch_seconds=batch_ms / 1000,
        )
        relay = options["relay"] if options["relay"] is not None else get_setting("ENQUEUE_MODE") == "outbox"
        if not relay:
            sys.exit(worker.start())
        thread, stop = Relay(get_queue(worker_id), using=options["relay_database"]).start()
        try:
            code = worker.start()
        finally:
            stop.set()
            thread.join(10)
        sys.exit(code)

    def _warn_unserved(self, worker_id: str) -> None:
        """Say which configured workers are not running and which tenants therefore wait (log and
        stderr): starvation by configuration must not be silent."""
        try:
            gaps = unserved_assignments(get_queue(worker_id), also_alive=[worker_id])
        except FairQueueError as exc:  # Redis down at start: the worker reports it again itself
            logger.warning("worker %s: could not check which workers are running (%s)", worker_id, exc)
            return
        config = get_queue(worker_id).config
        for gap in gaps:
            start = f"start it: python manage.py runfairworker {gap.worker_id}"
            if gap.unserved and config.queue.orphan_takeover:
                after = orphan_after(config, config.get_worker(gap.worker_id))
                message = (f"worker {gap.worker_id} is {gap.status}: tenants matching {', '.join(gap.unserved)} "
                           f"(its assigned_users) no running worker may steal are served only by orphan takeover "
                           f"(by live workers, when they have no work of their own, once it has had no heartbeat "
                           f"for {after:g} s); for their fair share {start}")
            elif gap.unserved:
                message = (f"worker {gap.worker_id} is {gap.status}: tenants matching {', '.join(gap.unserved)} "
                           f"(its assigned_users) are served by no running worker and no running worker may steal "
                           f"them, so they wait until you {start}")
            elif gap.steal_only:
                message = (f"worker {gap.worker_id} is {gap.status}: tenants matching {', '.join(gap.steal_only)} "
                           f"are served only by stealing ({', '.join(gap.stealers)}, when it has no work of its "
                           f"own); for their fair share {start}")
            else:
                continue
            logger.warning("worker %s: %s", worker_id, message)
            if not self._logs_to_stderr:
                self.stderr.write(f"WARNING: {message}")

    def _handler(self, path: str | None) -> TaskHandler:
        if not path:
            return TaskHandler()
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise CommandError(f"handler {path!r} does not import: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, TaskHandler)):
            raise CommandError(f"handler {path!r} is not a TaskHandler subclass")
        return cls()

    _logs_to_stderr = False

    def _setup_logging(self, level: str) -> None:
        root = logging.getLogger("fairque_django")
        root.setLevel(level)
        if not root.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
            self._logs_to_stderr = True  # the warnings below reach stderr through the log already
