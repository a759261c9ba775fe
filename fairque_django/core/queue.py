"""The synchronous :class:`TaskQueue`: push, fair pop with leases, ack, fail, DLQ and stats."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import redis

from .config import FairQueueConfig
from .connection import get_client
from .exceptions import FairQueueError, LeaseLostError, RedisUnavailableError
from .held_connection import held_connection
from .keys import validate_user_id
from .models import DLQEntry, Task
from .protocol import PopPlan, QueueProtocol, _text, chunks, stored_flags, task_fields
from .results import ResultSnapshot, TaskResult
from .scripts import Scripts

logger = logging.getLogger("fairque_django.queue")

# The layout of the stored tasks (2: priority, seq, partition, weight, max_retries packed in 'h').
LAYOUT_VERSION = "2"
# A waiting slot stays parked this much longer than its wait, so that it is still parked when its
# wait ends and it unparks (a park left behind by a stopped worker expires by itself).
PARK_MARGIN_MS = 2000


def _resp_args(args: Iterable[Any]) -> bytes:
    """Arguments (str, bytes, ints and floats) as RESP bulk strings."""
    parts: list[bytes] = []
    append = parts.append
    for value in args:
        kind = type(value)
        if kind is str:
            value = value.encode("utf-8")
        elif kind is not bytes:
            if isinstance(value, str):
                value = value.encode("utf-8")
            elif isinstance(value, (bytes, bytearray, memoryview)):
                value = bytes(value)
            else:
                value = str(value).encode("ascii")  # ints (and floats) as Redis expects them
        append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


_SCRIPT_HEADS: dict[tuple[Any, ...], bytes] = {}  # ("EVALSHA", sha, numkeys, key) -> packed


def resp_command(args: list[Any]) -> bytes:
    """One command in the Redis protocol (RESP) wire format. A script call's first four
    arguments (EVALSHA, sha, 1, key) are packed once and reused."""
    if args[0] == "EVALSHA" and len(args) >= 4:
        head_key = tuple(args[:4])
        head = _SCRIPT_HEADS.get(head_key)
        if head is None:
            head = _SCRIPT_HEADS[head_key] = _resp_args(head_key)
        return b"*%d\r\n" % len(args) + head + _resp_args(args[4:])
    return b"*%d\r\n" % len(args) + _resp_args(args)


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Turn redis-py errors into typed fairque errors."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailableError(f"{action} failed: Redis is unreachable ({exc})") from exc
    except redis.exceptions.RedisClusterException as exc:  # e.g. no node of the cluster answers
        raise RedisUnavailableError(f"{action} failed: the Redis cluster is unusable ({exc})") from exc
    except redis.ResponseError as exc:
        raise FairQueueError(f"{action} failed: Redis answered {exc}") from exc


class TaskQueue:
    """Fair multi-tenant task queue on Redis.

    ``TaskQueue(config)`` uses the process-wide client for ``config.redis`` (or ``client``).
    ``worker_id`` selects whose tasks :meth:`pop` leases (default: ``config.worker_id``).
    """

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self.proto = QueueProtocol(config, worker_id)
        self.config = config
        self.keys = self.proto.keys
        self.client: redis.Redis = client if client is not None else get_client(config.redis)
        self.scripts = Scripts(self.client)
        pool = getattr(self.client, "connection_pool", None)
        # hot paths use the pool's kept connection (see _round_trip); a cluster client has no such pool
        self._pool = pool if pool is not None and isinstance(self.client, redis.Redis) else None
        self._held = held_connection(pool) if self._pool is not None else None
        self._leases: dict[str, str] = {}  # task id -> lease token, for delete_task(task_id)
        self._synced: set[str] = set()
        self._context_token: Any = None

    # --- context manager ----------------------------------------------------------------
    def __enter__(self) -> TaskQueue:
        from .context import activate_queue

        self._context_token = activate_queue(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release this queue's resources (the shared client stays open for others)."""
        if self._context_token is not None:
            from .context import deactivate_queue

            deactivate_queue(self._context_token)
            self._context_token = None

    # --- push ---------------------------------------------------------------------------
    def push(self, task: Task, user_id: str | None = None) -> dict[str, Any]:
        """Queue one task for ``user_id`` (or the task's own / the current tenant's user)."""
        task, args = self.proto.prepare(task, user_id)
        with redis_errors("push"):
            stored = self._run_scripts([(self.scripts.push, [self.keys.base, 1, int(time.time() * 1000), *args])])[0]
        ok = stored_flags(stored)[0]
        return {"success": ok, "task_id": task.task_id, "user_id": task.user_id,
                "priority": int(task.priority), "duplicate": not ok,
                "state": "delayed" if task.execute_after else "queued"}

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
        calls: list[list[Any]] = []

        def commands() -> Iterator[list[Any]]:
            for group in groups:
                flat: list[Any] = [self.keys.base, len(group), int(time.time() * 1000)]
                for task in group:
                    flat += self.proto.encode(task)
                calls.append(flat)
                yield self._evalsha(self.scripts.push, flat)

        with redis_errors("push_batch"):
            replies, error = self._stream(commands())
            replies = self._rerun_unloaded([(self.scripts.push, args) for args in calls], replies)
        ids: list[str] = []
        duplicates: list[str] = []
        for group, reply in zip(groups, replies, strict=False):
            for task, ok in zip(group, stored_flags(reply), strict=True):
                (ids if ok else duplicates).append(task.task_id)
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
        digest = plan.steal_digest
        key, dkey = plan.steal_set_key, self.keys.steal_digest(plan.worker_id)
        if _text(self.client.get(dkey) or b"") != digest:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(key)
            for group in chunks(plan.steal_exact, 5000):
                pipe.sadd(key, *group)
            pipe.set(dkey, digest)
            pipe.execute()
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
        plan = self.proto.plan(worker_id)
        while True:
            with redis_errors("pop"):
                self._sync_steal_set(plan)
                args, token = self.proto.pop_args(plan, lease_seconds, count)
                reply = self._run_scripts([(self.scripts.pop, args)])[0]
            outcome = self._popped(reply, token, plan)
            if outcome is not None:
                return outcome

    def _popped(self, reply: Any, token: str, plan: PopPlan) -> tuple[list[Task], float | None] | None:
        """Decode a pop reply; corrupt tasks are dead-lettered, and None returned when nothing
        else came (pop again)."""
        tasks, due, corrupt = self.proto.read_pop_many(reply, token, plan.worker_id)
        for task_id, why in corrupt:
            self._fail_raw(task_id, token, why, "CorruptTaskError", "", "corrupt", dead=True)
        if corrupt and not tasks:
            return None
        for task in tasks:
            self._leases[task.task_id] = token
        return tasks, due

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
            complete_args = self.proto.complete_args((t.task_id, t.lease_token or "", d) for t, d, _ in done)
            results = [["SET", self.keys.result(task.user_id or "", task.task_id), result_json,
                        "EX", self.config.queue.result_ttl_seconds]
                       for task, _, result_json in done if result_json is not None]
            calls: list[tuple[Any, list[Any]]] = [(self.scripts.complete, complete_args)]
            if count > 0:
                calls.append((self.scripts.pop, pop_args))
            replies = self._run_scripts(calls, results)
        for task, _, _ in done:
            self._leases.pop(task.task_id, None)
        codes = replies[0]
        if count <= 0:
            return [int(code) for code in codes], [], None
        popped = self._popped(replies[1], token, plan)
        if popped is None:
            popped = self.pop_many_reply(count, worker_id, lease_seconds=lease_seconds)
        return [int(code) for code in codes], popped[0], popped[1]

    # --- finishing ----------------------------------------------------------------------
    def _evalsha(self, script: Any, args: list[Any]) -> list[Any]:
        """The command that runs ``script`` (routed by the stats key) with ``args``."""
        return ["EVALSHA", script.sha, 1, self.keys.stats, *args]

    def _run_scripts(self, calls: Sequence[tuple[Any, list[Any]]], before: Sequence[list[Any]] = ()) -> list[Any]:
        """Run scripts (each with its arguments) after plain ``before`` commands, in one round
        trip; returns the scripts' replies. A script Redis lost (NOSCRIPT) is loaded and run."""
        commands = [*before, *(self._evalsha(script, args) for script, args in calls)]
        return self._rerun_unloaded(calls, self._round_trip(commands)[len(before):])

    def _rerun_unloaded(self, calls: Sequence[tuple[Any, list[Any]]], replies: list[Any]) -> list[Any]:
        """The replies of script ``calls``, with a call Redis refused for lack of its script
        (NOSCRIPT) loaded and run now; any other error reply is raised."""
        for i, (reply, (script, args)) in enumerate(zip(replies, calls, strict=True)):
            if isinstance(reply, redis.exceptions.NoScriptError):
                replies[i] = script(keys=[self.keys.stats], args=args)  # loads it, runs it once
            elif isinstance(reply, Exception):
                raise reply
        return replies

    def _stream(self, commands: Iterator[list[Any]]) -> tuple[list[Any], FairQueueError | None]:
        """Send each command as soon as ``commands`` yields it (Redis runs it while the next one is
        built), then read every reply. Should building a command fail with a FairQueueError, the
        replies of those sent are read all the same and returned with that error."""
        error: FairQueueError | None = None

        def guarded() -> Iterator[list[Any]]:
            nonlocal error
            try:
                yield from commands
            except FairQueueError as exc:
                error = exc

        return self._round_trip(guarded(), stream=True), error

    def _round_trip(self, commands: Iterable[list[Any]], *, stream: bool = False) -> list[Any]:
        """Send commands in one round trip; error replies are returned, not raised.

        The hot paths: packing arguments here costs a fraction of a redis-py pipeline, and the
        pool's held connection saves taking one from the pool. With ``stream`` each command is
        sent as soon as it is encoded (large batches). Clients without a plain connection pool
        (e.g. a cluster) use a pipeline."""
        if self._held is None or self._pool is None:
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute(raise_on_error=False))
        conn, held = self._held.take(self._pool)
        try:
            sent = 0
            if stream:
                for command in commands:
                    conn.send_packed_command([resp_command(command)])
                    sent += 1
            else:
                packed = [resp_command(c) for c in commands]
                conn.send_packed_command([b"".join(packed)])
                sent = len(packed)
            replies: list[Any] = []
            for _ in range(sent):
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:  # the reply was read in full: go on
                    replies.append(exc)
            return replies
        except BaseException:
            conn.disconnect()  # replies may be half-read: never reuse this connection
            raise
        finally:
            self._held.give(self._pool, conn, held)

    def complete(self, task: Task, *, duration: float | None = None) -> None:
        """Acknowledge a popped task as done. Raises LeaseLostError on a late ack."""
        code = self._complete(task.task_id, task.lease_token or "", duration)
        if code == 0:
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")

    def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """Acknowledge a popped task: 1 done, 0 lease lost (late ack rejected), -1 no such task."""
        return self._complete(task.task_id, task.lease_token or "", duration)

    def _complete(self, task_id: str, token: str, duration: float | None) -> int:
        with redis_errors("complete"):
            args = self.proto.complete_args([(task_id, token, duration)])
            code = int(self._run_scripts([(self.scripts.complete, args)])[0][0])
        self._leases.pop(task_id, None)
        return code

    def delete_task(self, task_id: str) -> bool:
        """Finish a task: an ack when this queue leased it (rejected if the lease was lost),
        otherwise remove the task wherever it is. Returns True when something was done."""
        token = self._leases.get(task_id)
        if token is not None:
            code = self._complete(task_id, token, None)
            if code == 0:
                logger.warning("fairque: late ack for task %s rejected: its lease was taken over", task_id)
            return code == 1
        return bool(self.delete(task_id))

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
            reply = self._run_scripts([(self.scripts.fail, args)])[0]
        self._leases.pop(task_id, None)
        return self.proto.fail_outcome(reply)

    def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """Hand leased tasks back to the front of their queue without counting a failure."""
        if not tasks:
            return 0
        args = self.proto.release_args(tasks, count)
        for t in tasks:
            self._leases.pop(t.task_id, None)
        with redis_errors("release"):
            return int(self._run_scripts([(self.scripts.release, args)])[0])

    def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """Heartbeat: renew the leases of running tasks; returns the ids whose lease was lost."""
        if not tasks:
            return []
        args = self.proto.extend_args(tasks, lease_seconds)
        with redis_errors("extend"):
            return [_text(x) for x in self.scripts.extend(keys=[self.keys.stats], args=args)]

    def delete(self, *task_ids: str) -> list[str]:
        """Remove tasks wherever they are (queued, delayed, leased or dead)."""
        if not task_ids:
            return []
        with redis_errors("delete"):
            return [_text(x) for x in self.scripts.delete(keys=[self.keys.stats],
                                                          args=[self.keys.base, *task_ids])]

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_size(self) -> int:
        with redis_errors("dlq_size"):
            return int(self.client.zcard(self.keys.dlq))

    def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """Dead tasks with their error, traceback, attempts, user and time of death."""
        with redis_errors("get_dlq"):
            if newest_first:
                ids = self.client.zrevrange(self.keys.dlq, offset, offset + limit - 1)
            else:
                ids = self.client.zrange(self.keys.dlq, offset, offset + limit - 1)
            pipe = self.client.pipeline(transaction=False)
            for i in ids:
                pipe.hgetall(self.keys.task(_text(i)))
            rows = pipe.execute(raise_on_error=False)
        return [self.proto.decode_dead(_text(i), row) for i, row in zip(ids, rows, strict=True)
                if isinstance(row, dict) and row]

    def get_dead(self, task_id: str) -> DLQEntry | None:
        with redis_errors("get_dead"):
            if self.client.zscore(self.keys.dlq, task_id) is None:
                return None
            row = self.client.hgetall(self.keys.task(task_id))
        return self.proto.decode_dead(task_id, row) if row else None

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
            if task_ids is None:
                while True:
                    batch = [_text(x) for x in script(keys=[self.keys.stats], args=[self.keys.base, "*"])]
                    done += batch
                    if not batch:
                        return done
            ids = list(task_ids)
            if ids:
                # only dead tasks: never touch live ones through the DLQ API
                dead = [i for i, s in zip(ids, self._scores(self.keys.dlq, ids), strict=True) if s is not None]
                if dead:
                    done = [_text(x) for x in script(keys=[self.keys.stats], args=[self.keys.base, *dead])]
        return done

    def _scores(self, key: str, members: list[str]) -> list[float | None]:
        return list(self.client.zmscore(key, members))

    # --- inspection -----------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Counters, gauges (``tasks_active`` = leased now) and per-user / per-priority counts."""
        with redis_errors("get_stats"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.stats)
            pipe.zcard(self.keys.leases)
            pipe.zcard(self.keys.delayed)
            pipe.zcard(self.keys.dlq)
            raw, active, delayed, dlq = pipe.execute()
        return self.proto.parse_stats(raw, int(active), int(delayed), int(dlq))

    def upgrade_layout(self) -> int:
        """Bring task hashes stored by an earlier version to the current layout, once per prefix
        (workers call this when they start). Returns the number of task hashes changed."""
        with redis_errors("upgrade_layout"):
            if _text(self.client.get(self.keys.layout) or b"") == LAYOUT_VERSION:
                return 0
            changed = 0
            batch: list[Any] = []
            for key in self.client.scan_iter(match=f"{self.keys.base}:t:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    changed += int(self._run_scripts([(self.scripts.migrate, [self.keys.base, *batch])])[0])
                    batch.clear()
            if batch:
                changed += int(self._run_scripts([(self.scripts.migrate, [self.keys.base, *batch])])[0])
            self.client.set(self.keys.layout, LAYOUT_VERSION)
        if changed:
            logger.info("fairque: %d task(s) stored by an earlier version were brought to layout %s", changed,
                        LAYOUT_VERSION)
        return changed

    def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """The raw state of a task (``st``: queued, delayed, leased or dead), or None."""
        with redis_errors("get_task_state"):
            row = self.client.hgetall(self.keys.task(task_id))
        return task_fields(row) if row else None

    def user_depth(self, user_id: str) -> dict[str, int]:
        """Ready tasks of one user, by lane."""
        with redis_errors("user_depth"):
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.keys.critical(user_id))
            pipe.zcard(self.keys.normal(user_id))
            pipe.zscore(self.keys.live, user_id)
            crit, normal, live = pipe.execute()
        return {"critical": int(crit), "normal": int(normal), "live": int(live or 0)}

    # --- results ----------------------------------------------------------------------------
    def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """Keep a task's outcome (JSON) for ``queue.result_ttl_seconds`` under its user's scope."""
        from .models import dumps

        self.store_result_json(task, dumps(record, what=f"result of task {task.task_id}"))

    def store_result_json(self, task: Task, data: str) -> None:
        with redis_errors("store_result"):
            self.client.set(self.keys.result(task.user_id or "", task.task_id), data,
                            ex=self.config.queue.result_ttl_seconds)

    def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """The stored outcome of ``task_id`` for ``user_id`` (never another user's), or None."""
        import json

        validate_user_id(user_id, self.config.queue.max_user_id_length)
        with redis_errors("get_result"):
            raw = self.client.get(self.keys.result(user_id, task_id))
        return None if raw is None else dict(json.loads(raw))

    def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """The status and outcome of ``task_id`` as ``user_id`` may see it (one round trip)."""
        task_key, result_key = self.proto.result_keys(task_id, user_id)
        with redis_errors("read_result"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(task_key)
            pipe.get(result_key)
            row, raw = pipe.execute()
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
        now = float(sec) + float(usec) / 1e6
        return max(0.0, float(first[0][1]) / 1000.0 - now)

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
            popped = self._park_and_pop(plan, keys, max(timeout, 0.001), lease_seconds)
        if popped is None:
            return self.pop_reply(worker_id, lease_seconds=lease_seconds)
        return (popped[0][0] if popped[0] else None), popped[1]

    def _park_and_pop(self, plan: PopPlan, keys: list[str], wait: float, lease_seconds: float | None,
                      ) -> tuple[list[Task], float | None] | None:
        """Pop, or park and wait on the slot's hand list and the wake lists (one round trip). A task
        handed over ends it; after a wake-up or a timeout the slot unparks and pops (a second round
        trip, off the hand-off's path). Returns what :meth:`_popped` returns (None: pop again)."""
        park, token = self.proto.pop_args(plan, lease_seconds, park_ms=int(wait * 1000) + PARK_MARGIN_MS)
        hand = self.keys.hand(token)
        first, woke = self._round_trip([self._evalsha(self.scripts.pop, park),
                                        ["BLPOP", hand, *keys, f"{wait:.3f}"]])
        if isinstance(first, redis.exceptions.NoScriptError):
            return None  # Redis lost its scripts: nothing parked; the pop loads them
        for reply in (first, woke):
            if isinstance(reply, Exception):
                raise reply
        if not first[0] and self.proto.problems(first):
            self._popped(first, token, plan)  # log what the first pop set aside
        if woke is not None and _text(woke[0]) == hand:
            if _text(woke[1]) != "-":
                return self._popped(self.proto.handed_reply(woke[1]), token, plan)
            # '-': the first pop leased what was ready (None if only corrupt tasks: pop again)
            return self._popped(first, token, plan)
        unpark, _ = self.proto.pop_args(plan, lease_seconds, unpark=token)
        last = self._run_scripts([(self.scripts.pop, unpark)])[0]
        if last[0] is None and int(last[1]) == -2:  # a push leased us a task as the wait ended
            item: Any = self.client.lpop(hand)
            return self._popped(self.proto.handed_reply(item), token, plan) if item else None
        return self._popped(last, token, plan)

    def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """Block until a push may have made work ready for the worker (or ``timeout``)."""
        plan = self.proto.plan(worker_id)
        keys = [self.keys.wake(p) for p in plan.wake_partitions]
        if not keys or timeout <= 0:
            return False
        with redis_errors("wait_for_work"):
            return self.client.blpop(keys, timeout=max(timeout, 0.001)) is not None
