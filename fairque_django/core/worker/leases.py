"""``LeaseBook``: the tasks a worker holds leases on, by stage.

*held*: leased, not started (a batch's rest, a prefetched task); *running*; *finished*: succeeded,
its acknowledgement not through yet (it stays leased, renewed by the heartbeat, until the ack
goes through, e.g. after a Redis outage); *acking*: finished, its acknowledgement sent with a
prefetch whose reply is not read yet (not renewed: an ack that went through ended the lease; back
to *finished* should the round trip fail). Shared by the slots, the runner and the heartbeat of
one worker; every method is thread-safe.

A held task may be *doubtful*: its hand-back failed (Redis may have taken it back all the same, the
reply lost), the heartbeat found its lease lost, or its lease may have run out unrenewed (held
longer than 80 % of the lease since it was leased or last renewed: the process was stopped, the
heartbeat could not reach Redis). A slot runs a doubtful task only once Redis says its lease is
still this worker's (``Slot._confirmed``): another worker may be running it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..models import Task

_TIMEOUT_LOCK = threading.Lock()

# A held task is doubtful once this share of its lease has passed unrenewed (the heartbeat renews
# every lease at least three times a lease: only a stopped process or an unreachable Redis gets here).
LEASE_DOUBT = 0.8


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

    def __init__(self, lease_seconds: float | None = None) -> None:
        self._lock = threading.Lock()
        # (a held task is doubtful once this long has passed since it was leased or renewed)
        self._lapse = None if lease_seconds is None else LEASE_DOUBT * lease_seconds
        self._renewed = 0.0  # when the heartbeat's last renewal of every lease was sent (monotonic)
        self._held_at: dict[str, float] = {}
        self._held: dict[str, Task] = {}
        self._running: dict[str, Running] = {}
        self._finished: dict[str, Task] = {}
        self._acking: dict[str, Task] = {}
        self._doubtful: set[str] = set()

    def hold(self, tasks: Iterable[Task], *, doubtful: bool = False) -> None:
        """Leased tasks not started yet; ``doubtful``: see the module docstring."""
        now = time.monotonic()
        with self._lock:
            for task in tasks:
                self._held[task.task_id] = task
                self._held_at[task.task_id] = now
                if doubtful:
                    self._doubtful.add(task.task_id)

    def doubt(self, task_ids: Iterable[str]) -> None:
        """Those of ``task_ids`` held and not started become doubtful (their leases were found lost)."""
        with self._lock:
            self._doubtful.update(i for i in task_ids if i in self._held)

    def renewed(self, sent_at: float) -> None:
        """The heartbeat renewed every lease held at ``sent_at`` (monotonic: when it sent the renewal)."""
        self._renewed = max(self._renewed, sent_at)

    def is_doubtful(self, task: Task) -> bool:
        """Whether a held task is doubtful (see the module docstring): checked before it starts."""
        # (read without the lock: lookups; the slot that asks is the one that holds the task)
        if task.task_id in self._doubtful:
            return True
        if self._lapse is None:
            return False
        since = max(self._renewed, self._held_at.get(task.task_id, self._renewed))
        return time.monotonic() - since > self._lapse

    def confirm(self, task: Task) -> None:
        """Redis says a doubtful task's lease is still this worker's (and renewed it)."""
        with self._lock:
            self._doubtful.discard(task.task_id)
            if task.task_id in self._held:
                self._held_at[task.task_id] = time.monotonic()

    def start(self, task: Task) -> Running:
        """A held (or just popped) task starts running in this thread."""
        me = threading.current_thread()
        entry = Running(task, time.monotonic(), me, me)
        with self._lock:
            self._held.pop(task.task_id, None)
            self._held_at.pop(task.task_id, None)
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
                self._held_at.pop(task.task_id, None)
                self._running.pop(task.task_id, None)
                self._finished.pop(task.task_id, None)
                self._acking.pop(task.task_id, None)
                self._doubtful.discard(task.task_id)

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
            self._held_at.clear()
            self._doubtful.clear()
        return tasks
