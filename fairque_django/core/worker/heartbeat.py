"""``Heartbeat``: the one heartbeat of both workers, and ``worker_health``, which reads what it writes.

Every ``heartbeat_interval_seconds`` (at most a third of the lease time) it renews the leases of
the tasks the worker holds (and flags those cancelled meanwhile: ``cancelled()`` inside them),
publishes the worker's health record and its registration in ``{prefix}:workers``, trims old
per-minute throughput counts (once a minute), runs the retention sweep (tenants idle past
``queue.tenant_retention_seconds`` are folded: ``TaskQueue.fold_idle_tenants``) and the periodic
hook when due. When the worker stops it removes the health record and writes the clean-stop
record (the id then reads "down", not "never seen"). It runs in a thread of its own for the
asyncio worker too: leases stay renewed while a task blocks the event loop, as they do while a
thread worker's task blocks in C code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..config import FairQueueConfig, WorkerConfig
from ..errors import FairQueueError
from ..models import Task, dumps
from ..observe import mark_stopped, orphan_after, parse_record, trim_throughput
from ..queue import redis_errors
from ..sharded import AnyQueue
from .leases import LeaseBook

logger = logging.getLogger("fairque_django.worker")

# The retention sweep: tenants per script call (Redis serves others between calls) and the time one
# heartbeat gives it at most (the leases are renewed before; the next beat goes on when more are due).
SWEEP_LIMIT = 100
SWEEP_BUDGET_SECONDS = 0.5


class HealthSource(Protocol):
    """What a health record tells of a worker."""

    config: FairQueueConfig
    settings: WorkerConfig
    started_at: float
    concurrency: int

    @property
    def processed(self) -> int: ...

    @property
    def failed(self) -> int: ...


class Heartbeat:
    """Keeps one worker's leases and health record fresh from a thread of its own."""

    def __init__(self, worker: HealthSource, queue: AnyQueue, book: LeaseBook, *, kind: str,
                 periodic: Callable[[], None] | None = None, periodic_interval: float = 30.0) -> None:
        self.worker = worker
        self.worker_id = worker.settings.id
        self.queue = queue
        self.book = book
        self.kind = kind  # "threads" or "async": which worker writes the record
        self.periodic = periodic  # e.g. the alert rules, at most every periodic_interval s
        self.periodic_interval = periodic_interval
        self._next_periodic = 0.0
        self._next_trim = 0.0
        self._next_fold = 0.0
        self._mark_cursor: int | None = 0  # where mark_idle_tenants goes on (None: done since the start)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._done.clear()
        self._thread = threading.Thread(target=self._loop, name=f"{self.worker_id}-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the beats (the last one may be under way), then record a clean stop."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush_metrics()
        with contextlib.suppress(FairQueueError), redis_errors("worker shutdown"):
            home = self.queue.home_queue.keys
            self.queue.client.delete(home.worker(self.worker_id))
            mark_stopped(self.queue.client, home, self.worker_id)

    def _loop(self) -> None:
        config = self.worker.config
        interval = min(self.worker.settings.heartbeat_interval_seconds, config.queue.lease_timeout_seconds / 3)
        while True:
            self.beat()
            self.flush_metrics()
            try:
                self._housekeeping()
            except Exception:  # the heartbeat must never die (it keeps the leases): log, go on
                logger.exception("worker %s: housekeeping (trim, retention sweep) failed", self.worker_id)
            if self._done.wait(interval):  # keeps beating (leases) while a shutdown waits for tasks
                return

    def beat(self) -> None:
        """Renew the leases the worker holds and publish its health record; never raises."""
        try:
            leased, sent_at = self.book.leased(), time.monotonic()
            lost, cancelling = self.queue.extend_leases(leased) if leased else ([], [])
            self.book.renewed(sent_at)
            self.book.doubt(lost)  # a lost lease of a task not started: the slot checks it before running it
            for task_id in self.book.holding(lost):  # not those acknowledged or handed back meanwhile
                logger.warning("worker %s: lease of task %s was lost while it ran", self.worker_id, task_id)
            for task in self.book.request_cancel(cancelling):  # cancelled(): True inside it from now on
                logger.info("worker %s: task %s for %s was cancelled; it is told so", self.worker_id, task.task_id,
                            task.user_id)
            self.publish(self.book.current())
        except Exception as exc:  # the heartbeat must never die: it keeps the leases
            logger.warning("worker %s: heartbeat failed (%s)", self.worker_id, exc)

    def flush_metrics(self) -> None:
        """Write the metrics the worker's acks gathered since the last tick; never raises (a
        failed flush keeps them for the next)."""
        try:
            self.queue.flush_metrics()
        except Exception as exc:
            logger.warning("worker %s: metrics flush failed (%s)", self.worker_id, exc)

    def _housekeeping(self) -> None:
        """Trim old per-minute metrics (once a minute), run the retention sweep and the periodic hook
        when due."""
        now = time.monotonic()
        if now >= self._next_trim:
            self._next_trim = now + 60.0
            for shard in self.queue.shard_queues:  # each keyspace shard counts its completions
                with contextlib.suppress(FairQueueError):
                    trim_throughput(shard.client, shard.keys)
        if now >= self._next_fold:
            self._next_fold = now + self._fold_every()
            self._fold_idle()
        if self.periodic is not None and now >= self._next_periodic:
            self._next_periodic = now + self.periodic_interval
            try:
                self.periodic()
            except FairQueueError as exc:  # e.g. Redis unreachable: the heartbeat already says so
                logger.warning("worker %s: periodic hook failed: %s", self.worker_id, exc)
            except Exception:
                logger.exception("worker %s: periodic hook raised", self.worker_id)

    def _fold_every(self) -> float:
        """How often the retention sweep runs: a tenth of the window, between 1 s and a minute."""
        return min(60.0, max(1.0, self.worker.config.queue.tenant_retention_seconds / 10))

    def _fold_idle(self) -> None:
        """The retention sweep (``TaskQueue.fold_idle_tenants``): every worker runs it, which is
        safe (each call is atomic) and cheap when no tenant is due (one script call). It sweeps for
        at most ``SWEEP_BUDGET_SECONDS``; when more are due, the next beat goes on."""
        if self.worker.config.queue.tenant_retention_seconds <= 0:
            return
        deadline = time.monotonic() + SWEEP_BUDGET_SECONDS
        folded = kept = 0
        try:
            while True:
                result = self.queue.fold_idle_tenants(limit=SWEEP_LIMIT, max_calls=10)
                folded, kept = folded + result.folded, kept + result.kept
                if not result.more or time.monotonic() >= deadline:
                    break
            while self._mark_cursor is not None and time.monotonic() < deadline:
                # once per start, a page at a time, with the time the folds left: tenants idle
                # since before the sweep existed
                _, cursor = self.queue.mark_idle_tenants(cursor=self._mark_cursor, pages=1)
                self._mark_cursor = cursor or None
        except FairQueueError as exc:  # e.g. Redis unreachable: the heartbeat already says so
            logger.warning("worker %s: retention sweep failed: %s", self.worker_id, exc)
            return
        if folded or kept:
            logger.debug("worker %s: retention sweep folded %d idle tenant(s), kept %d", self.worker_id, folded, kept)
        if result.more or self._mark_cursor is not None:
            self._next_fold = 0.0

    def publish(self, tasks: list[Task]) -> None:
        """Write the health record (``tasks``: what runs or waits to run) and the registration."""
        worker, settings = self.worker, self.worker.settings
        ttl = max(3 * settings.heartbeat_interval_seconds, worker.config.queue.lease_timeout_seconds)
        now = time.time()
        record = {
            "id": self.worker_id, "kind": self.kind, "host": socket.gethostname(), "pid": os.getpid(),
            "started": worker.started_at, "last_seen": now, "processed": worker.processed,
            "failed": worker.failed, "concurrency": worker.concurrency,
            "current": dumps([{"task_id": t.task_id, "user": t.user_id, "func": t.func_name} for t in tasks]),
            "assigned": dumps(list(settings.assigned_users)[:1000]),
            "steals": dumps(list(settings.steal_targets)[:1000]),
        }
        home = self.queue.home_queue.keys
        key = home.worker(self.worker_id)
        with redis_errors("heartbeat"):
            pipe = self.queue.client.pipeline(transaction=False)
            pipe.hset(key, mapping=record)  # type: ignore[arg-type]
            pipe.pexpire(key, int(ttl * 1000))
            pipe.zadd(home.workers, {self.worker_id: now})
            # kept at a clean stop too: the partition is orphaned once it expires (orphan takeover)
            pipe.set(home.beat(self.worker_id), repr(now),
                     px=max(1, int(orphan_after(worker.config, settings) * 1000)))
            pipe.execute()


def worker_health(queue: AnyQueue, worker_id: str) -> dict[str, Any] | None:
    """The health record a live worker publishes, or None when it is not alive."""
    with redis_errors("worker_health"):
        raw = queue.client.hgetall(queue.home_queue.keys.worker(worker_id))
    return parse_record(raw, time.time())
