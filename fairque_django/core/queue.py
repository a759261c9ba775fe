"""The synchronous :class:`TaskQueue`: push, fair pop with leases, ack, fail, DLQ and stats.

A thin driver: the arguments and replies of every script are :mod:`.scripts.commands`'s, the I/O
is :mod:`.transport`'s. :class:`~.aio.AsyncTaskQueue` has the same methods (a test compares them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import redis

from .codec import chunks, text
from .config import FairQueueConfig
from .connection import get_client
from .context import activate_queue, deactivate_queue
from .errors import LeaseLostError
from .keys import validate_user_id
from .models import DLQEntry, Task, dumps
from .results import ResultSnapshot, TaskResult
from .scripts import Scripts
from .scripts.commands import (
    PARK_MARGIN_MS,
    Commands,
    batch_outcome,
    dead_ids,
    push_outcome,
    read_depth,
    task_fields,
)
from .scripts.pop import PopPlan, PopReply, PopStep
from .transport import ScriptCall, Transport, evalsha, redis_errors

__all__ = ["TaskQueue", "redis_errors"]

logger = logging.getLogger("fairque_django.queue")


class TaskQueue:
    """Fair multi-tenant task queue on Redis.

    ``TaskQueue(config)`` uses the process-wide client for ``config.redis`` (or ``client``).
    ``worker_id`` selects whose tasks :meth:`pop` leases (default: ``config.worker_id``).
    """

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self.proto = Commands(config, worker_id)
        self.config = config
        self.keys = self.proto.keys
        self.client: redis.Redis = client if client is not None else get_client(config.redis)
        self.scripts = Scripts(self.client)
        self.transport = Transport(self.client, self.keys.stats)
        self._leases: dict[str, str] = {}  # task id -> lease token, for delete_task(task_id)
        self._synced: set[str] = set()
        self._context_token: Any = None

    # --- context manager ----------------------------------------------------------------
    def __enter__(self) -> TaskQueue:

        self._context_token = activate_queue(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release this queue's resources (the shared client stays open for others)."""
        if self._context_token is not None:

            deactivate_queue(self._context_token)
            self._context_token = None

    # --- push ---------------------------------------------------------------------------
    def push(self, task: Task, user_id: str | None = None) -> dict[str, Any]:
        """Queue one task for ``user_id`` (or the task's own / the current tenant's user)."""
        task, args = self.proto.prepare(task, user_id)
        with redis_errors("push"):
            stored = self.transport.run(self.scripts.push, self.proto.push_args([args]))
        return push_outcome(task, stored)

    def push_batch(self, tasks: Iterable[Task], user_id: str | None = None) -> dict[str, Any]:
        """Queue many tasks: one script call per ``queue.batch_size`` tasks, streamed in one round trip.

        Every task is checked (user, id, priority) before anything is written; bodies are encoded
        chunk by chunk while Redis stores the previous chunk. Should a body of a later chunk fail to
        encode, the tasks this call already stored are deleted again before the error is raised."""
        batch = list(tasks)
        for task in batch:
            self.proto.check(task, user_id)
        # enable_pipeline_optimization=False: one script call per task (still one round trip)
        size = self.config.queue.batch_size if self.config.queue.enable_pipeline_optimization else 1
        groups = list(chunks(batch, size))

        def calls() -> Iterator[ScriptCall]:
            for group in groups:
                yield self.scripts.push, self.proto.push_args([self.proto.encode(task) for task in group])

        with redis_errors("push_batch"):
            replies, error = self.transport.stream_scripts(calls())
        ids, duplicates = batch_outcome(groups, replies)
        if error is not None:
            if ids:
                self.delete(*ids)
            raise error
        return {"success": not duplicates, "pushed": len(ids), "task_ids": ids, "duplicates": duplicates}

    # --- pop ----------------------------------------------------------------------------
    def _sync_steal_set(self, plan: PopPlan) -> None:
        """Mirror the worker's exact steal targets (from config) into its Redis SET once."""
        if not plan.steal_set_key or plan.worker_id in self._synced:
            return
        if text(self.client.get(self.keys.steal_digest(plan.worker_id)) or b"") != plan.steal_digest:
            self.transport.execute(self.proto.steal_set_commands(plan), transaction=True)
        self._synced.add(plan.worker_id)

    def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """Lease the next task fairly for a worker, or return None when nothing is ready."""
        return self.pop_reply(worker_id, lease_seconds=lease_seconds)[0]

    def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                  ) -> tuple[Task | None, float | None]:
        """Like :meth:`pop`; also returns seconds until the next delayed task / lease is due."""
        tasks, due = self.pop_many_reply(1, worker_id, lease_seconds=lease_seconds)
        return (tasks[0] if tasks else None), due

    def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                 ) -> list[Task]:
        """Lease up to ``count`` tasks in one call, each chosen as fairly as :meth:`pop` would."""
        return self.pop_many_reply(count, worker_id, lease_seconds=lease_seconds)[0]

    def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> tuple[list[Task], float | None]:
        """Like :meth:`pop_many`; also returns seconds until the next delayed task / lease is due
        (when nothing is ready)."""
        while True:
            step = self.pop_step(worker_id, count=count, lease_seconds=lease_seconds)
            if not step.again:
                return step.tasks, step.due

    def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                 park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """One call of ``pop.lua``, the step every pop is made of (public for tests and tools).

        ``park_ms``: a slot about to wait parks for that long when nothing is ready, so that a
        push may lease it a task on its hand list (:meth:`take_handed`); ``unpark``: the token of
        that park, its wait being over (``handed_over`` in the answer: it was no longer parked)."""
        plan = self.proto.plan(worker_id)
        with redis_errors("pop"):
            self._sync_steal_set(plan)
            args, token = self.proto.pop_args(plan, lease_seconds, count, park_ms=park_ms, unpark=unpark)
            reply = PopReply.parse(self.transport.run(self.scripts.pop, args))
        return self._leased(reply, token, plan)

    def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """The task a push leased to the parked slot ``token`` (taken from its hand list), if any."""
        plan = self.proto.plan(worker_id)
        with redis_errors("take_handed"):
            item: Any = self.client.lpop(self.keys.hand(token))
        if item is None or text(item) == "-":
            return PopStep([], None, token)
        return self._leased(PopReply.handed(item), token, plan)

    def _leased(self, reply: PopReply, token: str, plan: PopPlan) -> PopStep:
        """The step of a pop reply; corrupt tasks are dead-lettered."""
        tasks, corrupt = self.proto.read_pop(reply, token, plan.worker_id)
        for task_id, why in corrupt:
            self._fail_raw(task_id, token, why, "CorruptTaskError", "", "corrupt", dead=True)
        for task in tasks:
            self._leases[task.task_id] = token
        return PopStep(tasks, reply.due, token, handed_over=not reply.served, corrupt=len(corrupt))

    def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                         worker_id: str | None = None, lease_seconds: float | None = None,
                         ) -> tuple[int, Task | None, float | None]:
        """Acknowledge ``task`` (storing ``result_json`` if given) and lease the next task, in one
        round trip. Returns (ack code: 1 done / 0 lease lost / -1 gone, next task, seconds due)."""
        codes, tasks, due = self.complete_and_pop_many([(task, duration, result_json)], 1, worker_id=worker_id,
                                                       lease_seconds=lease_seconds)
        return codes[0], (tasks[0] if tasks else None), due

    def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, lease_seconds: float | None = None,
                              ) -> tuple[list[int], list[Task], float | None]:
        """Acknowledge finished tasks, given as (task, run time, result JSON or None), and lease up
        to ``count`` more (none when ``count`` is 0), in one round trip. Returns (an ack code per
        task: 1 done / 0 lease lost / -1 gone, the tasks leased, seconds until something is due
        when none was ready)."""
        plan = self.proto.plan(worker_id)
        with redis_errors("complete_and_pop"):
            self._sync_steal_set(plan)
            pop_args, token = self.proto.pop_args(plan, lease_seconds, count)
            calls: list[ScriptCall] = [(self.scripts.complete, self.proto.complete_args(
                (t.task_id, t.lease_token or "", d) for t, d, _ in done))]
            if count > 0:
                calls.append((self.scripts.pop, pop_args))
            results = [self.proto.result_command(t, data) for t, _, data in done if data is not None]
            replies = self.transport.run_scripts(calls, results)
        for task, _, _ in done:
            self._leases.pop(task.task_id, None)
        codes = [int(code) for code in replies[0]]
        if count <= 0:
            return codes, [], None
        step = self._leased(PopReply.parse(replies[1]), token, plan)
        if step.again:
            tasks, due = self.pop_many_reply(count, worker_id, lease_seconds=lease_seconds)
            return codes, tasks, due
        return codes, step.tasks, step.due

    def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                     lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """Lease a ready task, or wait up to ``timeout`` for one: all in one round trip.

        A worker with its own partition parks while it waits, and a push that finds nothing
        else ready in the partition leases its task to the parked slot directly (the wait
        returns that task, no pop needed). Otherwise a push's wake-up ends the wait and Redis
        runs the pop at once."""
        plan = self.proto.plan(worker_id)
        keys = [self.keys.wake(p) for p in plan.wake_partitions]
        if not keys:
            time.sleep(max(timeout, 0.0))
            return self.pop_reply(worker_id, lease_seconds=lease_seconds)
        with redis_errors("wait_and_pop"):
            self._sync_steal_set(plan)
            step = self._park_and_pop(plan, keys, max(timeout, 0.001), lease_seconds)
        if step is None or step.again:
            return self.pop_reply(worker_id, lease_seconds=lease_seconds)
        return (step.tasks[0] if step.tasks else None), step.due

    def _park_and_pop(self, plan: PopPlan, keys: list[str], wait: float, lease_seconds: float | None,
                      ) -> PopStep | None:
        """Pop, or park and wait on the slot's hand list and the wake lists (one round trip). A task
        handed over ends it; after a wake-up or a timeout the slot unparks and pops (a second round
        trip, off the hand-off's path). None: Redis had lost its scripts (nothing parked)."""
        park, token = self.proto.pop_args(plan, lease_seconds, park_ms=int(wait * 1000) + PARK_MARGIN_MS)
        hand = self.keys.hand(token)
        first, woke = self.transport.round_trip([evalsha(self.scripts.pop, self.keys.stats, park),
                                                 ["BLPOP", hand, *keys, f"{wait:.3f}"]])
        if isinstance(first, redis.exceptions.NoScriptError):
            return None
        for reply in (first, woke):
            if isinstance(reply, Exception):
                raise reply
        popped = PopReply.parse(first)
        if woke is not None and text(woke[0]) == hand:
            # '-': the first pop leased what was ready; anything else: a push handed a task over
            return self._leased(popped if text(woke[1]) == "-" else PopReply.handed(woke[1]), token, plan)
        self._leased(popped, token, plan)  # nothing leased: logs what the first pop set aside
        step = self.pop_step(plan.worker_id, lease_seconds=lease_seconds, unpark=token)
        if not step.handed_over:
            return step
        handed = self.take_handed(token, plan.worker_id)  # a push leased us a task as the wait ended
        return handed if handed.tasks or handed.corrupt else None

    def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Block until a push may have made work ready for the worker (or ``timeout``)."""
        plan = self.proto.plan(worker_id)
        keys = [self.keys.wake(p) for p in plan.wake_partitions]
        if not keys or timeout <= 0:
            return False
        with redis_errors("wait_for_work"):
            return self.client.blpop(keys, timeout=max(timeout, 0.001)) is not None

    # --- finishing ----------------------------------------------------------------------
    def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Acknowledge a popped task as done. Raises LeaseLostError on a late ack."""
        if self.complete_code(task, duration=duration) == 0:
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")

    def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """Acknowledge a popped task: 1 done, 0 lease lost (late ack rejected), -1 no such task."""
        return self._complete(task.task_id, task.lease_token or "", duration)

    def _complete(self, task_id: str, token: str, duration: float | None) -> int:
        with redis_errors("complete"):
            args = self.proto.complete_args([(task_id, token, duration)])
            code = int(self.transport.run(self.scripts.complete, args)[0])
        self._leases.pop(task_id, None)
        return code

    def delete_task(self, task_id: str) -> bool:
        """Finish a task: an ack when this queue leased it (rejected if the lease was lost),
        otherwise remove the task wherever it is. Returns True when something was done."""
        token = self._leases.get(task_id)
        if token is None:
            return bool(self.delete(task_id))
        code = self._complete(task_id, token, None)
        if code == 0:
            logger.warning("fairque: late ack for task %s rejected: its lease was taken over", task_id)
        return code == 1

    def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
             failure_type: str = "error", retry: bool = True) -> str:
        """Record a failed attempt: returns ``"retry"`` (scheduled after backoff) or ``"dead"``."""
        message, etype = self.proto.error_fields(error)
        result = self._fail_raw(task.task_id, task.lease_token or "", message, etype, traceback,
                                failure_type, dead=not retry, retry_count=task.retry_count)
        if result == "lost":
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")
        return result

    def _fail_raw(self, task_id: str, token: str, message: str, etype: str, tb: str, ftype: str, *,
                  dead: bool, retry_count: int = 0) -> str:
        with redis_errors("fail"):
            args = self.proto.fail_args(task_id, token, retry_count, dead, message, etype, tb, ftype)
            reply = self.transport.run(self.scripts.fail, args)
        self._leases.pop(task_id, None)
        return self.proto.fail_outcome(reply)

    def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Hand leased tasks back to the front of their queue without counting a failure."""
        if not tasks:
            return 0
        for t in tasks:
            self._leases.pop(t.task_id, None)
        with redis_errors("release"):
            return int(self.transport.run(self.scripts.release, self.proto.release_args(tasks, count)))

    def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Heartbeat: renew the leases of running tasks; returns the ids whose lease was lost."""
        if not tasks:
            return []
        with redis_errors("extend"):
            reply = self.transport.run(self.scripts.extend, self.proto.extend_args(tasks, lease_seconds))
        return [text(x) for x in reply]

    def delete(self, *task_ids: str) -> list[str]:
        """Remove tasks wherever they are (queued, delayed, leased or dead)."""
        if not task_ids:
            return []
        with redis_errors("delete"):
            return [text(x) for x in self.transport.run(self.scripts.delete, self.proto.dlq_args(task_ids))]

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_size(self) -> int:
        with redis_errors("dlq_size"):
            return int(self.client.zcard(self.keys.dlq))

    def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """Dead tasks with their error, traceback, attempts, user and time of death."""
        with redis_errors("get_dlq"):
            page = self.transport.execute([self.proto.dlq_range_command(offset, limit, newest_first)])
            ids = [text(i) for i in page[0]]
            rows = self.transport.execute([["HGETALL", self.keys.task(i)] for i in ids], raise_on_error=False)
        return self.proto.decode_dlq(ids, rows)

    def get_dead(self, task_id: str) -> DLQEntry | None:
        with redis_errors("get_dead"):
            score, row = self.transport.execute([["ZSCORE", self.keys.dlq, task_id],
                                                 ["HGETALL", self.keys.task(task_id)]])
        return self.proto.decode_dead(task_id, row) if score is not None and row else None

    def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead tasks back to their queues (all of them when ``task_ids`` is None)."""
        return self._dlq_script(self.scripts.requeue_dead, task_ids)

    def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Delete dead tasks (all of them, i.e. purge, when ``task_ids`` is None)."""
        return self._dlq_script(self.scripts.delete, task_ids)

    def purge_dlq(self) -> int:
        return len(self.delete_dead(None))

    def _dlq_script(self, script: Any, task_ids: Iterable[str] | None) -> list[str]:
        done: list[str] = []
        with redis_errors("dlq"):
            if task_ids is None:  # 1000 per call until none is left
                while batch := [text(x) for x in self.transport.run(script, self.proto.dlq_args(None))]:
                    done += batch
                return done
            ids = list(task_ids)
            # only dead tasks: never touch live ones through the DLQ API
            dead = dead_ids(ids, self.client.zmscore(self.keys.dlq, ids)) if ids else []
            if dead:
                done = [text(x) for x in self.transport.run(script, self.proto.dlq_args(dead))]
        return done

    # --- inspection -----------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Counters, gauges (``tasks_active`` = leased now) and per-user / per-priority counts."""
        with redis_errors("get_stats"):
            raw, active, delayed, dlq = self.transport.execute(self.proto.stats_commands())
        return self.proto.parse_stats(raw, int(active), int(delayed), int(dlq))

    def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """The state of a task as text (``st``: queued, delayed, leased or dead; the fields of
        its hash, header unpacked), or None."""
        with redis_errors("get_task_state"):
            row = self.client.hgetall(self.keys.task(task_id))
        return task_fields(row) if row else None

    def user_depth(self, user_id: str) -> dict[str, int]:
        """Ready tasks of one user, by lane."""
        with redis_errors("user_depth"):
            return read_depth(self.transport.execute(self.proto.depth_commands(user_id)))

    # --- results ----------------------------------------------------------------------------
    def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Keep a task's outcome (JSON) for ``queue.result_ttl_seconds`` under its user's scope."""
        self.store_result_json(task, dumps(record, what=f"result of task {task.task_id}"))

    def store_result_json(self, task: Task, data: str) -> None:
        """Keep an outcome already encoded as JSON (see :meth:`store_result`)."""
        with redis_errors("store_result"):
            self.transport.execute([self.proto.result_command(task, data)])

    def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """The stored outcome of ``task_id`` for ``user_id`` (never another user's), or None."""
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        with redis_errors("get_result"):
            raw = self.client.get(self.keys.result(user_id, task_id))
        return None if raw is None else dict(json.loads(raw))

    def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """The status and outcome of ``task_id`` as ``user_id`` may see it (one round trip)."""
        task_key, result_key = self.proto.result_keys(task_id, user_id)
        with redis_errors("read_result"):
            row, raw = self.transport.execute([["HGETALL", task_key], ["GET", result_key]])
        return ResultSnapshot.read(user_id, task_fields(row) if row else None, raw)

    def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """The handle of ``task_id`` for ``user_id``, read now; :class:`TaskNotFoundError` when
        nothing is known of it for that user."""
        return TaskResult(task_id, user_id, self).refresh()

    def next_delayed_seconds(self) -> float | None:
        """Seconds until the earliest delayed task (scheduled or retry) is due, or None."""
        with redis_errors("next_delayed_seconds"):
            first = self.client.zrange(self.keys.delayed, 0, 0, withscores=True)
            if not first:
                return None
            sec, usec = self.client.time()  # the server's clock (a cluster pipeline cannot send TIME)
        return max(0.0, float(first[0][1]) / 1000.0 - (float(sec) + float(usec) / 1e6))
