"""``Worker``: serves one configured worker id with up to ``max_concurrent_tasks`` slot threads.

Each slot (:mod:`.slot`) pops fairly (own users first, then steal targets), runs the task through
the shared :class:`~.runner.TaskRunner`, and acknowledges it with its next pop. Idle slots block
on the wake-up lists that pushes fill (no busy polling); ``poll_interval_seconds`` is only the
fallback. The :class:`~.heartbeat.Heartbeat` thread renews the leases of the tasks the worker holds
and publishes its health record. SIGTERM/SIGINT stop it gracefully; a second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

from ..config import FairQueueConfig
from ..connection import is_cluster
from ..errors import FairQueueError
from ..handler import TaskHandler
from ..models import Task
from ..registry import import_task_modules
from ..schedule import Schedule
from ..scheduler import Scheduler
from ..scripts.buffered import MetricsBuffer
from ..sharded import AnyQueue, open_queue
from .heartbeat import Heartbeat
from .leases import LeaseBook
from .prefetch import Watchdog
from .runner import RunnerCounts, TaskRunner
from .slot import PREFETCH_BATCH_SECONDS, PREFETCH_HOLD_SECONDS, Slot, SlotContext, Turns

logger = logging.getLogger("fairque_django.worker")


# Connections a prefetching worker needs besides one per slot: the shared held one, the heartbeat's,
# the scheduler's and a hand-back's.
PREFETCH_SPARE_CONNECTIONS = 4

class Worker(RunnerCounts):
    """Runs the tasks of one worker id from the configuration until stopped."""

    def __init__(self, config: FairQueueConfig, handler: TaskHandler | None = None, *,
                 worker_id: str | None = None, queue: AnyQueue | None = None,
                 concurrency: int | None = None, burst: bool = False, max_tasks: int | None = None,
                 task_modules: Iterable[str] = (), around_task: Callable[[], None] | None = None,
                 install_signal_handlers: bool = True, periodic: Callable[[], None] | None = None,
                 periodic_interval: float = 30.0, prefetch: bool = True,
                 prefetch_hold_seconds: float = PREFETCH_HOLD_SECONDS,
                 prefetch_batch_seconds: float = PREFETCH_BATCH_SECONDS, schedules: Iterable[Schedule] = (),
                 to_user: Callable[[Any], str] | None = None) -> None:
        self.config = config
        self.settings = config.get_worker(worker_id)
        self.worker_id = self.settings.id
        self.handler = handler if handler is not None else TaskHandler()
        self.queue = queue if queue is not None else open_queue(config, worker_id=self.worker_id)
        if config.queue.metrics and self.queue.metrics_buffer is None:
            # the acks leave the histograms to the process: written once per tick (heartbeat, stop)
            self.queue.metrics_buffer = MetricsBuffer()
        self.concurrency = concurrency or self.settings.max_concurrent_tasks
        self.burst = burst
        self.max_tasks = max_tasks
        self.task_modules = tuple(task_modules)
        self.install_signal_handlers = install_signal_handlers
        # prefetch: a slot whose tasks are short leases its next task (tiny ones: as many as run in
        # prefetch_batch_seconds) while the current one runs (see .slot); not used in burst and
        # max-tasks modes, which lease short tasks in batches
        self.prefetch = prefetch and not burst and max_tasks is None and self._pool_fits_prefetch()
        self.prefetch_hold_seconds = prefetch_hold_seconds
        self.prefetch_batch_seconds = prefetch_batch_seconds
        self.started_at = 0.0
        self._book = LeaseBook(config.queue.lease_timeout_seconds)
        self.runner = TaskRunner(config, self.worker_id, self.handler, self.queue, self._book,
                                 around_task=around_task)
        self._heartbeat = Heartbeat(self, self.queue, self._book, kind="threads", periodic=periodic,
                                    periodic_interval=periodic_interval)
        # periodic schedules: fired by a thread of this worker (any worker may fire a tick, once)
        self.scheduler = Scheduler(self.queue, schedules, worker_id=self.worker_id, to_user=to_user)
        self._stop = threading.Event()
        self._signals = 0
        self._threads: list[threading.Thread] = []

    def _pool_fits_prefetch(self) -> bool:
        """Whether the client's pool has a connection for each prefetching slot (each keeps one)
        besides those the heartbeat, the scheduler and the hand-backs use; a bounded pool
        (``redis.max_connections``) that does not turns prefetch off, with a warning."""
        if is_cluster(self.queue.client):  # (each master's pool: unbounded unless configured)
            return True
        bound = getattr(getattr(self.queue.client, "connection_pool", None), "max_connections", None)
        if not isinstance(bound, int) or bound >= self.concurrency + PREFETCH_SPARE_CONNECTIONS:
            return True
        logger.warning("worker %s: redis.max_connections is %d, below concurrency %d + %d: prefetch is off "
                       "(each prefetching slot keeps a connection); raise max_connections to prefetch",
                       self.worker_id, bound, self.concurrency, PREFETCH_SPARE_CONNECTIONS)
        return False

    @property
    def running_tasks(self) -> list[Task]:
        return self._book.running()

    # --- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> Worker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def leasing(self) -> str:
        """How the slots lease tasks, in words (the start-up log line says it)."""
        if self.prefetch and self.prefetch_batch_seconds > 0:
            return (f"prefetch (tiny tasks in batches: as many as a slot runs in "
                    f"{self.prefetch_batch_seconds * 1000:g} ms x {self.concurrency} slots)")
        if self.prefetch:
            return "prefetch (one task at a time)"
        if self.max_tasks is not None:
            return "one task at a time (max tasks)"
        if self.burst:
            return (f"batches of short tasks, no prefetch (burst: as many as a slot runs in "
                    f"{self.prefetch_hold_seconds * 1000:g} ms)")
        return (f"batches of short tasks, no prefetch (as many as a slot runs in "
                f"{self.prefetch_batch_seconds * 1000:g} ms x {self.concurrency} slots)")

    def start(self) -> int:
        """Serve tasks until stopped (signal, :meth:`stop`, burst end or max tasks). Returns 0."""
        import_task_modules(self.task_modules)
        self.started_at = time.time()
        self._stop.clear()
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        logger.info("worker %s starting: %d slots, assigned %s, steals %s; %s", self.worker_id,
                    self.concurrency, list(self.settings.assigned_users), list(self.settings.steal_targets),
                    self.leasing())
        self._heartbeat.start()
        self.scheduler.start()
        watchdog = Watchdog(f"{self.worker_id}-watchdog", self.prefetch_hold_seconds) if self.prefetch else None
        ctx = SlotContext(self.worker_id, self.queue, self.runner, self._book, Turns(self.max_tasks), self._stop,
                          burst=self.burst, batch=not self.prefetch and self.max_tasks is None,
                          watchdog=watchdog, hold_seconds=self.prefetch_hold_seconds,
                          # (a newcomer waits for the first of the slots to finish its batch)
                          batch_seconds=self.prefetch_batch_seconds * self.concurrency,
                          max_wait=self._max_wait(), grace=self.settings.graceful_shutdown_timeout,
                          whole_batches=len(self.queue.shard_queues) > 1)
        slots = [Slot(ctx) for _ in range(self.concurrency)]
        if watchdog is not None:
            watchdog.start(slots)
        self._threads = [threading.Thread(target=slot.run, name=f"{self.worker_id}-slot-{i}", daemon=True)
                         for i, slot in enumerate(slots)]
        for t in self._threads:
            t.start()
        while not self._stop.is_set():
            self._stop.wait(0.2)
        self.scheduler.stop()
        self._shutdown()
        if watchdog is not None:
            watchdog.stop()
        self._heartbeat.stop()
        logger.info("worker %s stopped: %d processed, %d failed", self.worker_id, self.processed, self.failed)
        return 0

    def stop(self) -> None:
        """Ask the worker to stop taking tasks and finish gracefully."""
        self._stop.set()

    def publish_health(self, tasks: list[Task]) -> None:
        """Write this worker's health record now (the heartbeat does it every interval)."""
        self._heartbeat.publish(tasks)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("worker %s: second signal, exiting now; leases will recover running tasks",
                           self.worker_id)
            os._exit(1)
        logger.info("worker %s: %s received, finishing running tasks (up to %.0fs)", self.worker_id,
                    signal.Signals(signum).name, self.settings.graceful_shutdown_timeout)
        self._stop.set()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.graceful_shutdown_timeout
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        # idle slots may still sit in one blocking wait: let them leave before handing tasks back,
        # or they would take the handed-back tasks again
        busy = self._book.busy_slots()
        idle_deadline = time.monotonic() + self._max_wait() + 0.5
        for t in self._threads:
            if t not in busy:
                t.join(timeout=max(0.0, idle_deadline - time.monotonic()))
        unfinished = self._book.take_unfinished()  # no longer ours: the heartbeat stops renewing them
        if not unfinished:
            return
        try:
            handed = self.queue.release(unfinished)
            logger.warning("worker %s: handed %d unfinished task(s) back to their queues", self.worker_id, handed)
        except FairQueueError as exc:
            logger.error("worker %s: could not hand tasks back (%s); their leases will expire", self.worker_id, exc)

    def _max_wait(self) -> float:
        """Longest blocking wait: the poll interval, kept below the socket timeout."""
        return min(self.settings.poll_interval_seconds, max(0.05, self.config.redis.socket_timeout - 0.5))
