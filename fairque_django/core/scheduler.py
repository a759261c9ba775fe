"""``Scheduler``: fires the ticks of periodic schedules from any worker, each exactly once fleet-wide.

Every worker runs one (a thread of :class:`~.worker.Worker` and :class:`~.worker.AsyncWorker`).
It computes each schedule's next tick locally and talks to Redis only when one is due: then it
claims the tick with ``schedule_tick.lua`` (a compare-and-set on the schedule's last tick, so of
all the workers trying, one gets it), pushes the tick's tasks with ids
``sched:<name>:<tick>:<tenant>`` through ``push_batch(idempotent=True)`` (they join the fair
rotation like any other task) and confirms the claim. Should the claimer die between claim and
confirmation, the claim goes stale and the next worker that looks is handed it and pushes the
same ids again: the ones already stored are duplicates, so no tenant's task of a tick is stored
twice and none is lost. No lock is taken that a crash could leave held.

Cost when nothing is due: no Redis call, besides one look for stale claims (of all schedules in one
round trip) every ``stale_check_seconds`` (5 s).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .config.topology import glob_match
from .errors import FairQueueError, TaskNotRegisteredError, TaskValidationError
from .ids import is_pattern
from .models import Task
from .registry import get_task_function
from .schedule import Schedule, load_callable
from .sharded import AnyQueue

__all__ = ["ScheduleStatus", "Scheduler", "fire_now", "schedule_status"]

logger = logging.getLogger("fairque_django.scheduler")

# A claim not confirmed for this long is handed to another worker (its pusher most likely died: a
# tick of 1,000 tenants is pushed in about 50 ms); a takeover of a live pusher only pushes duplicates.
STALE_CLAIM_SECONDS = 10.0
STALE_CHECK_SECONDS = 5.0


def known_tenants(queue: AnyQueue) -> list[str]:
    """The tenants a pattern in ``tenants`` matches against: the exact ids the configuration
    names (assigned users, steal targets, weights) and every tenant with a push counter."""
    config = queue.config
    named: set[str] = set(config.queue.user_weights)
    for worker in config.workers:
        named |= worker.assigned_exact | worker.steal_exact
    return sorted(named | set(queue.pushed_tenants()))


def tenants_of(schedule: Schedule, queue: AnyQueue, to_user: Callable[[Any], str] | None = None) -> list[str]:
    """The tenants one tick of ``schedule`` runs its task for (in order, no repeats)."""
    if schedule.user is not None:
        return [schedule.user]
    raw: Iterable[Any]
    if isinstance(schedule.tenants, tuple):
        exact = [t for t in schedule.tenants if not is_pattern(t)]
        patterns = [t for t in schedule.tenants if is_pattern(t)]
        matched = [u for u in known_tenants(queue) if any(glob_match(p, u) for p in patterns)] if patterns else []
        raw = [*exact, *matched]
    else:
        fn = schedule.tenants_callable or load_callable(str(schedule.tenants), f"SCHEDULES[{schedule.name!r}].tenants")
        raw = fn()
    seen: dict[str, None] = {}
    for entry in raw:
        user = entry if isinstance(entry, str) or to_user is None else to_user(entry)
        if not isinstance(user, str):
            raise TaskValidationError(f"schedule {schedule.name!r}: tenant {entry!r} is not a user id")
        seen.setdefault(user, None)
    return list(seen)


def tick_tasks(schedule: Schedule, tick: int | str, tenants: Sequence[str]) -> list[Task]:
    """The tasks of one tick: the schedule's task for each tenant, ids ``sched:<name>:<tick>:<tenant>``."""
    try:
        fn = get_task_function(schedule.task)
    except TaskNotRegisteredError:
        fn = None
    tasks = []
    for tenant in tenants:
        meta = {"schedule": schedule.name, "tick": str(tick)}
        if fn is not None:
            task = fn.create_task(schedule.args, dict(schedule.kwargs), user_id=tenant, priority=schedule.priority,
                                  max_retries=schedule.max_retries, metadata=meta)
        else:  # registered in the workers that run it, not here
            task = Task.create(user_id=tenant, priority=schedule.priority or 3, func_name=schedule.task,
                               args=schedule.args, kwargs=dict(schedule.kwargs), max_retries=schedule.max_retries,
                               metadata=meta)
        task.task_id = schedule.task_id(tick, tenant)
        tasks.append(task)
    return tasks


def push_tick(queue: AnyQueue, schedule: Schedule, tick: int | str,
              to_user: Callable[[Any], str] | None = None) -> int:
    """Push the tasks of one tick (idempotent: ids already pushed are duplicates); how many were
    new. A tenant no worker serves (or an invalid id) is logged and left out, the rest pushed."""
    tasks = tick_tasks(schedule, tick, tenants_of(schedule, queue, to_user))
    try:
        return int(queue.push_batch(tasks, idempotent=True)["pushed"])
    except TaskValidationError:  # one bad tenant: push the others one by one
        pushed = 0
        for task in tasks:
            try:
                pushed += int(queue.push_batch([task], idempotent=True)["pushed"])
            except TaskValidationError as exc:
                logger.error("schedule %s: tick %s: not pushed for %r: %s", schedule.name, tick, task.user_id, exc)
        return pushed


def fire_now(queue: AnyQueue, schedule: Schedule, to_user: Callable[[Any], str] | None = None) -> int:
    """Run a schedule now, outside its timing (admin "run now"): its tasks for every tenant, with
    ids of their own (``sched:<name>:now<ms>:<tenant>``); the ticks are not affected."""
    ms = int(time.time() * 1000)
    pushed = push_tick(queue, schedule, f"now{ms}", to_user)
    queue.schedule_set(schedule.name, {"now": str(ms)})
    return pushed


