"""``LeaseBook``: the tasks a worker holds leases on, by stage.

*held*: leased, not started (a batch's rest, a prefetched task); *running*; *finished*: succeeded,
its acknowledgement not through yet (it stays leased, renewed by the heartbeat, until the ack
goes through, e.g. after a Redis outage); *acking*: finished, its acknowledgement sent with a
prefetch whose reply is not read yet (not renewed: an ack that went through ended the lease; back
to *finished* should the round trip fail). Shared by the slots, the runner and the heartbeat of
one worker; every method is thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..models import Task

_TIMEOUT_LOCK = threading.Lock()


@dataclass(slots=True)
class Running:
    """A running task: since when, and the thread that runs its code (a timeout interrupts it)."""

    task: Task
    started: float
    slot: threading.Thread  # the thread that serves it (a slot thread, or one the loop lent)
    thread: threading.Thread  # runs the task's code: the slot itself, or a timed runner thread
    timed_out: bool = False

    def mark_timed_out(self) -> bool:
        """Mark the task timed out; False when it already was (record a timeout once)."""
        with _TIMEOUT_LOCK:  # one for all entries: timeouts are rare, a lock per task is not free
            first, self.timed_out = not self.timed_out, True
            return first


class LeaseBook:
    """Which leased tasks a worker holds, and at which stage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Task] = {}
        self._running: dict[str, Running] = {}
        self._finished: dict[str, Task] = {}
        self._acking: dict[str, Task] = {}

    def hold(self, tasks: Iterable[Task]) -> None:
        with self._lock:
            for task in tasks:
                self._held[task.task_id] = task

    def start(self, task: Task) -> Running:
        """A held (or just popped) task starts running in this thread."""
        me = threading.current_thread()
        entry = Running(task, time.monotonic(), me, me)
        with self._lock:
            self._held.pop(task.task_id, None)
            self._running[task.task_id] = entry
        return entry

    def finish(self, task: Task) -> None:
        """A running task succeeded: it waits for its acknowledgement."""
        with self._lock:
            self._running.pop(task.task_id, None)
            self._finished[task.task_id] = task

    def acking(self, tasks: Iterable[Task]) -> None:
        """Finished tasks whose acknowledgement is on its way (see the module docstring)."""
        with self._lock:
            for task in tasks:
                if self._finished.pop(task.task_id, None) is not None:
                    self._acking[task.task_id] = task

    def unacked(self, tasks: Iterable[Task]) -> None:
        """Their acknowledgement did not go through: renewed again until it does."""
        with self._lock:
            for task in tasks:
                if self._acking.pop(task.task_id, None) is not None:
                    self._finished[task.task_id] = task

    def forget(self, tasks: Iterable[Task]) -> None:
        """Tasks no longer leased here (acknowledged, failed, handed back or given up)."""
        with self._lock:
            for task in tasks:
                self._held.pop(task.task_id, None)
                self._running.pop(task.task_id, None)
                self._finished.pop(task.task_id, None)
                self._acking.pop(task.task_id, None)

    def running(self) -> list[Task]:
        with self._lock:
            return [r.task for r in self._running.values()]

    def current(self) -> list[Task]:
        """Running and held tasks (what the health record lists)."""
        with self._lock:
            return self._current_locked()

    def leased(self) -> list[Task]:
        """Every task whose lease the heartbeat renews."""
        with self._lock:
            return self._current_locked() + list(self._finished.values())

    def _current_locked(self) -> list[Task]:
        return [r.task for r in self._running.values()] + list(self._held.values())

    def request_cancel(self, task_ids: Iterable[str]) -> list[Task]:
        """Flag the tasks of ``task_ids`` still leased here as cancelled (``cancelled()`` inside them);
        the tasks newly flagged."""
        flagged = []
        with self._lock:
            for task_id in task_ids:
                entry = self._running.get(task_id)
                task = entry.task if entry is not None else self._held.get(task_id) or self._finished.get(task_id)
                if task is not None and not task.cancel_requested:
                    task.cancel_requested = True
                    flagged.append(task)
        return flagged

    def holding(self, task_ids: Iterable[str]) -> list[str]:
        """Those of ``task_ids`` still leased here."""
        with self._lock:
            return [i for i in task_ids if i in self._held or i in self._running or i in self._finished]

    def has_held(self) -> bool:
        with self._lock:
            return bool(self._held)

    def busy_slots(self) -> set[threading.Thread]:
        with self._lock:
            return {r.slot for r in self._running.values()}

    def take_unfinished(self) -> list[Task]:
        """At shutdown: the running and held tasks, no longer ours from now on (to hand back)."""
        with self._lock:
            tasks = self._current_locked()
            self._running.clear()
            self._held.clear()
        return tasks
