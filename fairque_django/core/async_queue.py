"""The asyncio :class:`AsyncTaskQueue`: the operations of :class:`~.queue.TaskQueue` as coroutines.

It runs the same Lua scripts on the same keys as the synchronous queue, so both can serve one
Redis: a task pushed by one can be popped, acked or failed by the other. Argument building and
reply decoding live in :class:`~.protocol.QueueProtocol`; this module only does the I/O.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from .config import FairQueueConfig, RedisConfig
from .exceptions import LeaseLostError
from .keys import validate_user_id
from .models import DLQEntry, Task, dumps
from .protocol import PopPlan, QueueProtocol, _text, chunks, stored_flags, task_fields
from .queue import redis_errors
from .results import ResultSnapshot, TaskResult
from .scripts import AsyncScripts

logger = logging.getLogger("fairque_django.queue")

__all__ = ["AsyncTaskQueue", "build_async_client"]


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
        self.proto = QueueProtocol(config, worker_id)
        self.config = config
        self.keys = self.proto.keys
        self._owns_client = client is None
        self.client: redis.asyncio.Redis = client if client is not None else build_async_client(config.redis)
        self.scripts = AsyncScripts(self.client)
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

    # --- push -----------------------------------------------------------------------------
    async def push(self, task: Task, user_id: str | None = None) -> dict[str, Any]:
        """Queue one task for ``user_id`` (or the task's own / the current tenant's user)."""
        task, args = self.proto.prepare(task, user_id)
        with redis_errors("push"):
            stored = await self.scripts.push(keys=[self.keys.stats],
                                             args=[self.keys.base, 1, int(time.time() * 1000), *args])
        ok = stored_flags(stored)[0]
        return {"success": ok, "task_id": task.task_id, "user_id": task.user_id,
                "priority": int(task.priority), "duplicate": not ok,
                "state": "delayed" if task.execute_after else "queued"}

    async def push_batch(self, tasks: Iterable[Task], user_id: str | None = None) -> dict[str, Any]:
        """Queue many tasks: one script call per ``queue.batch_size`` tasks, pipelined."""
        prepared = [self.proto.prepare(t, user_id) for t in tasks]  # validate all before writing any
        ids: list[str] = []
        duplicates: list[str] = []
        size = self.config.queue.batch_size if self.config.queue.enable_pipeline_optimization else 1
        groups = list(chunks(prepared, size))
        if not groups:
            return {"success": True, "pushed": 0, "task_ids": ids, "duplicates": duplicates}
        with redis_errors("push_batch"):
            pipe = self.client.pipeline(transaction=False)
            for group in groups:
                flat: list[Any] = [self.keys.base, len(group), int(time.time() * 1000)]
                for _, args in group:
                    flat.extend(args)
                await self.scripts.push(keys=[self.keys.stats], args=flat, client=pipe)
            replies = await pipe.execute()
        for group, reply in zip(groups, replies, strict=True):
            for (task, _), ok in zip(group, stored_flags(reply), strict=True):
                (ids if ok else duplicates).append(task.task_id)
        return {"success": not duplicates, "pushed": len(ids), "task_ids": ids, "duplicates": duplicates}

    # --- pop ------------------------------------------------------------------------------
    async def _sync_steal_set(self, plan: PopPlan) -> None:
        """Mirror the worker's exact steal targets (from config) into its Redis SET once."""
        if not plan.steal_set_key or plan.worker_id in self._synced:
            return
        digest = plan.steal_digest
        key, dkey = plan.steal_set_key, self.keys.steal_digest(plan.worker_id)
        if _text(await self.client.get(dkey) or b"") != digest:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(key)
            for group in chunks(plan.steal_exact, 5000):
                pipe.sadd(key, *group)
            pipe.set(dkey, digest)
            await pipe.execute()
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

    async def pop_many_reply(self, count: int, worker_id: str | None = None, *,
                             lease_seconds: float | None = None) -> tuple[list[Task], float | None]:
        """Like :meth:`pop_many`; also returns seconds until the next delayed task / lease is due."""
        plan = self.proto.plan(worker_id)
        while True:
            with redis_errors("pop"):
                await self._sync_steal_set(plan)
                args, token = self.proto.pop_args(plan, lease_seconds, count)
                reply = await self.scripts.pop(keys=[self.keys.stats], args=args)
            tasks, due, corrupt = self.proto.read_pop_many(reply, token, plan.worker_id)
            for task_id, why in corrupt:
                await self._fail_raw(task_id, token, why, "CorruptTaskError", "", "corrupt", dead=True)
            if corrupt and not tasks:
                continue
            for task in tasks:
                self._leases[task.task_id] = token
            return tasks, due

    # --- finishing ------------------------------------------------------------------------
    async def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Acknowledge a popped task as done. Raises LeaseLostError on a late ack."""
        code = await self._complete(task.task_id, task.lease_token or "", duration)
        if code == 0:
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")

    async def _complete(self, task_id: str, token: str, duration: float | None) -> int:
        with redis_errors("complete"):
            codes = await self.scripts.complete(keys=[self.keys.stats],
                                                args=self.proto.complete_args([(task_id, token, duration)]))
            code = int(codes[0])
        self._leases.pop(task_id, None)
        return code

    async def delete_task(self, task_id: str) -> bool:
        """Finish a task: an ack when this queue leased it (rejected if the lease was lost),
        otherwise remove the task wherever it is. Returns True when something was done."""
        token = self._leases.get(task_id)
        if token is not None:
            code = await self._complete(task_id, token, None)
            if code == 0:
                logger.warning("fairque: late ack for task %s rejected: its lease was taken over", task_id)
            return code == 1
        return bool(await self.delete(task_id))

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
            reply = await self.scripts.fail(keys=[self.keys.stats], args=args)
        self._leases.pop(task_id, None)
        return self.proto.fail_outcome(reply)

    async def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Hand leased tasks back to the front of their queue without counting a failure."""
        if not tasks:
            return 0
        args = self.proto.release_args(tasks, count)
        for t in tasks:
            self._leases.pop(t.task_id, None)
        with redis_errors("release"):
            return int(await self.scripts.release(keys=[self.keys.stats], args=args))

    async def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Heartbeat: renew the leases of running tasks; returns the ids whose lease was lost."""
        if not tasks:
            return []
        args = self.proto.extend_args(tasks, lease_seconds)
        with redis_errors("extend"):
            return [_text(x) for x in await self.scripts.extend(keys=[self.keys.stats], args=args)]

    async def delete(self, *task_ids: str) -> list[str]:
        """Remove tasks wherever they are (queued, delayed, leased or dead)."""
        if not task_ids:
            return []
        with redis_errors("delete"):
            reply = await self.scripts.delete(keys=[self.keys.stats], args=[self.keys.base, *task_ids])
        return [_text(x) for x in reply]

    # --- dead-letter queue ----------------------------------------------------------------
    async def dlq_size(self) -> int:
        with redis_errors("dlq_size"):
            return int(await self.client.zcard(self.keys.dlq))

    async def get_dlq(self, offset: int = 0, limit: int = 100, *,
                      newest_first: bool = True) -> list[DLQEntry]:
        """Dead tasks with their error, traceback, attempts, user and time of death."""
        with redis_errors("get_dlq"):
            if newest_first:
                ids = await self.client.zrevrange(self.keys.dlq, offset, offset + limit - 1)
            else:
                ids = await self.client.zrange(self.keys.dlq, offset, offset + limit - 1)
            if not ids:
                return []
            pipe = self.client.pipeline(transaction=False)
            for i in ids:
                pipe.hgetall(self.keys.task(_text(i)))
            rows = await pipe.execute(raise_on_error=False)
        return [self.proto.decode_dead(_text(i), row) for i, row in zip(ids, rows, strict=True)
                if isinstance(row, dict) and row]

    async def get_dead(self, task_id: str) -> DLQEntry | None:
        with redis_errors("get_dead"):
            if await self.client.zscore(self.keys.dlq, task_id) is None:
                return None
            row = await self.client.hgetall(self.keys.task(task_id))
        return self.proto.decode_dead(task_id, row) if row else None

    async def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead tasks back to their queues (all of them when ``task_ids`` is None)."""
        return await self._dlq_script(self.scripts.requeue_dead, task_ids)

    async def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """Delete dead tasks (all of them, i.e. purge, when ``task_ids`` is None)."""
        return await self._dlq_script(self.scripts.delete, task_ids)

    async def purge_dlq(self) -> int:
        return len(await self.delete_dead(None))

    async def _dlq_script(self, script: AsyncScript, task_ids: Iterable[str] | None) -> list[str]:
        done: list[str] = []
        with redis_errors("dlq"):
            if task_ids is None:
                while True:
                    reply = await script(keys=[self.keys.stats], args=[self.keys.base, "*"])
                    batch = [_text(x) for x in reply]
                    done += batch
                    if not batch:
                        return done
            ids = list(task_ids)
            if ids:
                # only dead tasks: never touch live ones through the DLQ API
                scores = await self.client.zmscore(self.keys.dlq, ids)
                dead = [i for i, s in zip(ids, scores, strict=True) if s is not None]
                if dead:
                    done = [_text(x) for x in await script(keys=[self.keys.stats],
                                                           args=[self.keys.base, *dead])]
        return done

    # --- inspection -----------------------------------------------------------------------
    async def get_stats(self) -> dict[str, Any]:
        """Counters, gauges (``tasks_active`` = leased now) and per-user / per-priority counts."""
        with redis_errors("get_stats"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.stats)
            pipe.zcard(self.keys.leases)
            pipe.zcard(self.keys.delayed)
            pipe.zcard(self.keys.dlq)
            raw, active, delayed, dlq = await pipe.execute()
        return self.proto.parse_stats(raw, int(active), int(delayed), int(dlq))

    async def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """The raw state of a task (``st``: queued, delayed, leased or dead), or None."""
        with redis_errors("get_task_state"):
            row = await self.client.hgetall(self.keys.task(task_id))
        return task_fields(row) if row else None

    async def user_depth(self, user_id: str) -> dict[str, int]:
        """Ready tasks of one user, by lane."""
        with redis_errors("user_depth"):
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.keys.critical(user_id))
            pipe.zcard(self.keys.normal(user_id))
            pipe.zscore(self.keys.live, user_id)
            crit, normal, live = await pipe.execute()
        return {"critical": int(crit), "normal": int(normal), "live": int(live or 0)}

    async def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Keep a task's outcome (JSON) for ``queue.result_ttl_seconds`` under its user's scope."""
        await self.store_result_json(task, dumps(record, what=f"result of task {task.task_id}"))

    async def store_result_json(self, task: Task, data: str) -> None:
        """Keep an outcome already encoded as JSON (see :meth:`store_result`)."""
        with redis_errors("store_result"):
            await self.client.set(self.keys.result(task.user_id or "", task.task_id), data,
                                  ex=self.config.queue.result_ttl_seconds)

    async def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """The status and outcome of ``task_id`` as ``user_id`` may see it (one round trip)."""
        task_key, result_key = self.proto.result_keys(task_id, user_id)
        with redis_errors("read_result"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(task_key)
            pipe.get(result_key)
            row, raw = await pipe.execute()
        return ResultSnapshot.read(user_id, task_fields(row) if row else None, raw)

    async def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """The handle of ``task_id`` for ``user_id``, read now; :class:`TaskNotFoundError` when
        nothing is known of it for that user."""
        return await TaskResult(task_id, user_id, self).arefresh()

    async def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """The stored outcome record of ``task_id`` for ``user_id`` (never another user's), or None."""
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        with redis_errors("get_result"):
            raw = await self.client.get(self.keys.result(user_id, task_id))
        return None if raw is None else dict(json.loads(raw))

    async def next_delayed_seconds(self) -> float | None:
        """Seconds until the earliest delayed task (scheduled or retry) is due, or None."""
        with redis_errors("next_delayed_seconds"):
            first = await self.client.zrange(self.keys.delayed, 0, 0, withscores=True)
            sec, usec = await self.client.time()
        if not first:
            return None
        return max(0.0, float(first[0][1]) / 1000.0 - (float(sec) + float(usec) / 1e6))

    async def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Wait until a push may have made work ready for the worker (or ``timeout``)."""
        plan = self.proto.plan(worker_id)
        keys = [self.keys.wake(p) for p in plan.wake_partitions]
        if not keys or timeout <= 0:
            return False
        with redis_errors("wait_for_work"):
            return await self.client.blpop(keys, timeout=max(timeout, 0.001)) is not None