@dataclass(frozen=True)
class ScheduleStatus:
    """What the admin and ``fairque_schedules list`` show of a schedule."""

    schedule: Schedule
    last_tick: int | None
    last_fired_ms: int | None
    next_tick: int
    paused: bool
    fired: int
    skipped: int
    pending: tuple[str, ...]
    last_run_now_ms: int | None


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def schedule_status(queue: AnyQueue, schedules: Sequence[Schedule], now: float | None = None) -> list[ScheduleStatus]:
    """The state of each schedule (one round trip)."""
    moment = time.time() if now is None else now
    states = queue.schedule_states([s.name for s in schedules])
    out = []
    for s in schedules:
        st = states.get(s.name, {})
        last = _int(st.get("last"))
        out.append(ScheduleStatus(
            schedule=s, last_tick=last, last_fired_ms=_int(st.get("at")),
            next_tick=s.next_after(max(moment, last or 0)), paused=st.get("paused") == "1",
            fired=_int(st.get("fired")) or 0, skipped=_int(st.get("skipped")) or 0,
            pending=tuple(sorted(k[2:] for k in st if k.startswith("c:"))), last_run_now_ms=_int(st.get("now"))))
    return out


class Scheduler:
    """Fires the due ticks of ``schedules`` through ``queue``; :meth:`start` runs it in a thread,
    :meth:`run_once` is one step (tests drive it with their own clock)."""

    def __init__(self, queue: AnyQueue, schedules: Iterable[Schedule], *, worker_id: str = "",
                 to_user: Callable[[Any], str] | None = None, clock: Callable[[], float] = time.time,
                 stale_claim_seconds: float = STALE_CLAIM_SECONDS,
                 stale_check_seconds: float = STALE_CHECK_SECONDS) -> None:
        self.queue = queue
        self.schedules = tuple(schedules)
        self.worker_id = worker_id
        self.to_user = to_user
        self.clock = clock
        self.stale_ms = int(stale_claim_seconds * 1000)
        self.stale_check_seconds = stale_check_seconds
        self.token = secrets.token_hex(8)
        self._last: dict[str, int | None] = {}
        self._next: dict[str, float] = {}
        self._loaded = False
        self._next_stale = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired: list[tuple[str, str, int]] = []  # (schedule, tick, tasks pushed) of this process

    # --- thread ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.schedules:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"{self.worker_id}-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        pause = 0.0
        while not self._stop.wait(pause):
            try:
                self.run_once()
                pause = max(0.0, min(1.0, self.next_wake() - self.clock()))
            except FairQueueError as exc:  # Redis unreachable: tried again (the tick is still due)
                logger.warning("scheduler %s: %s", self.worker_id, exc)
                pause = 1.0
            except Exception:
                logger.exception("scheduler %s: a tick failed", self.worker_id)
                pause = 1.0

    # --- one step ----------------------------------------------------------------------------
    def next_wake(self) -> float:
        """When the next tick of any schedule is due (or the next look for stale claims)."""
        return min([self._next_stale, *self._next.values()])

    def run_once(self, now: float | None = None) -> None:
        """Fire every tick due at ``now``, and finish stale claims when it is time to look."""
        moment = self.clock() if now is None else now
        if not self._loaded:
            states = self.queue.schedule_states([s.name for s in self.schedules])
            for s in self.schedules:
                self._last[s.name] = _int(states.get(s.name, {}).get("last"))
            self._loaded = True
            self._next_stale = moment  # look for claims a crashed worker left at once
        for s in self.schedules:
            due_at = self._next.get(s.name)
            if due_at is None or due_at <= moment:
                self._fire_due(s, moment)
        if moment >= self._next_stale:
            self._next_stale = moment + self.stale_check_seconds
            stale = self.queue.schedule_stale([s.name for s in self.schedules], self.token, stale_ms=self.stale_ms)
            for s in self.schedules:
                self._finish(s, stale.get(s.name, []))

    def _fire_due(self, s: Schedule, now: float) -> None:
        fire, skip_to = s.due(self._last.get(s.name), now)
        if skip_to is not None:
            status, last, stale = self.queue.schedule_tick(s.name, skip_to, self.token, stale_ms=self.stale_ms,
                                                           skip=True)
            self._seen(s, last)
            self._finish(s, stale)
            if status == "skipped":
                logger.info("schedule %s: missed tick %d skipped (catch_up off)", s.name, skip_to)
        for tick in fire:
            if (self._last.get(s.name) or 0) >= tick:
                continue
            status, last, stale = self.queue.schedule_tick(s.name, tick, self.token, stale_ms=self.stale_ms)
            self._seen(s, last)
            if status == "claimed":
                self._finish(s, [str(tick)])
            self._finish(s, stale)
        self._next[s.name] = s.next_after(max(now, self._last.get(s.name) or 0))

    def _seen(self, s: Schedule, last: int) -> None:
        self._last[s.name] = max(last, self._last.get(s.name) or 0) if last else self._last.get(s.name)

    def _finish(self, s: Schedule, ticks: Sequence[str]) -> None:
        """Push the tasks of claimed ticks, then confirm the claims."""
        for tick in ticks:
            pushed = push_tick(self.queue, s, tick, self.to_user)
            self.queue.schedule_done(s.name, [tick])
            self.fired.append((s.name, tick, pushed))
            logger.info("schedule %s: tick %s fired (%d task(s))", s.name, tick, pushed)
