"""``Slot``: the one slot loop of the thread worker: take a task, run it, acknowledge it.

A slot's acknowledgements travel with its next pop (one round trip for both) and are kept until
they went through: after a Redis outage they are sent again, never dropped (an ack that did go
through before the connection broke reads "already acknowledged"); meanwhile the heartbeat keeps
their leases. Two options make short tasks cheaper:

- *prefetch* (the default mode, :mod:`.prefetch`): before a short task runs, the slot sends the
  acknowledgements of what finished and the pop of its next task on a connection of its own, and
  reads the reply when the task is done (no thread hand-off); when the task still runs
  ``hold_seconds`` after the send, the worker's watchdog thread reads the reply and hands the
  leased task back to its queue for any idle slot or worker. Tiny tasks are prefetched a few at a
  time: as many as run in ``batch_seconds`` (see ``PREFETCH_BATCH_SECONDS``), the next prefetch
  sent before the batch's last task; the rest of a batch waits no longer than ``hold_seconds``
  behind a task that runs long (the watchdog hands it back too). A task
  that woke an idle slot starts at once (its queue was empty a moment ago: a prefetch would most
  likely find nothing). On a sharded prefix a prefetch carries the acknowledgements of whole
  batches only (``whole_batches``): one shard's script call, not two.
- *batch* (burst mode, or prefetch off): one pop leases as many tasks as fit in ``hold_seconds``
  (burst mode) or ``batch_seconds`` (as a prefetch: work that arrives waits no longer for a batch)
  of the slot's typical run time (at most ``MAX_BATCH``); when one of them runs longer than
  ``hold_seconds``, the rest of the batch goes back.

Max-tasks mode takes one task at a time. An idle slot waits for work in one blocking round trip
(wait-and-pop); in burst mode it first checks whether the worker is done.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import FairQueueError, RedisUnavailableError
from ..models import Task
from ..sharded import AnyQueue
from .leases import LeaseBook
from .prefetch import Prefetch, Watchdog, acknowledged, unacknowledged
from .runner import Finished, TaskRunner

logger = logging.getLogger("fairque_django.worker")

# A prefetched task waits this long for its slot before it is handed back to its queue; a slot
# leases several tasks at once only while that many of its tasks fit in this time.
PREFETCH_HOLD_SECONDS = 0.05

# The most tasks a slot leases in one pop.
MAX_BATCH = 16

# A prefetching slot leases as many tiny tasks at once as it runs in this long times its worker's
# number of slots (at most hold_seconds' worth and MAX_BATCH): a round trip's cost is shared by
# several tasks, and work that arrives meanwhile waits about this long more for the first of the
# worker's slots to finish its batch (slots finish theirs at different times). 0: one task a prefetch.
PREFETCH_BATCH_SECONDS = 0.005

# In burst mode, delayed tasks (retries) due within this many seconds are waited for.
BURST_DELAY_HORIZON = 60.0


class Backoff:
    """A slot's pause after a failed step: 0.1 s, doubled after each failure up to 5 s; logs why."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.delay = 0.1

    def reset(self) -> None:
        self.delay = 0.1

    def next(self, exc: BaseException) -> float:
        """Log why a step failed and return how long to wait now."""
        delay, self.delay = self.delay, min(self.delay * 2, 5.0)
        if isinstance(exc, RedisUnavailableError):
            logger.warning("worker %s: Redis unreachable (%s); retrying in %.1fs", self.worker_id, exc, delay)
        else:
            logger.error("worker %s: unexpected error in the task loop; retrying in %.1fs", self.worker_id, delay,
                         exc_info=exc)
        return delay


