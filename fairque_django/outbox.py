"""The transactional outbox: ``FAIRQUE["ENQUEUE_MODE"] = "outbox"``.

:func:`write` stores each enqueued task as an :class:`~fairque_django.models.OutboxEntry` row in
the caller's database transaction, so the task exists exactly when the transaction commits. The
:class:`Relay` pushes rows to Redis and deletes them; it runs inside ``runfairworker`` (a thread)
and as ``manage.py fairque_relay``, and the enqueuing process itself relays its own rows right
after the commit (``OUTBOX_PUSH_ON_COMMIT``). A push is idempotent by task id
(``TaskQueue.push_batch(idempotent=True)``: Redis remembers the id for
``queue.idempotency_ttl_seconds``), so a relay that pushed a row and died before deleting it, or
two relays that both pushed it, cannot make the task run twice.

A batch is selected with ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it
(PostgreSQL, MySQL 8, Oracle): concurrent relays take disjoint batches. On SQLite the relays take
turns on the database lock and the idempotent push keeps a row pushed twice from running twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, connections, router, transaction
from django.utils import timezone

from .conf import get_queue, get_setting
from .core.errors import FairQueueError
from .core.models import Task
from .core.sharded import AnyQueue
from .models import OutboxEntry

__all__ = ["Relay", "RelayResult", "database_for_outbox", "write"]

logger = logging.getLogger("fairque_django.outbox")

MAX_ROW_BACKOFF_SECONDS = 3600.0
MAX_RELAY_BACKOFF_SECONDS = 30.0


def database_for_outbox(using: str | None = None) -> str:
    """The database alias of the outbox rows: ``using``, else the router's choice for writing them."""
    return using if using is not None else router.db_for_write(OutboxEntry)


def write(queue: AnyQueue, tasks: Sequence[tuple[Task, bytes]], using: str | None = None) -> None:
    """Store checked tasks (with their encoded bodies) as outbox rows in the current transaction of
    ``using``; once it commits, push them at once when ``OUTBOX_PUSH_ON_COMMIT`` (a failure there is
    logged: the relay pushes the rows later). A task id already in the outbox is ignored."""
    alias = database_for_outbox(using)
    rows = [OutboxEntry(task_id=task.task_id, user_id=task.user_id or "", body=body.decode("utf-8"))
            for task, body in tasks]
    OutboxEntry.objects.using(alias).bulk_create(rows, ignore_conflicts=True)
    if get_setting("OUTBOX_PUSH_ON_COMMIT"):
        ids = [task.task_id for task, _ in tasks]
        transaction.on_commit(lambda: Relay(queue, using=alias).push_now(ids), using=alias)


@dataclass(frozen=True)
class RelayResult:
    """What one relay batch did: rows ``pushed`` (stored or already known to Redis: deleted) and rows
    ``set_aside`` (their task cannot be pushed, e.g. its user is no longer served: kept, retried later)."""

    pushed: int = 0
    set_aside: int = 0

    @property
    def rows(self) -> int:
        return self.pushed + self.set_aside


class Relay:
    """Pushes outbox rows of database ``using`` to ``queue`` (default: the project's queue) and
    deletes them, ``batch_size`` rows per database transaction."""

    def __init__(self, queue: AnyQueue | None = None, *, using: str | None = None, batch_size: int | None = None,
                 interval: float | None = None) -> None:
        self.queue = queue if queue is not None else get_queue()
        self.using = database_for_outbox(using)
        self.batch_size = batch_size if batch_size is not None else int(get_setting("OUTBOX_BATCH_SIZE"))
        self.interval = interval if interval is not None else float(get_setting("OUTBOX_RELAY_INTERVAL"))

    # --- one batch --------------------------------------------------------------------------
    def relay_batch(self, task_ids: Sequence[str] | None = None) -> RelayResult:
        """Push the oldest due rows (or the rows of ``task_ids``), delete them, and commit. Raises
        when Redis cannot be reached: the transaction rolls back and every row stays."""
        now = timezone.now()
        with transaction.atomic(using=self.using):
            rows = OutboxEntry.objects.using(self.using).order_by("id")
            rows = rows.filter(task_id__in=task_ids) if task_ids is not None else rows.filter(available_at__lte=now)
            if connections[self.using].features.has_select_for_update_skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            batch = list(rows[: self.batch_size])
            if not batch:
                return RelayResult()
            tasks: list[Task] = []
            good: list[int] = []
            bad: list[tuple[OutboxEntry, Exception]] = []
            for row in batch:
                try:
                    task = Task.from_json(row.body, row.task_id, row.user_id or None)
                    self.queue.proto.prepare(task, task.user_id or row.user_id)
                except (FairQueueError, ValueError, TypeError) as exc:
                    bad.append((row, exc))
                else:
                    tasks.append(task)
                    good.append(row.pk)
            if tasks:
                self.push(tasks)
                self.delete(good)
            for row, problem in bad:
                self._set_aside(row, problem, now)
        return RelayResult(pushed=len(good), set_aside=len(bad))

    def push(self, tasks: list[Task]) -> None:
        """Push ``tasks`` idempotently (a task Redis already knows is a duplicate, done as well)."""
        self.queue.push_batch(tasks, idempotent=True)

    def delete(self, pks: list[int]) -> None:
        """Delete the rows just pushed (in the batch's transaction)."""
        OutboxEntry.objects.using(self.using).filter(pk__in=pks).delete()

    def _set_aside(self, row: OutboxEntry, exc: Exception, now: datetime) -> None:
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        row.available_at = now + timedelta(seconds=min(2.0 ** row.attempts, MAX_ROW_BACKOFF_SECONDS))
        row.save(using=self.using, update_fields=["attempts", "last_error", "available_at"])
        logger.error("outbox: task %s of user %s cannot be pushed (attempt %d, retried at %s): %s",
                     row.task_id, row.user_id, row.attempts, row.available_at, row.last_error)

    # --- loops ------------------------------------------------------------------------------
    def push_now(self, task_ids: Sequence[str]) -> None:
        """Relay the rows of ``task_ids`` right after their transaction committed; never raises
        (the rows it could not push stay for the relay)."""
        try:
            for start in range(0, len(task_ids), self.batch_size):
                self.relay_batch(task_ids[start:start + self.batch_size])
        except Exception as exc:  # the commit happened: the relay pushes the rows later
            logger.warning("outbox: %d task(s) committed but not pushed yet, the relay will push them: %s",
                           len(task_ids), exc)

    def drain(self) -> RelayResult:
        """Relay batches until no due row is left; raises when Redis cannot be reached."""
        pushed = set_aside = 0
        while True:
            result = self.relay_batch()
            pushed += result.pushed
            set_aside += result.set_aside
            if result.rows < self.batch_size:
                return RelayResult(pushed, set_aside)

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set: at once while there are rows, every ``interval`` seconds when
        the outbox is empty, backing off (up to 30 s) while Redis or the database fails."""
        backoff = 0.0
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    result = self.drain()
                except Exception as exc:  # Redis or the database is down: retry later
                    backoff = min(max(backoff * 2, self.interval), MAX_RELAY_BACKOFF_SECONDS)
                    logger.warning("outbox relay: %s; retrying in %.1f s", exc, backoff)
                    stop.wait(backoff)
                    continue
                if backoff:
                    logger.info("outbox relay: pushing again")
                backoff = 0.0
                if result.pushed:
                    logger.debug("outbox relay: pushed %d task(s)", result.pushed)
                stop.wait(self.interval)
        finally:
            connections.close_all()

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Run :meth:`run` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="fairque-outbox-relay", daemon=True)
        thread.start()
        return thread, stop
