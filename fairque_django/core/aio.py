"""The asyncio :class:`AsyncTaskQueue`: the operations of :class:`~.queue.TaskQueue` as coroutines.

It runs the same Lua scripts on the same keys as the synchronous queue, so both can serve one
Redis: a task pushed by one can be popped, acked or failed by the other. Arguments and replies
are :mod:`.scripts.commands`'s, the I/O :mod:`.transport`'s; a test compares the two classes'
methods and signatures so that they cannot drift.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from .codec import chunks, text
from .config import FairQueueConfig, RedisConfig
from .errors import LeaseLostError
from .keys import validate_user_id
from .models import DLQEntry, Task, dumps
from .results import ResultSnapshot, TaskResult
from .scripts import AsyncScripts
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
from .transport import AsyncTransport, ScriptCall, evalsha, redis_errors

__all__ = ["AsyncTaskQueue", "build_async_client"]

logger = logging.getLogger("fairque_django.queue")


def build_async_client(config: RedisConfig, **extra: Any) -> redis.asyncio.Redis:
    """A new ``redis.asyncio`` client for ``config`` that retries transient connection errors.

    Async clients are bound to the event loop they first run on, so they are never cached
    process-wide: each :class:`AsyncTaskQueue` builds (and closes) its own.
    """
    options: dict[str, Any] = {
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    options.update(extra)
    if config.url:
        return redis.asyncio.Redis.from_url(config.url, **{**config.url_kwargs(), **options})
    return redis.asyncio.Redis(**{**config.client_kwargs(), **options})


class AsyncTaskQueue:
    """Fair multi-tenant task queue on Redis, for asyncio code.

    ``AsyncTaskQueue(config)`` builds its own ``redis.asyncio`` client from ``config.redis`` and
    closes it in :meth:`aclose`; a ``client`` passed in is used as is and left open.
    ``worker_id`` selects whose tasks :meth:`pop` leases (default: ``config.worker_id``).
    Use it as ``async with AsyncTaskQueue(config) as queue: ...``.
    """

    def __init__(self, config: FairQueueConfig, client: redis.asyncio.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self.proto = Commands(config, worker_id)
        self.config = config
        self.keys = self.proto.keys
        self._owns_client = client is None
        self.client: redis.asyncio.Redis = client if client is not None else build_async_client(config.redis)
        self.scripts = AsyncScripts(self.client)
        self.transport = AsyncTransport(self.client, self.keys.stats)
        self._leases: dict[str, str] = {}  # task id -> lease token, for delete_task(task_id)
        self._synced: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncTaskQueue:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client this queue built (a client passed in stays open for its owner)."""
        if self._owns_client:
            await self.client.aclose()

    async def close(self) -> None:
        """Alias of :meth:`aclose`."""
        await self.aclose()

    # --- push ---------------------------------------------------------------------------
    async def push(self, task: Task, user_id: str | None = None) -> dict[str, Any]:
        """Queue one task for ``user_id`` (or the task's own / the current tenant's user)."""
        task, args = self.proto.prepare(task, user_id)
        with redis_errors("push"):
            stored = await self.transport.run(self.scripts.push, self.proto.push_args([args]))
        return push_outcome(task, stored)

    async def push_batch(self, tasks: Iterable[Task], user_id: str | None = None) -> dict[str, Any]:
        """Queue many tasks: one script call per ``queue.batch_size`` tasks, in one round trip.

        Every task is checked and encoded before anything is written."""
        batch = list(tasks)
        for task in batch:
            self.proto.check(task, user_id)
        # enable_pipeline_optimization=False: one script call per task (still one round trip)
        size = self.config.queue.batch_size if self.config.queue.enable_pipeline_optimization else 1
        groups = list(chunks(batch, size))
        calls: list[ScriptCall] = [(self.scripts.push, self.proto.push_args([self.proto.encode(t) for t in group]))
                                   for group in groups]
        with redis_errors("push_batch"):
            replies = await self.transport.run_scripts(calls)
        ids, duplicates = batch_outcome(groups, replies)
        return {"success": not duplicates, "pushed": len(ids), "task_ids": ids, "duplicates": duplicates}

    # --- pop ----------------------------------------------------------------------------
    async def _sync_steal_set(self, plan: PopPlan) -> None:
        """Mirror the worker's exact steal targets (from config) into its Redis SET once."""
        if not plan.steal_set_key or plan.worker_id in self._synced:
            return
        if text(await self.client.get(self.keys.steal_digest(plan.worker_id)) or b"") != plan.steal_digest:
            await self.transport.execute(self.proto.steal_set_commands(plan), transaction=True)
        self._synced.add(plan.worker_id)

    async def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """Lease the next task fairly for a worker, or return None when nothing is ready."""
        return (await self.pop_reply(worker_id, lease_seconds=lease_seconds))[0]

    async def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                  ) -> tuple[Task | None, float | None]:
        """Like :meth:`pop`; also returns seconds until the next delayed task / lease is due."""
        tasks, due = await self.pop_many_reply(1, worker_id, lease_seconds=lease_seconds)
        return (tasks[0] if tasks else None), due

    async def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                 ) -> list[Task]:
        """Lease up to ``count`` tasks in one call, each chosen as fairly as :meth:`pop` would."""
        return (await self.pop_many_reply(count, worker_id, lease_seconds=lease_seconds))[0]

    async def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> tuple[list[Task], float | None]:
        """Like :meth:`pop_many`; also returns seconds until the next delayed task / lease is due
        (when nothing is ready)."""
        while True:
            step = await self.pop_step(worker_id, count=count, lease_seconds=lease_seconds)
            if not step.again:
                return step.tasks, step.due

    async def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                 park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """One call of ``pop.lua``, the step every pop is made of (public for tests and tools).

        ``park_ms``: a slot about to wait parks for that long when nothing is ready, so that a
        push may lease it a task on its hand list (:meth:`take_handed`); ``unpark``: the token of
        that park, its wait being over (``handed_over`` in the answer: it was no longer parked)."""
        plan = self.proto.plan(worker_id)
        with redis_errors("pop"):
            await self._sync_steal_set(plan)
            args, token = self.proto.pop_args(plan, lease_seconds, count, park_ms=park_ms, unpark=unpark)
            reply = PopReply.parse(await self.transport.run(self.scripts.pop, args))
        return await self._leased(reply, token, plan)

    async def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """The task a push leased to the parked slot ``token`` (taken from its hand list), if any."""
        plan = self.proto.plan(worker_id)
        with redis_errors("take_handed"):
            item: Any = await self.client.lpop(self.keys.hand(token))
        if item is None or text(item) == "-":
            return PopStep([], None, token)
        return await self._leased(PopReply.handed(item), token, plan)

    async def _leased(self, reply: PopReply, token: str, plan: PopPlan) -> PopStep:
        """The step of a pop reply; corrupt tasks are dead-lettered."""
        tasks, corrupt = self.proto.read_pop(reply, token, plan.worker_id)
        for task_id, why in corrupt:
            await self._fail_raw(task_id, token, why, "CorruptTaskError", "", "corrupt", dead=True)
        for task in tasks:
            self._leases[task.task_id] = token
        return PopStep(tasks, reply.due, token, handed_over=not reply.served, corrupt=len(corrupt))

    async def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                         worker_id: str | None = None, lease_seconds: float | None = None,
                         ) -> tuple[int, Task | None, float | None]:
        """Acknowledge ``task`` (storing ``result_json`` if given) and lease the next task, in one
        round trip. Returns (ack code: 1 done / 0 lease lost / -1 gone, next task, seconds due)."""
        codes, tasks, due = await self.complete_and_pop_many([(task, duration, result_json)], 1, worker_id=worker_id,
                                                       lease_seconds=lease_seconds)
        return codes[0], (tasks[0] if tasks else None), due

    async def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, lease_seconds: float | None = None,
                              ) -> tuple[list[int], list[Task], float | None]:
        """Acknowledge finished tasks, given as (task, run time, result JSON or None), and lease up
        to ``count`` more (none when ``count`` is 0), in one round trip. Returns (an ack code per
        task: 1 done / 0 lease lost / -1 gone, the tasks leased, seconds until something is due
        when none was ready)."""
        plan = self.proto.plan(worker_id)
        with redis_errors("complete_and_pop"):
            await self._sync_steal_set(plan)
            pop_args, token = self.proto.pop_args(plan, lease_seconds, count)
            calls: list[ScriptCall] = [(self.scripts.complete, self.proto.complete_args(
                (t.task_id, t.lease_token or "", d) for t, d, _ in done))]
            if count > 0:
                calls.append((self.scripts.pop, pop_args))
            results = [self.proto.result_command(t, data) for t, _, data in done if data is not None]
            replies = await self.transport.run_scripts(calls, results)
        for task, _, _ in done:
            self._leases.pop(task.task_id, None)
        codes = [int(code) for code in replies[0]]
        if count <= 0:
            return codes, [], None
        step = await self._leased(PopReply.parse(replies[1]), token, plan)
        if step.again:
            tasks, due = await self.pop_many_reply(count, worker_id, lease_seconds=lease_seconds)
            return codes, tasks, due
        return codes, step.tasks, step.due

    async def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                     lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """Lease a ready task, or wait up to ``timeout`` for one: all in one round trip.

        A worker with its own partition parks while it waits, and a push that finds nothing
        else ready in the partition leases its task to the parked slot directly (the wait
        returns that task, no pop needed). Otherwise a push's wake-up ends the wait and Redis
        runs the pop at once."""
        plan = self.proto.plan(worker_id)
        keys = [self.keys.wake(p) for p in plan.wake_partitions]
        if not keys:
            await asyncio.sleep(max(timeout, 0.0))
            return await self.pop_reply(worker_id, lease_seconds=lease_seconds)
        with redis_errors("wait_and_pop"):
            await self._sync_steal_set(plan)
            step = await self._park_and_pop(plan, keys, max(timeout, 0.001), lease_seconds)
        if step is None or step.again:
            return await self.pop_reply(worker_id, lease_seconds=lease_seconds)
        return (step.tasks[0] if step.tasks else None), step.due

    async def _park_and_pop(self, plan: PopPlan, keys: list[str], wait: float, lease_seconds: float | None,
                      ) -> PopStep | None:
        """Pop, or park and wait on the slot's hand list and the wake lists (one round trip). A task
        handed over ends it; after a wake-up or a timeout the slot unparks and pops (a second round
        trip, off the hand-off's path). None: Redis had lost its scripts (nothing parked)."""
        park, token = self.proto.pop_args(plan, lease_seconds, park_ms=int(wait * 1000) + PARK_MARGIN_MS)
        hand = self.keys.hand(token)
        first, woke = await self.transport.round_trip([evalsha(self.scripts.pop, self.keys.stats, park),
                                                 ["BLPOP", hand, *keys, f"{wait:.3f}"]])
        if isinstance(first, redis.exceptions.NoScriptError):
            return None
        for reply in (first, woke):
            if isinstance(reply, Exception):
                raise reply
        popped = PopReply.parse(first)
        if woke is not None and text(woke[0]) == hand:
            # '-': the first pop leased what was ready; anything else: a push handed a task over
            return await self._leased(popped if text(woke[1]) == "-" else PopReply.handed(woke[1]), token, plan)
        await self._leased(popped, token, plan)  # nothing leased: logs what the first pop set aside
        step = await self.pop_step(plan.worker_id, lease_seconds=lease_seconds, unpark=token)
        if not step.handed_over:
            return step
        handed = await self.take_handed(token, plan.worker_id)  # a push leased us a task as the wait ended
        return handed if handed.tasks or handed.corrupt else None

    async def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Block until a push may have made work ready for the worker (or ``timeout``)."""
        plan = self.proto.plan(worker_id)
        keys = [self.keys.wake(p) for p in plan.wake_partitions]
        if not keys or timeout <= 0:
            return False
        with redis_errors("wait_for_work"):
            return await self.client.blpop(keys, timeout=max(timeout, 0.001)) is not None

    # --- finishing ----------------------------------------------------------------------
    async def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Acknowledge a popped task as done. Raises LeaseLostError on a late ack."""
        if await self.complete_code(task, duration=duration) == 0:
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")

    async def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """Acknowledge a popped task: 1 done, 0 lease lost (late ack rejected), -1 no such task."""
        return await self._complete(task.task_id, task.lease_token or "", duration)

    async def _complete(self, task_id: str, token: str, duration: float | None) -> int:
        with redis_errors("complete"):
            args = self.proto.complete_args([(task_id, token, duration)])
            code = int((await self.transport.run(self.scripts.complete, args))[0])
        self._leases.pop(task_id, None)
        return code

    async def delete_task(self, task_id: str) -> bool:
        """Finish a task: an ack when this queue leased it (rejected if the lease was lost),
        otherwise remove the task wherever it is. Returns True when something was done."""
        token = self._leases.get(task_id)
        if token is None:
            return bool(await self.delete(task_id))
        code = await self._complete(task_id, token, None)
        if code == 0:
            logger.warning("fairque: late ack for task %s rejected: its lease was taken over", task_id)
        return code == 1

    async def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
             failure_type: str = "error", retry: bool = True) -> str:
        """Record a failed attempt: returns ``"retry"`` (scheduled after backoff) or ``"dead"``."""
        message, etype = self.proto.error_fields(error)
        result = await self._fail_raw(task.task_id, task.lease_token or "", message, etype, traceback,
                                failure_type, dead=not retry, retry_count=task.retry_count)
        if result == "lost":
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")
        return result

    async def _fail_raw(self, task_id: str, token: str, message: str, etype: str, tb: str, ftype: str, *,
                  dead: bool, retry_count: int = 0) -> str:
        with redis_errors("fail"):
            args = self.proto.fail_args(task_id, token, retry_count, dead, message, etype, tb, ftype)
            reply = await self.transport.run(self.scripts.fail, args)
        self._leases.pop(task_id, None)
        return self.proto.fail_outcome(reply)

    async def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Hand leased tasks back to the front of their queue without counting a failure."""
        if not tasks:
            return 0
        for t in tasks:
            self._leases.pop(t.task_id, None)
        with redis_errors("release"):
            return int(await self.transport.run(self.scripts.release, self.proto.release_args(tasks, count)))

    async def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Heartbeat: renew the leases of running tasks; returns the ids whose lease was lost."""
        if not tasks:
            return []
        with redis_errors("extend"):
            reply = await self.transport.run(self.scripts.extend, self.proto.extend_args(tasks, lease_seconds))
        return [text(x) for x in reply]

    async def delete(self, *task_ids: str) -> list[str]:
        """Remove tasks wherever they are (queued, delayed, leased or dead)."""
        if not task_ids:
            return []
        with redis_errors("delete"):
            return [text(x) for x in await self.transport.run(self.scripts.delete, self.proto.dlq_args(task_ids))]

    # --- dead-letter queue ----------------------------------------------------------------
    async def dlq_size(self) -> int:
        with redis_errors("dlq_size"):
            return int(await self.client.zcard(self.keys.dlq))

    async def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """Dead tasks with their error, traceback, attempts, user and time of death."""
        with redis_errors("get_dlq"):
            page = await self.transport.execute([self.proto.dlq_range_command(offset, limit, newest_first)])
            ids = [text(i) for i in page[0]]
            rows = await self.transport.execute([["HGETALL", self.keys.task(i)] for i in ids], raise_on_error=False)
        return self.proto.decode_dlq(ids, rows)

    async def get_dead(self, task_id: str) -> DLQEntry | None:
        with redis_errors("get_dead"):
            score, row = await self.transport.execute([["ZSCORE", self.keys.dlq, task_id],
                                                 ["HGETALL", self.keys.task(task_id)]])
        return self.proto.decode_dead(task_id, row) if score is not None and row else None

    async def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead tasks back to their queues (all of them when ``task_ids`` is None)."""
        return await self._dlq_script(self.scripts.requeue_dead, task_ids)

    async def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Delete dead tasks (all of them, i.e. purge, when ``task_ids`` is None)."""
        return await self._dlq_script(self.scripts.delete, task_ids)

    async def purge_dlq(self) -> int:
        return len(await self.delete_dead(None))

    async def _dlq_script(self, script: Any, task_ids: Iterable[str] | None) -> list[str]:
        done: list[str] = []
        with redis_errors("dlq"):
            if task_ids is None:  # 1000 per call until none is left
                while batch := [text(x) for x in await self.transport.run(script, self.proto.dlq_args(None))]:
                    done += batch
                return done
            ids = list(task_ids)
            # only dead tasks: never touch live ones through the DLQ API
            dead = dead_ids(ids, await self.client.zmscore(self.keys.dlq, ids)) if ids else []
            if dead:
                done = [text(x) for x in await self.transport.run(script, self.proto.dlq_args(dead))]
        return done

    # --- inspection -----------------------------------------------------------------------
    async def get_stats(self) -> dict[str, Any]:
        """Counters, gauges (``tasks_active`` = leased now) and per-user / per-priority counts."""
        with redis_errors("get_stats"):
            raw, active, delayed, dlq = await self.transport.execute(self.proto.stats_commands())
        return self.proto.parse_stats(raw, int(active), int(delayed), int(dlq))

    async def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """The state of a task as text (``st``: queued, delayed, leased or dead; the fields of
        its hash, header unpacked), or None."""
        with redis_errors("get_task_state"):
            row = await self.client.hgetall(self.keys.task(task_id))
        return task_fields(row) if row else None

    async def user_depth(self, user_id: str) -> dict[str, int]:
        """Ready tasks of one user, by lane."""
        with redis_errors("user_depth"):
            return read_depth(await self.transport.execute(self.proto.depth_commands(user_id)))

    # --- results ----------------------------------------------------------------------------
    async def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Keep a task's outcome (JSON) for ``queue.result_ttl_seconds`` under its user's scope."""
        await self.store_result_json(task, dumps(record, what=f"result of task {task.task_id}"))

    async def store_result_json(self, task: Task, data: str) -> None:
        """Keep an outcome already encoded as JSON (see :meth:`store_result`)."""
        with redis_errors("store_result"):
            await self.transport.execute([self.proto.result_command(task, data)])

    async def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """The stored outcome of ``task_id`` for ``user_id`` (never another user's), or None."""
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        with redis_errors("get_result"):
            raw = await self.client.get(self.keys.result(user_id, task_id))
        return None if raw is None else dict(json.loads(raw))

    async def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """The status and outcome of ``task_id`` as ``user_id`` may see it (one round trip)."""
        task_key, result_key = self.proto.result_keys(task_id, user_id)
        with redis_errors("read_result"):
            row, raw = await self.transport.execute([["HGETALL", task_key], ["GET", result_key]])
        return ResultSnapshot.read(user_id, task_fields(row) if row else None, raw)

    async def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """The handle of ``task_id`` for ``user_id``, read now; :class:`TaskNotFoundError` when
        nothing is known of it for that user."""
        return await TaskResult(task_id, user_id, self).arefresh()

    async def next_delayed_seconds(self) -> float | None:
        """Seconds until the earliest delayed task (scheduled or retry) is due, or None."""
        with redis_errors("next_delayed_seconds"):
            first = await self.client.zrange(self.keys.delayed, 0, 0, withscores=True)
            if not first:
                return None
            sec, usec = await self.client.time()  # the server's clock
        return max(0.0, float(first[0][1]) / 1000.0 - (float(sec) + float(usec) / 1e6))