class Turns:
    """What the slots of one worker count together: tasks taken (max-tasks mode) and slots
    popping or running (burst mode ends only when none is)."""

    def __init__(self, max_tasks: int | None) -> None:
        self.max_tasks = max_tasks
        self._taken = 0
        self._inflight = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Start a turn (a pop and the task it brings); False when max tasks were taken."""
        with self._lock:
            if self.max_tasks is not None and self._taken >= self.max_tasks:
                return False
            self._taken += 1
            self._inflight += 1
            return True

    def end(self, served: bool) -> None:
        """End a turn; one that found no task gives its count back."""
        with self._lock:
            self._inflight -= 1
            if not served:
                self._taken -= 1

    def idle(self) -> bool:
        with self._lock:
            return self._inflight == 0

    def exhausted(self) -> bool:
        """Max-tasks mode: every task was taken and has finished."""
        with self._lock:
            return self.max_tasks is not None and self._taken >= self.max_tasks and self._inflight == 0


@dataclass(frozen=True, slots=True)
class SlotContext:
    """What the slots of one worker share."""

    worker_id: str
    queue: AnyQueue
    runner: TaskRunner
    book: LeaseBook
    turns: Turns
    stop: threading.Event
    burst: bool
    batch: bool  # lease several short tasks per pop
    watchdog: Watchdog | None  # hands back the prefetched tasks of slots busy too long (None: no prefetch)
    hold_seconds: float
    batch_seconds: float  # a prefetch, or a batch outside burst mode, leases as many tasks as run in this long
    max_wait: float  # the longest blocking wait for work
    grace: float  # how long a stopping slot keeps trying to acknowledge what finished
    # a prefetch carries the acks of the slot's earlier batches only, those of the batch whose last task
    # runs wait for the next round trip (a sharded prefix: a batch's acks are then one shard's call, not
    # two, as a batch comes from one shard and the next from another)
    whole_batches: bool = False


class Slot:
    """One slot thread's loop and state."""

    def __init__(self, ctx: SlotContext) -> None:
        self.ctx = ctx
        self.done: list[Finished] = []  # succeeded, acknowledged with the next round trip
        self.ahead: deque[Task] = deque()  # leased by a batch pop, not started (held; under lock)
        self.ahead_due: float | None = None  # a prefetching slot's running task outruns its batch then
        self.lock = threading.Lock()  # ahead and ahead_due: the watchdog hands a batch back (expire_ahead)
        self.fetch: Prefetch | None = None  # a prefetch under way (its reply not taken yet)
        self.conn = ctx.queue.hold_connection() if ctx.watchdog is not None else None  # prefetches go on it
        self.typical: float | None = None  # moving average run time of this slot's tasks
        self.batch: set[str] = set()  # the ids of the tasks of the slot's last pop (whole_batches)
        self.idle = False  # the last pop found nothing: wait for work, then pop
        self.due: float | None = None  # seconds until something is due (from the last empty pop)
        self.backoff = Backoff(ctx.worker_id)

    def run(self) -> None:
        ctx = self.ctx
        try:
            while not ctx.stop.is_set() and ctx.turns.take():
                if not self._turn():
                    break
        finally:
            self._close()
        if ctx.turns.exhausted():
            ctx.stop.set()

    def _turn(self) -> bool:
        """Take a task and run it, or wait for work; False when the slot should leave."""
        task: Task | None = None
        try:
            task = self._next()
            if task is not None and self.ctx.book.is_doubtful(task):
                task = self._confirmed(task)
            self.backoff.reset()
            if task is not None:
                return self._serve(task)
        except RedisUnavailableError as exc:
            self.ctx.stop.wait(self.backoff.next(exc))
            return True
        except Exception as exc:  # a slot must never die: log, back off, keep serving
            self._give_up_acks()
            self.ctx.stop.wait(self.backoff.next(exc))
            return True
        finally:
            self.ctx.turns.end(served=task is not None)
        self.idle = not self.done  # first acknowledge what finished (and pop), then wait
        return self._found_nothing()

    # --- taking tasks -------------------------------------------------------------------
    def _next(self) -> Task | None:
        """The next task to run: from the batch, the prefetch, or a round trip (which carries
        the acknowledgements waiting)."""
        ctx = self.ctx
        if self.ahead:
            with self.lock:
                if self.ahead:
                    return self.ahead.popleft()
        if self.fetch is not None:
            return self._collect()
        if self.done:
            tasks, self.due = self._send(list(self.done), self._batch_count())
            self.done.clear()
        elif self.idle and not ctx.burst:
            task, self.due = ctx.queue.wait_and_pop(ctx.worker_id, self._wait_timeout())
            tasks = [] if task is None else [task]
            ctx.book.hold(tasks)
        else:
            tasks, self.due = self._pop(self._batch_count())
        self._hold_ahead(tasks[1:])
        self._note_batch(tasks)
        return tasks[0] if tasks else None

    def _confirmed(self, task: Task) -> Task | None:
        """A doubtful task (see LeaseBook: its hand-back failed, or its lease was found lost) runs here
        only once Redis says its lease is still this slot's (renewed); else another worker may run it,
        or has: it is dropped (None). Redis unreachable: it stays first in line, to be checked again."""
        ctx = self.ctx
        try:
            lost = ctx.queue.extend([task])
        except Exception:
            with self.lock:
                self.ahead.appendleft(task)
            raise
        if task.task_id in lost:
            ctx.book.forget([task])
            logger.info("worker %s: task %s was handed back after all (its lease is not ours): not run here",
                        ctx.worker_id, task.task_id)
            return None
        ctx.book.confirm(task)
        return task

    def _note_batch(self, tasks: list[Task]) -> None:
        """Remember the ids of the tasks just leased (only for ``whole_batches``: off the hot path else)."""
        if self.ctx.whole_batches:
            self.batch = {t.task_id for t in tasks}

    def _hold_ahead(self, tasks: list[Task]) -> None:
        if tasks:
            with self.lock:
                self.ahead.extend(tasks)

    def _batch_count(self) -> int:
        """How many tasks to lease per pop: one, unless batching short tasks (then as many as fit in
        ``hold_seconds`` in burst mode, in ``batch_seconds`` otherwise, as a prefetch's; at most
        ``MAX_BATCH``)."""
        ctx = self.ctx
        if not ctx.batch:
            return 1
        return self._count(ctx.hold_seconds if ctx.burst else min(ctx.batch_seconds, ctx.hold_seconds))

    def _count(self, window: float) -> int:
        """As many tasks of this slot's typical run time as fit in ``window`` (1 to ``MAX_BATCH``)."""
        typical = self.typical
        if typical is None or typical >= window / 2:
            return 1
        return max(1, min(MAX_BATCH, int(window / max(typical, 1e-6))))

    def _pop(self, count: int) -> tuple[list[Task], float | None]:
        tasks, due = self.ctx.queue.pop_many_reply(count, self.ctx.worker_id)
        self.ctx.book.hold(tasks)
        return tasks, due

    def _send(self, done: list[Finished], count: int) -> tuple[list[Task], float | None]:
        """Acknowledge ``done`` and lease up to ``count`` tasks (none for 0) in one round trip.
        An outage raises: the caller still has ``done``, to send again."""
        ctx = self.ctx
        try:
            codes, tasks, due = ctx.queue.complete_and_pop_many(
                [(d.task, d.duration, d.result_json) for d in done], count, worker_id=ctx.worker_id)
        except RedisUnavailableError:
            unacknowledged(ctx, done)
            raise
        acknowledged(ctx, done, codes, tasks)
        return tasks, due

    # --- prefetching ----------------------------------------------------------------------
    def _collect(self) -> Task | None:
        """The prefetch's first task, the rest of its batch to ``ahead`` (its reply read now,
        unless the watchdog read it). When it failed, what it was to acknowledge is still in
        ``done``: the next round trip sends it again."""
        assert self.fetch is not None
        fetch, self.fetch = self.fetch, None
        tasks, self.due = fetch.take()
        self._sent(fetch.done)
        self._hold_ahead(tasks[1:])
        self._note_batch(tasks)
        return tasks[0] if tasks else None

    def _sent(self, sent: list[Finished]) -> None:
        if not sent:
            return
        gone = {id(s) for s in sent}  # by identity (they are alive: their ids are theirs)
        self.done = [d for d in self.done if id(d) not in gone]

    # --- running --------------------------------------------------------------------------
    def _serve(self, task: Task) -> bool:
        """Run one leased task; False when the worker stops first (the task goes back)."""
        woke, self.idle = self.idle, False
        if self.ctx.stop.is_set():
            self._give_back([task])
            return False
        self._before_run(woke)
        started = time.monotonic()
        finished = self.ctx.runner.execute(task)
        self.ahead_due = None
        if finished is not None:
            self.done.append(finished)
        took = time.monotonic() - started
        self.typical = took if self.typical is None else 0.8 * self.typical + 0.2 * took
        if self.ahead and took > self.ctx.hold_seconds and self.ctx.watchdog is None:
            # that one ran long: the rest of the batch goes back for others to take (a prefetching
            # slot's watchdog did that while it ran; what it could not hand back runs now)
            self._return_ahead(self._take_ahead())
        return True

    def _take_ahead(self) -> list[Task]:
        with self.lock:
            tasks = list(self.ahead)
            self.ahead.clear()
        return tasks

    def expire_ahead(self, now: float) -> None:
        """The watchdog, the slot's task running past ``ahead_due``: hand the rest of its batch back
        to its queue (another slot or worker takes it now)."""
        with self.lock:
            if self.ahead_due is None or now < self.ahead_due:
                return
            self.ahead_due = None
            tasks = list(self.ahead)
            self.ahead.clear()
        self._return_ahead(tasks)

    def _return_ahead(self, tasks: list[Task]) -> None:
        """Hand tasks of a batch back to their queue quietly; when that fails (Redis unreachable) they
        stay ahead, their leases renewed, doubtful: each runs here once Redis says it is still this
        slot's (the hand-back may have gone through, its reply lost: then another worker runs it)."""
        if not tasks:
            return
        self.ctx.book.forget(tasks)
        try:
            self.ctx.queue.release(tasks, count=False)
        except Exception:  # (whatever failed: none of them is lost, none runs twice)
            self.ctx.book.hold(tasks, doubtful=True)
            with self.lock:
                self.ahead.extendleft(reversed(tasks))

    def _before_run(self, woke: bool) -> None:
        """A prefetching slot leases its next tasks while a short one runs (the last of a batch:
        the batch's acknowledgements go with it), and acknowledges what finished now rather than
        after a long one (``whole_batches``: the prefetch leaves those of the batch whose last task runs
        for the next round trip)."""
        ctx = self.ctx
        if ctx.watchdog is None:
            return
        if self.ahead:  # the watchdog hands the rest of the batch back should this task run long
            with self.lock:
                self.ahead_due = time.monotonic() + ctx.hold_seconds if self.ahead else None
            ctx.watchdog.watch()
            return
        if not woke and self.typical is not None and self.typical < ctx.hold_seconds:
            count = self._count(min(ctx.batch_seconds, ctx.hold_seconds))
            done = [d for d in self.done if d.task.task_id not in self.batch] if ctx.whole_batches else list(self.done)
            self.fetch = Prefetch(ctx, done, self.conn, count)
            ctx.watchdog.watch()
        elif self.done:
            self._ack_done(time.monotonic())

    # --- waiting and leaving --------------------------------------------------------------
    def _found_nothing(self) -> bool:
        """After an empty pop: a burst worker ends when it is done, or waits for work."""
        if not self.ctx.burst:
            return True  # the next turn waits and pops in one round trip
        if self._burst_done():
            self.ctx.stop.set()
            return False
        timeout = self._wait_timeout()
        try:
            self.ctx.queue.wait_for_work(self.ctx.worker_id, timeout)
        except Exception as exc:  # Redis down, or the client closed under us: wait, then retry
            logger.debug("worker %s: wait for work failed (%s)", self.ctx.worker_id, exc)
            self.ctx.stop.wait(min(timeout, 1.0))
        return True

    def _burst_done(self) -> bool:
        """Burst mode ends when no slot is popping or running, none holds a task it has not
        started, and no delayed task (e.g. a retry) is due within ``BURST_DELAY_HORIZON`` s."""
        ctx = self.ctx
        if not ctx.turns.idle() or ctx.book.has_held():
            return False
        try:
            due = ctx.queue.next_delayed_seconds()
        except FairQueueError as exc:  # cannot tell: not done (the slot waits and asks again)
            logger.warning("worker %s: could not check for delayed tasks (%s)", ctx.worker_id, exc)
            return False
        return due is None or due > BURST_DELAY_HORIZON

    def _wait_timeout(self) -> float:
        return self.ctx.max_wait if self.due is None else min(self.ctx.max_wait, max(self.due, 0.001))

    def _close(self) -> None:
        """Leaving: hand back what was leased and not started, acknowledge what finished."""
        if self.fetch is not None:
            try:
                first = self._collect()  # (the rest of its batch joins ahead)
                if first is not None:
                    with self.lock:
                        self.ahead.appendleft(first)
            except Exception as exc:  # what it was to acknowledge is still in done
                logger.warning("worker %s: prefetch failed at shutdown (%s)", self.ctx.worker_id, exc)
        self._give_back(self._take_ahead())
        self._ack_done(time.monotonic() + self.ctx.grace)
        if self.conn is not None:
            self.conn.close()

    def _ack_done(self, until: float) -> None:
        """Acknowledge what finished without leasing more, trying again after an outage until
        ``until``; what is still not through then waits for the next round trip (or, when the
        slot leaves, for its lease to expire: the task runs again)."""
        while self.done:
            try:
                self._send(list(self.done), 0)
                self.done.clear()
            except RedisUnavailableError as exc:
                left = until - time.monotonic()
                if left <= 0:
                    return
                time.sleep(min(self.backoff.next(exc), left))  # not stop.wait: a leaving slot is stopped
            except FairQueueError:
                self._give_up_acks()

    def _give_up_acks(self) -> None:
        """An unexpected error: what waited for its ack is not sent again (its lease expires
        and it runs again: at least once)."""
        self.ctx.book.forget(d.task for d in self.done)
        self.done = []

    def _give_back(self, tasks: Iterable[Task | None], *, count: bool = True) -> None:
        """Hand leased tasks this slot has not started back to their queue (``count``: in the
        'released' stat, as at shutdown; not for a quiet hand-back another slot takes at once)."""
        back = [t for t in tasks if t is not None]
        if not back:
            return
        self.ctx.book.forget(back)
        with contextlib.suppress(FairQueueError):
            self.ctx.queue.release(back, count=count)
