"""``manage.py fairque_dlq``: list, inspect, requeue, delete and purge dead tasks.

::

    fairque_dlq list [--user U] [--limit N] [--json]
    fairque_dlq show TASK_ID [--json]
    fairque_dlq requeue (TASK_ID ... | --all)
    fairque_dlq delete (TASK_ID ... | --all) [--yes]
    fairque_dlq purge [--yes]

Deleting everything asks for confirmation on a terminal; without a terminal (cron, CI, a pipe)
it refuses unless ``--yes``/``--noinput`` is given, and never waits on standard input.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.conf import get_queue
from fairque_django.core.errors import FairQueueError
from fairque_django.core.models import DLQEntry
from fairque_django.core.observe.fanout import shard_index_of
from fairque_django.core.sharded import AnyQueue

from .fairque_stats import format_table

PAGE = 500


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def entry_data(entry: DLQEntry, *, full: bool = False) -> dict[str, Any]:
    """A dead task as JSON-ready data (stable keys); ``full`` adds arguments and the traceback."""
    task = entry.task
    data: dict[str, Any] = {
        "task_id": entry.task_id,
        "user_id": entry.user_id,
        "func": task.func_name,
        "error_type": entry.error_type,
        "error": entry.error,
        "failure_type": entry.failure_type,
        **entry.counts(),  # attempts, failures, retries, max_retries: one vocabulary (DLQEntry)
        "dead_at": entry.dead_at,
    }
    if full:
        data.update({
            "priority": int(task.priority),
            "args": task.args,
            "kwargs": task.kwargs,
            "payload": task.payload,
            "metadata": task.metadata,
            "created_at": task.created_at or None,
            "execute_after": task.execute_after,
            "traceback": entry.traceback,
            "raw_body": entry.raw_body,
        })
    return data


class Command(BaseCommand):
    help = "Inspect and manage the dead-letter queue: list, show, requeue, delete, purge."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

        p = sub.add_parser("list", help="list dead tasks, newest first")
        p.add_argument("--user", help="only the dead tasks of this user id")
        p.add_argument("--limit", type=int, default=50, metavar="N", help="show at most N (default 50)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

        p = sub.add_parser("show", help="show one dead task: error, traceback, arguments, counts, times")
        p.add_argument("task_id")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

        p = sub.add_parser("requeue", help="put dead tasks back in their user's queue (failures and retries reset)")
        p.add_argument("task_ids", nargs="*", metavar="TASK_ID")
        p.add_argument("--all", action="store_true", help="requeue every dead task")

        p = sub.add_parser("delete", help="delete dead tasks for good")
        p.add_argument("task_ids", nargs="*", metavar="TASK_ID")
        p.add_argument("--all", action="store_true", help="delete every dead task (asks first; see purge)")
        self._yes_option(p)

        p = sub.add_parser("purge", help="delete every dead task (asks first)")
        self._yes_option(p)

    @staticmethod
    def _yes_option(parser: CommandParser) -> None:
        parser.add_argument("--yes", "-y", "--noinput", "--no-input", action="store_true", dest="yes",
                            help="do not ask for confirmation")

    def handle(self, *args: Any, **options: Any) -> None:
        action: str = options["action"]
        self.queue = get_queue()
        try:
            getattr(self, f"do_{action}")(options)
        except FairQueueError as exc:
            raise CommandError(f"{action} failed: {exc}") from exc

    # --- list / show -------------------------------------------------------------------------
    def do_list(self, options: dict[str, Any]) -> None:
        limit: int = options["limit"]
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        user: str | None = options["user"]
        total = self.queue.dlq_size()
        entries = self._entries(limit, user)
        if options["json"]:
            self.stdout.write(json.dumps({"dlq_size": total, "user": user,
                                          "tasks": [entry_data(e) for e in entries]}, indent=2))
            return
        if total == 0:
            self.stdout.write("The dead-letter queue is empty.")
            return
        scope = f" of user {user}" if user else ""
        if not entries:
            self.stdout.write(f"No dead tasks{scope} ({total:,} in the dead-letter queue).")
            return
        self.stdout.write(f"{len(entries):,} dead task(s){scope}, newest first ({total:,} in the dead-letter "
                          "queue):")
        rows = [[e.task_id, e.user_id, e.task.func_name or "(payload task)", e.attempts,
                 e.retries_of, e.failures, when(e.dead_at),
                 one_line(f"{e.error_type}: {e.error}" if e.error_type else e.error, 70)] for e in entries]
        self.stdout.write(format_table(["task id", "user", "function", "attempts", "retries", "failures",
                                        "died", "error"], rows, right=(3, 4, 5)))

    def _entries(self, limit: int, user: str | None) -> list[DLQEntry]:
        if user is None:
            return self.queue.get_dlq(0, limit)
        found: list[DLQEntry] = []
        offset = 0
        queue = self.queue.shard_queues[shard_index_of(self.queue, user)]  # the user's dead tasks are in its shard
        while len(found) < limit:
            page = queue.get_dlq(offset, PAGE)
            found += [e for e in page if e.user_id == user]
            if len(page) < PAGE:
                break
            offset += PAGE
        return found[:limit]

    def do_show(self, options: dict[str, Any]) -> None:
        entry = self._dead(options["task_id"])
        data = entry_data(entry, full=True)
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        task = entry.task
        fields = [
            ("Task", entry.task_id),
            ("User", entry.user_id),
            ("Function", task.func_name or "(payload task)"),
            ("Args", json.dumps(task.args)),
            ("Kwargs", json.dumps(task.kwargs)),
        ]
        if task.payload:
            fields.append(("Payload", json.dumps(task.payload)))
        fields += [
            ("Priority", f"{task.priority.name} ({int(task.priority)})"),
            ("Attempts", str(entry.attempts)),
            ("Retries", entry.retries_text),
            ("Failures", str(entry.failures)),
            ("Failure", entry.failure_type or "-"),
            ("Error", f"{entry.error_type}: {entry.error}" if entry.error_type else entry.error or "-"),
            ("Created", when(task.created_at)),
            ("Died", when(entry.dead_at)),
        ]
        width = max(len(k) for k, _ in fields)
        for key, value in fields:
            self.stdout.write(f"{key.ljust(width)}  {value}")
        if entry.raw_body is not None:
            self.stdout.write(f"\nThe stored task body is corrupt:\n  {entry.raw_body}")
        self.stdout.write("\nTraceback:" if entry.traceback else "\nTraceback: (none recorded)")
        if entry.traceback:
            self.stdout.write("  " + entry.traceback.rstrip().replace("\n", "\n  "))

    # --- requeue / delete / purge --------------------------------------------------------------
    def do_requeue(self, options: dict[str, Any]) -> None:
        if self._ids_or_all(options) is None:
            done = self.queue.requeue_dead(None)
        else:
            done = self.queue.requeue_dead(self._known(options["task_ids"]))
        self.stdout.write(f"Requeued {len(done):,} dead task(s).")
        for task_id in done[:20] if options["task_ids"] else []:
            self.stdout.write(f"  {task_id}")

    def do_delete(self, options: dict[str, Any]) -> None:
        if self._ids_or_all(options) is None:
            self.do_purge(options)
            return
        done = self.queue.delete_dead(self._known(options["task_ids"]))
        self.stdout.write(f"Deleted {len(done):,} dead task(s).")

    def do_purge(self, options: dict[str, Any]) -> None:
        size = self.queue.dlq_size()
        if size == 0:
            self.stdout.write("The dead-letter queue is empty: nothing to delete.")
            return
        if not options["yes"]:
            self._confirm(size, options.get("stdin") or sys.stdin)
        deleted = self.queue.purge_dlq()
        self.stdout.write(f"Deleted {deleted:,} dead task(s).")

    def _confirm(self, size: int, stdin: TextIO) -> None:
        isatty = getattr(stdin, "isatty", None)
        if not (callable(isatty) and isatty()):
            raise CommandError(f"refusing to delete all {size:,} dead task(s) without confirmation: standard "
                               "input is not a terminal; pass --yes (or --noinput) to confirm")
        self.stdout.write(f"Delete all {size:,} dead task(s)? This cannot be undone. Type 'yes' to continue: ",
                          ending="")
        self.stdout.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("yes", "y"):
            raise CommandError("purge cancelled: nothing was deleted")

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _ids_or_all(options: dict[str, Any]) -> list[str] | None:
        ids: list[str] = options["task_ids"]
        if options["all"] and ids:
            raise CommandError("give task ids or --all, not both")
        if not options["all"] and not ids:
            raise CommandError(f"give the ids of the dead tasks to {options['action']}, or --all")
        return None if options["all"] else ids

    def _dead(self, task_id: str) -> DLQEntry:
        entry = self.queue.get_dead(task_id)
        if entry is None:
            raise CommandError(self._not_dead(task_id))
        return entry

    def _known(self, task_ids: list[str]) -> list[str]:
        """The ids, de-duplicated; a CommandError (and nothing done) if any is not a dead task."""
        ids = list(dict.fromkeys(task_ids))
        unknown = [i for i in ids if self.queue.get_dead(i) is None]
        if unknown:
            raise CommandError("; ".join(self._not_dead(i) for i in unknown) + " (nothing was changed)")
        return ids

    def _not_dead(self, task_id: str) -> str:
        return f"{task_id!r} is not in the dead-letter queue" + self._state_hint(self.queue, task_id)

    @staticmethod
    def _state_hint(queue: AnyQueue, task_id: str) -> str:
        state = queue.get_task_state(task_id)
        if state is None:
            return " (no such task: see 'fairque_dlq list')"
        return f" (it is {state.get('st', 'unknown')}, not dead)"
