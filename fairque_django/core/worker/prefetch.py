"""Thread-free prefetch: :class:`Prefetch`, a slot's acknowledgements and next pop sent before its
task runs and read after it, and :class:`Watchdog`, the one thread of a worker that hands a
prefetched task back when the task before it runs long.

A prefetching slot sends its round trip (the acknowledgements waiting and a pop of its next tasks:
one, or a short batch of tiny tasks; the script calls :meth:`~..queue.TaskQueue.complete_and_pop_many`
makes) on a connection of its own and does not wait for the reply; Redis answers while the task
runs, and the slot reads the reply when the task is done: the next tasks are leased by then. Should
the task still run ``hold_seconds`` after the send, the watchdog reads the reply instead (under the
prefetch's lock, so the connection is read once, by one thread) and hands the leased tasks back to
the front of their queues, where any idle slot or worker takes them (should that fail, Redis
unreachable, the slot keeps them, their leases renewed meanwhile, and runs each next once Redis says
its lease is still the slot's: the hand-back may have gone through with its reply lost). The rest of
a batch waits likewise: a slot's task running ``hold_seconds`` hands it back (:meth:`Slot.expire_ahead`).
What the reply acknowledged is counted by whoever reads it; when the round trip failed, the
acknowledgements stay with the slot, which sends them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from ..errors import FairQueueError, RedisUnavailableError
from ..models import Task
from ..ops import Sent, TogetherSent
from ..transport import HeldConnection
from .runner import Finished

if TYPE_CHECKING:
    from .slot import Slot, SlotContext

logger = logging.getLogger("fairque_django.worker")

Reply: TypeAlias = tuple[list[int], list[Task], float | None]  # a complete_and_pop_many's

# The watchdog looks at the slots this often (as a fraction of the hold time) while one prefetches.
WATCH_TICKS_PER_HOLD = 2


def acknowledged(ctx: SlotContext, done: Sequence[Finished], codes: Sequence[int], tasks: list[Task]) -> None:
    """Count the acknowledgements of a round trip and hold the tasks it leased."""
    for finished, code in zip(done, codes, strict=True):
        ctx.runner.acked(finished, code)
    ctx.book.hold(tasks)


def unacknowledged(ctx: SlotContext, done: Sequence[Finished]) -> None:
    logger.warning("worker %s: could not acknowledge %d task(s) yet (Redis unreachable)", ctx.worker_id, len(done))


class Prefetch:
    """One slot's acknowledgements (``done``) and pop of its next ``count`` tasks, sent now; the reply is read
    by :meth:`take` (the slot, its task done) or :meth:`expire` (the watchdog, the task still
    running at ``deadline``), whichever comes first."""

    __slots__ = ("_ctx", "_due", "_error", "_lock", "_sent", "_taken", "_tasks", "deadline", "done", "read")

    def __init__(self, ctx: SlotContext, done: list[Finished], via: HeldConnection | None, count: int = 1) -> None:
        self._ctx = ctx
        self.done = done
        self.read = False  # the reply was read (or the send failed and that was noted)
        self._taken = False  # the slot took its answer (take)
        self._lock = threading.Lock()
        self._tasks: list[Task] = []
        self._due: float | None = None
        self._error: Exception | None = None
        self._sent: Sent[Reply] | TogetherSent[Reply] | None = None
        ctx.book.acking(d.task for d in done)  # first: a heartbeat meanwhile would find them acknowledged
        try:
            self._sent = ctx.queue.send_complete_and_pop([(d.task, d.duration, d.result_json) for d in done], count,
                                                         worker_id=ctx.worker_id, via=via)
        except Exception as exc:  # raised by take(): the acknowledgements stay with the slot
            self._error = exc
        self.deadline = time.monotonic() + ctx.hold_seconds

    def take(self) -> tuple[list[Task], float | None]:
        """The slot's next tasks (none: none was ready, or the watchdog handed them back) and the
        seconds until something is due; raises what the round trip raised (its acknowledgements
        are then still the slot's, to send again)."""
        with self._lock:
            if not self.read:
                self._read()
            self._taken = True
        if self._error is not None:
            raise self._error
        return self._tasks, self._due

    def expire(self) -> None:
        """The watchdog, the slot's task still running: read the reply and hand the tasks it leased
        back to their queues (quietly: another slot or worker takes them now)."""
        with self._lock:
            if self.read:
                return
            self._read()
            tasks, self._tasks = self._tasks, []
        if tasks:
            self._ctx.book.forget(tasks)
            try:
                self._ctx.queue.release(tasks, count=False)
            except FairQueueError:  # Redis unreachable: the slot keeps the tasks (leases renewed, doubtful: each
                with self._lock:   # runs once Redis says it is still the slot's), unless the slot has moved on
                    if not self._taken:  # meanwhile: then the leases expire (late, once)
                        self._ctx.book.hold(tasks, doubtful=True)
                        self._tasks = tasks

    def _read(self) -> None:
        self.read = True
        ctx = self._ctx
        try:
            if self._sent is None:
                raise self._error or RuntimeError("nothing was sent")
            codes, tasks, self._due = self._sent.result()
        except Exception as exc:  # take() raises it; the slot sends the acknowledgements again
            if isinstance(exc, RedisUnavailableError):
                unacknowledged(ctx, self.done)
            ctx.book.unacked(d.task for d in self.done)
            self._error = exc
            return
        acknowledged(ctx, self.done, codes, tasks)
        self._tasks = tasks


class Watchdog:
    """The thread of a worker that expires the prefetches of slots whose task outruns the hold time.

    While a slot prefetches it looks every ``hold_seconds / 2``; when none does it sleeps until a
    slot's :meth:`watch` wakes it (a slot pays for the wake-up only then, never per task)."""

    def __init__(self, name: str, hold_seconds: float) -> None:
        self.name = name
        self.tick = max(hold_seconds / WATCH_TICKS_PER_HOLD, 0.002)
        self.slots: list[Slot] = []
        self.asleep = False
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, slots: list[Slot]) -> None:
        self.slots = slots
        self._done.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def watch(self) -> None:
        """A slot has just sent a prefetch (its ``fetch`` set first): wake the watchdog if it sleeps."""
        if self.asleep:
            self._wake.set()

    def _loop(self) -> None:
        while not self._done.is_set():
            self.asleep = True  # before looking: a prefetch sent meanwhile wakes the wait below
            if self._look():
                self.asleep = False
                self._done.wait(self.tick)
            else:
                self._wake.wait()
                self._wake.clear()

    def _look(self) -> bool:
        """Expire the prefetches and the rest of the batches past their deadline; whether one is
        still to watch."""
        now, watching = time.monotonic(), False
        for slot in self.slots:
            due = slot.ahead_due
            if due is not None:
                if now < due:
                    watching = True
                else:
                    try:
                        slot.expire_ahead(now)
                    except Exception:  # the watchdog must never die: log and go on
                        logger.exception("%s: a batch's tasks could not be handed back", self.name)
            fetch = slot.fetch
            if fetch is None or fetch.read:
                continue
            if now < fetch.deadline:
                watching = True
                continue
            try:
                fetch.expire()
            except Exception:  # the watchdog must never die: log and go on
                logger.exception("%s: a prefetched task could not be handed back", self.name)
        return watching
