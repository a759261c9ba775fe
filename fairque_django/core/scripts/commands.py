"""The arguments each script takes and the decoding of what it returns, shared by
:class:`~..queue.TaskQueue` and :class:`~..aio.AsyncTaskQueue`. No I/O happens here: one builder
(``*_args``) and one parser per script (see each script's KEYS/ARGV docblock in ``lua/``)."""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..codec import count, text
from ..config import POOL_PARTITION, FairQueueConfig, glob_to_lua_pattern, is_pattern
from ..config.limits import LimitSpec, effective_limits, limits_mirror
from ..context import current_user
from ..errors import (
    CorruptTaskError,
    DependencyError,
    PayloadTooLargeError,
    TaskValidationError,
    UnservedUserError,
)
from ..keys import Keys, validate_key_part, validate_user_id
from ..lanes import COUNT_READS, count_commands, counts_from
from ..models import DLQEntry, Priority, Task
from .pop import PopPlan, PopReply

logger = logging.getLogger("fairque_django.queue")

STAT_FIELDS = ("pushed", "popped", "completed", "failed", "retried", "dead", "expired", "requeued",
               "deleted", "released", "late_acks", "quarantined", "repaired", "orphan_served", "cancelled")

# The per-priority push counters; 'pushed' is their sum (push.lua keeps no separate total).
PRIORITY_PUSHED = tuple(f"p:{n}:pushed" for n in range(1, 7))


def stat_counters(fields: Sequence[str], values: Sequence[Any]) -> dict[str, int]:
    """Counters read from the stats hash (``fields`` include :data:`PRIORITY_PUSHED`), with the
    derived total ``pushed``; a field holding garbage reads as 0 (see :func:`stat_problems`)."""
    counters = {name: count(value) or 0 for name, value in zip(fields, values, strict=True)}
    counters["pushed"] = sum(counters.get(name, 0) for name in PRIORITY_PUSHED)
    return counters


def stat_problems(key: str, fields: Sequence[str], values: Sequence[Any]) -> list[str]:
    """The stats fields that hold no count (read as 0; the next increment repairs them), as
    problem lines for the reader to show."""
    return [f"{key} field {name}: {text(value)[:40]!r} is not a count; read as 0"
            for name, value in zip(fields, values, strict=True) if count(value) is None]


# A waiting slot stays parked this much longer than its wait, so that it is still parked when its
# wait ends and it unparks (a park left behind by a stopped worker expires by itself).
PARK_MARGIN_MS = 2000

HEADER_FIELDS = ("p", "s", "q", "w", "m")  # priority, seq, partition, weight, max_retries


def task_fields(row: dict[Any, Any]) -> dict[str, str]:
    """A task hash as text, its packed header ``h`` unpacked into p, s, q, w and m (``r`` failures
    and ``a`` attempts default to 0: the scripts write them only once they change)."""
    fields = {text(k): text(v) for k, v in row.items()}
    packed = fields.get("h", "").split("\t")
    if len(packed) == len(HEADER_FIELDS):
        fields.update(zip(HEADER_FIELDS, packed, strict=True))
    fields.setdefault("r", "0")
    fields.setdefault("a", "0")
    return fields


class Commands:
    """Argument building and reply decoding for one config (and worker); the drivers do the I/O."""

    def __init__(self, config: FairQueueConfig, worker_id: str | None = None, shard: int | None = None) -> None:
        self.config = config
        self.keys = Keys.of_shard(config.queue.stats_prefix, shard, config.queue.shards)
        # push.lua marks its reply when a user joined a rotation (core/sharded.py sets it on its shards)
        self.report_wakes = False
        self.worker_id = worker_id if worker_id is not None else config.worker_id
        if self.worker_id is not None:
            config.get_worker(self.worker_id)  # unknown id -> UnknownWorkerError
        self._plans: dict[str, PopPlan] = {}
        self._partitions: dict[str, str] = {}
        self._valid_users: set[str] = set()
        self._fairness = "time" if config.queue.fairness == "time" else "count"
        self.limits_digest, self._limits_fields = limits_mirror(config.queue.tenant_concurrency,
                                                                config.queue.tenant_limits)

    # --- push ------------------------------------------------------------------------
    def partition_of(self, user_id: str) -> str:
        """The partition a user's tasks are served from; raises if no worker could ever serve it."""
        if not self.config.workers:
            return POOL_PARTITION
        part = self._partitions.get(user_id)
        if part is None:
            part = self.config.partition_of(user_id)
            if part == POOL_PARTITION and not any(w.may_steal(user_id) for w in self.config.workers):
                raise UnservedUserError(
                    f"no worker is assigned user {user_id!r} or may steal its tasks, so they would never "
                    f"run: add it (or a pattern such as '*') to a worker's assigned_users or steal_targets"
                )
            if len(self._partitions) > 100_000:
                self._partitions.clear()
            self._partitions[user_id] = part
        return part

    def prepare(self, task: Task, user_id: str | None) -> tuple[Task, list[Any]]:
        """Validate ``task`` for ``user_id`` and return it with its 2 push arguments (header, body)."""
        self.check(task, user_id)
        return task, self.encode(task)

    def check(self, task: Task, user_id: str | None) -> None:
        """Validate ``task`` for ``user_id`` (which it takes), all but its encoding (see :meth:`encode`)."""
        if not isinstance(task, Task):
            raise TaskValidationError(f"expected a Task, got {type(task).__name__}")
        uid = user_id if user_id is not None else task.user_id
        if uid is None:

            uid = current_user()
        if uid is None or uid not in self._valid_users:
            uid = validate_user_id(uid, self.config.queue.max_user_id_length)
            if len(self._valid_users) > 100_000:
                self._valid_users.clear()
            self._valid_users.add(uid)
        validate_key_part(task.task_id, "task id")
        if task.user_id != uid:
            task.user_id = uid
        task.priority = Priority.coerce(task.priority)
        self.partition_of(uid)  # no worker would ever serve uid -> UnservedUserError
        if task.unique_key is not None or task.depends_on:
            self.check_options(task, uid)

    def check_options(self, task: Task, uid: str) -> None:
        """Validate a task's unique key and dependencies (a bare dependency id is ``uid``'s); a debounced
        task is due ``unique_for`` from now unless it says when."""
        if task.unique_key is not None:
            validate_key_part(task.unique_key, "unique key")
            if task.on_conflict == "debounce" and task.execute_after is None and task.unique_for:
                task.execute_after = time.time() + task.unique_for
        refs: list[tuple[str | None, str]] = []
        for user, dep_id in task.depends_on:
            validate_key_part(dep_id, "dependency id")
            if dep_id == task.task_id:
                raise TaskValidationError(f"task {dep_id} cannot depend on itself")
            owner = uid if user is None else validate_user_id(user, self.config.queue.max_user_id_length)
            if (owner, dep_id) not in refs:
                refs.append((owner, dep_id))
        task.depends_on = refs

    def push_options(self, task: Task) -> str:
        """The options argument of ``push.lua`` for a checked task ('' when it has none): unique key,
        conflict mode, key ttl ms, the byte length of its body's id prefix (0: none), allow failure, how long a
        cancelled task is kept (ms), then (user, id) of each dependency; tab-separated."""
        if task.unique_key is None and not task.depends_on:
            return ""
        uid = task.user_id or ""
        uk = self.keys.unique(uid, task.unique_key) if task.unique_key is not None else ""
        ttl = int(task.unique_for * 1000) if task.unique_for else 0
        if task.on_conflict == "debounce":  # the key outlives the quiet time: an enqueue while the task
            ttl *= 2                        # waits for a worker still finds it
        # plen 0: the body names no id (the compact format), so a replaced task takes it as it is
        fields = [uk, task.on_conflict, str(ttl), "0", "1" if task.allow_failure else "0",
                  str(int(self.config.queue.result_ttl_seconds * 1000))]
        for user, dep_id in task.depends_on:
            fields += [user or uid, dep_id]
        return "\t".join(fields)

    def encode(self, task: Task) -> list[Any]:
        """The push arguments (header, body) of a checked task; raises on a body that is not JSON or
        is larger than ``queue.max_payload_bytes``."""
        uid = task.user_id or ""
        body = task.to_json(ids=False).encode("utf-8")  # the key and field u hold them
        size = len(body)
        if size > self.config.queue.max_payload_bytes:
            raise PayloadTooLargeError(
                f"task {task.task_id} is {size} bytes encoded; the limit (queue.max_payload_bytes) is "
                f"{self.config.queue.max_payload_bytes}"
            )
        max_retries = task.max_retries if task.max_retries is not None else self.config.queue.default_max_retries
        after_ms = int(task.execute_after * 1000) if task.execute_after else 0
        weight = self.config.weight_of(uid)
        header = (f"{task.task_id}\t{uid}\t{int(task.priority)}\t{self.partition_of(uid)}\t"
                  f"{int(weight) if weight == int(weight) else repr(weight)}\t{max_retries}\t{after_ms}")
        return [header, body]

    # --- pop -------------------------------------------------------------------------
    def plan(self, worker_id: str | None) -> PopPlan:
        wid = worker_id if worker_id is not None else self.worker_id
        if wid is None:
            wid = self.config.get_worker(None).id if self.config.workers else POOL_PARTITION
        cached = self._plans.get(wid)
        if cached is not None:
            return cached
        if wid == POOL_PARTITION and not self.config.workers:
            plan = PopPlan(wid, POOL_PARTITION, (), (), ())
        else:
            worker = self.config.get_worker(wid)
            plan = PopPlan(
                worker_id=wid,
                own_partition=wid,
                steal_exact=tuple(sorted(u for u in worker.steal_targets if not is_pattern(u))),
                steal_patterns=tuple(glob_to_lua_pattern(u) for u in worker.steal_targets if is_pattern(u)),
                steal_partitions=self.config.steal_partitions(wid) if worker.steal_targets else (),
                orphan_watch=self.config.orphan_watch(wid),
            )
        self._plans[wid] = plan
        return plan

    def pop_args(self, plan: PopPlan, lease_seconds: float | None, count: int = 1, *, park_ms: int = 0,
                 unpark: str | None = None, token: str | None = None,
                 orphans: Sequence[str] = (), visit: bool = False) -> tuple[list[Any], str]:
        """Arguments of ``pop.lua`` leasing up to ``count`` tasks (at least one; none with ``visit``: the
        call runs its timers and says when something is due), and their lease token.

        ``park_ms``: a slot about to wait parks for that long when nothing is ready (a push may then
        lease it a task directly); ``unpark``: the token of that park, the wait being over; ``token``:
        the lease token to use (default: a new one); ``orphans``: partitions taken over (their
        workers have no live heartbeat)."""
        token = unpark or token or secrets.token_hex(16)
        lease = lease_seconds if lease_seconds is not None else self.config.queue.lease_timeout_seconds
        args: list[Any] = [self.keys.base, plan.worker_id, plan.own_partition, int(lease * 1000), token,
                           plan.steal_digest if plan.steal_partitions else "", self._fairness,
                           max(count, 0 if visit else 1),
                           park_ms, "1" if unpark else "0", len(plan.steal_partitions), *plan.steal_partitions,
                           "\t".join(orphans)]
        return args, token

    def push_args(self, encoded: Sequence[list[Any]], idempotent: bool = False,
                  options: Sequence[str] = ()) -> list[Any]:
        """Arguments of ``push.lua`` for tasks given by their :meth:`encode` (header, body) pairs;
        ``idempotent``: Redis remembers each id pushed for ``queue.idempotency_ttl_seconds``;
        ``options``: each task's :meth:`push_options` (sent only when one is not empty)."""
        args: list[Any] = [self.keys.base, len(encoded), int(time.time() * 1000)]
        for pair in encoded:
            args += pair
        if self.report_wakes:  # a shard of a sharded prefix: the reply says when a user joined a rotation
            args.append(self.config.queue.idempotency_ttl_seconds * 1000 if idempotent else 0)
            args += options if len(options) == len(encoded) else [""] * len(encoded)
            args.append("1")
            return args
        if idempotent or any(options):
            args.append(self.config.queue.idempotency_ttl_seconds * 1000 if idempotent else 0)
        if any(options):
            args += options
        return args

    def complete_args(self, done: Iterable[tuple[str, str, float | None]], *, buffered: bool = False) -> list[Any]:
        """Arguments of ``complete.lua`` for (task id, lease token, run time in s or None) triples;
        the run time feeds metrics and time fairness. The script answers a code per task and, when
        ``buffered`` (the caller's :class:`~.buffered.MetricsBuffer` records the metrics), then a
        wait (ms) per task."""
        q = self.config.queue
        mode = ("2" if buffered else "1") if q.metrics else "0"
        args: list[Any] = [self.keys.base, "1" if q.fairness == "time" else "0", mode, int(time.time() * 1000)]
        for task_id, token, duration in done:
            args += [task_id, token, -1 if duration is None else int(duration * 1000)]
        return args

    def metrics_flush_args(self, taken: Iterable[tuple[str, str, int]]) -> list[Any]:
        """Arguments of ``metrics_flush.lua`` for what a :class:`~.buffered.MetricsBuffer` gathered."""
        args: list[Any] = [self.keys.base]
        for name, field, n in taken:
            args += [name, field, n]
        return args

    @staticmethod
    def decode_popped(row: Sequence[Any], token: str, worker_id: str) -> Task:
        """Build the Task of one leased task's fields (a row of :class:`PopReply`); raises
        CorruptTaskError (the task stays leased)."""
        task_id, user = text(row[0]), text(row[5])
        task = Task.from_json(row[1], task_id, user)
        if task.task_id != task_id:  # a body of the former format names its id
            raise CorruptTaskError(f"task body names task {task.task_id!r} but it is stored as {task_id!r}")
        task.retry_count = int(row[2])
        task.attempts = int(row[3])
        task.lease_deadline = int(row[4]) / 1000.0
        task.lease_token = token
        task.worker_id = worker_id
        if task.user_id != user:
            raise CorruptTaskError(f"task body names user {task.user_id!r} but it was queued for {user!r}")
        return task

    def read_pop(self, reply: PopReply, token: str, worker_id: str) -> tuple[list[Task], list[tuple[str, str]]]:
        """The tasks of a pop reply, and (task id, reason) of leased tasks whose body cannot be used:
        the caller dead-letters them (and pops again if nothing else came). Corrupt data the script
        set aside is logged here."""
        for problem in reply.problems:
            logger.error("fairque: corrupt data found and set aside: %s", problem)
        tasks: list[Task] = []
        corrupt: list[tuple[str, str]] = []
        for row in reply.rows:
            try:
                tasks.append(self.decode_popped(row, token, worker_id))
            except CorruptTaskError as exc:
                task_id = text(row[0])
                logger.error("fairque: task %s is corrupt and was dead-lettered: %s", task_id, exc)
                corrupt.append((task_id, str(exc)))
        return tasks, corrupt

    def result_keys(self, task_id: str, user_id: str) -> tuple[str, str]:
        """The keys a result handle reads (the task hash, the user's result), ids checked."""
        validate_key_part(task_id, "task id")
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        return self.keys.task(task_id), self.keys.result(user_id, task_id)

    # --- failures --------------------------------------------------------------------
    def fail_args(self, task_id: str, token: str, retry_count: int, dead: bool, message: str, etype: str,
                  tb: str, ftype: str) -> list[Any]:
        """Arguments of ``fail.lua`` (the backoff follows from the retries so far)."""
        return [self.keys.base, task_id, token, self.backoff_ms(retry_count), "1" if dead else "0", message, etype,
                tb, ftype, "1" if self.config.queue.metrics else "0", self.config.queue.result_ttl_seconds]

    @staticmethod
    def error_fields(error: BaseException | str) -> tuple[str, str]:
        """(message, error type) recorded for a failure given as an exception or a message."""
        if isinstance(error, BaseException):
            return str(error) or type(error).__name__, type(error).__name__
        return error, "Error"

    @staticmethod
    def fail_outcome(reply: Any) -> str:
        """``fail.lua``'s reply: 'retry' / 'dead' / 'cancelled', 'lost' (lease taken over) or 'missing'
        (no such task)."""
        if reply in (0, b"0"):
            return "lost"
        if reply == -1:
            return "missing"
        return text(reply)

    def release_args(self, tasks: Sequence[Task], count: bool) -> list[Any]:
        """Arguments of ``release.lua`` (``count``: in the 'released' stat)."""
        args: list[Any] = [self.keys.base, "1" if count else "0"]
        for t in tasks:
            args += [t.task_id, t.lease_token or ""]
        return args

    def extend_args(self, tasks: Sequence[Task], lease_seconds: float | None) -> list[Any]:
        """Arguments of ``extend.lua`` (the configured lease when ``lease_seconds`` is None)."""
        lease = lease_seconds if lease_seconds is not None else self.config.queue.lease_timeout_seconds
        args: list[Any] = [self.keys.base, int(lease * 1000)]
        for t in tasks:
            args += [t.task_id, t.lease_token or ""]
        return args

    def cancel_args(self, task_ids: Sequence[str], user_id: str | None, flag_running: bool = True) -> list[Any]:
        """Arguments of ``cancel.lua``: cancel ``task_ids`` (only those of ``user_id`` when given);
        ``flag_running``: leased ones get the cancel flag (else they answer 'running')."""
        if user_id is not None:
            validate_user_id(user_id, self.config.queue.max_user_id_length)
        for task_id in task_ids:
            validate_key_part(task_id, "task id")
        return [self.keys.base, self.config.queue.result_ttl_seconds, user_id or "", "1" if flag_running else "0",
                *task_ids]

    def cancel_queued_args(self, user_id: str, limit: int) -> list[Any]:
        """Arguments of ``cancel_queued.lua``: cancel the next ``limit`` queued tasks of ``user_id``."""
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        return [self.keys.base, self.config.queue.result_ttl_seconds, user_id, limit]

    def backoff_ms(self, retry_count: int) -> int:
        """Exponential backoff with jitter for the retry after ``retry_count`` earlier failures."""
        q = self.config.queue
        delay = min(q.retry_backoff_max_seconds, q.retry_backoff_base_seconds * (2 ** retry_count))
        return int(delay * 1000 * random.uniform(0.8, 1.0))

    # --- stats and DLQ -----------------------------------------------------------------
    def stats_commands(self) -> list[list[Any]]:
        """The reads :meth:`parse_stats` decodes (one round trip)."""
        k = self.keys
        return [["HGETALL", k.stats], ["ZCARD", k.leases], ["ZCARD", k.delayed], ["ZCARD", k.dlq]]

    def fold_idle_args(self, window_ms: int, limit: int) -> list[Any]:
        """Arguments of ``fold_idle.lua``: tenants idle for longer than ``window_ms``, at most ``limit``;
        the configured partitions (worker ids and the pool), where their finish tags may be."""
        parts = dict.fromkeys([*(w.id for w in self.config.workers), POOL_PARTITION])
        return [self.keys.base, max(0, int(window_ms)), max(1, int(limit)), *parts]

    def depth_commands(self, user_id: str) -> list[list[Any]]:
        """The reads of one user's depth (see :func:`read_depth`)."""
        return [*count_commands(self.keys, user_id), ["ZSCORE", self.keys.live, user_id]]

    def dlq_range_command(self, offset: int, limit: int, newest_first: bool) -> list[Any]:
        return ["ZREVRANGE" if newest_first else "ZRANGE", self.keys.dlq, offset, offset + limit - 1]

    def steal_sync_args(self, plan: PopPlan, forget_ms: int, full: bool) -> list[Any]:
        """Arguments of ``steal_sync.lua``: check the worker's steal copies against its digest, and
        (``full``) the definitions to rebuild them from when they do not match."""
        args: list[Any] = [self.keys.base, plan.worker_id, plan.steal_digest, forget_ms, "1" if full else "0"]
        if full:
            args += [len(plan.steal_exact), *plan.steal_exact, len(plan.steal_patterns), *plan.steal_patterns,
                     *plan.steal_partitions]
        return args

    # --- tenant limits -------------------------------------------------------------------
    def limits_sync_args(self, full: bool) -> list[Any]:
        """Arguments of ``limits_sync.lua``: check (and, ``full``, write) the settings mirror."""
        args: list[Any] = [self.keys.base, self.limits_digest, "1" if full else "0"]
        return args + self._limits_fields if full else args

    def tenant_args(self, user_id: str, op: str, spec: LimitSpec | None = None) -> list[Any]:
        """Arguments of ``tenant.lua`` (``op``: set, clear, pause, resume) for a checked user id."""
        return [self.keys.base, validate_user_id(user_id, self.config.queue.max_user_id_length), op,
                spec.encode() if spec is not None else ""]

    def tenant_commands(self, user_id: str) -> list[list[Any]]:
        """The reads :meth:`tenant_state` decodes (one round trip)."""
        k = self.keys
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        return [["HGET", k.tenant_limits, user_id], ["HGET", k.tenant_paused, user_id],
                ["HGET", k.tenant_held, user_id], ["HGET", k.tenant_leased, user_id],
                ["ZSCORE", k.tenant_next, user_id]]

    def tenant_state(self, user_id: str, replies: Sequence[Any]) -> dict[str, Any]:
        """``get_tenant_limits``: the limits in force for ``user_id`` and where each comes from
        (``runtime``, ``settings:<entry>``, ``default``), whether it is paused, why it is held out
        of its rotation (None, ``paused``, ``cap``, ``rate``), its tasks leased now and when its
        next rate token is due (s, epoch; None when it waits for none)."""
        runtime_raw, paused, held, leased, next_at = replies
        runtime = LimitSpec.decode(text(runtime_raw) if runtime_raw is not None else None)
        q = self.config.queue
        out = effective_limits(q.tenant_concurrency, q.tenant_limits, user_id, runtime)
        out.update(user_id=user_id, paused=paused is not None,
                   paused_since=(count(paused) or 0) / 1000.0 if paused is not None else None,
                   held=text(held) if held is not None else None, leased=count(leased) or 0,
                   next_token_at=float(next_at) / 1000.0 if next_at is not None else None)
        return out

    def result_command(self, task: Task, data: str) -> list[Any]:
        """The write that keeps a task's outcome (JSON) for ``queue.result_ttl_seconds``."""
        return ["SET", self.keys.result(task.user_id or "", task.task_id), data,
                "EX", self.config.queue.result_ttl_seconds]

    def dlq_args(self, task_ids: Sequence[str] | None, newest: Any = "+inf") -> list[Any]:
        """Arguments of ``requeue_dead.lua`` (None: the next 1000 dead tasks that died at or before
        the DLQ score ``newest``)."""
        return [self.keys.base, "*", newest] if task_ids is None else [self.keys.base, *task_ids]

    def delete_args(self, task_ids: Sequence[str] | None, dead_only: bool, newest: Any = "+inf") -> list[Any]:
        """Arguments of ``delete.lua`` (``dead_only``: only tasks that are dead; None as in
        :meth:`dlq_args`)."""
        return [self.keys.base, "dead" if dead_only else "any",
                *(["*", newest] if task_ids is None else task_ids)]

    def parse_stats(self, raw: dict[Any, Any], active: int, delayed: int, dlq: int) -> dict[str, Any]:
        """``get_stats``: the counters (garbage in a field reads as 0 and is listed in ``problems``)."""
        raw_text = {text(k): v for k, v in raw.items()}
        counters = stat_counters(list(raw_text), list(raw_text.values()))
        stats: dict[str, Any] = {f"tasks_{name}": counters.get(name, 0) for name in STAT_FIELDS}
        stats["problems"] = stat_problems(self.keys.stats, list(raw_text), list(raw_text.values()))
        live = (stats["tasks_pushed"] - stats["tasks_completed"] - stats["tasks_deleted"] - stats["tasks_cancelled"]
                - dlq)
        stats.update(tasks_active=active, tasks_delayed=delayed, dlq_size=dlq, tasks_pending=live,
                     tasks_queued=max(0, live - active - delayed))
        users: dict[str, dict[str, int]] = {}
        priorities: dict[int, int] = {}
        for name, value in counters.items():
            if name.startswith("u:"):
                user, _, what = name[2:].rpartition(":")
                users.setdefault(user, {})[what] = value
            elif name.startswith("p:") and name.split(":")[1].isdigit():
                priorities[int(name.split(":")[1])] = value
        stats["users"] = users
        stats["priorities"] = priorities
        stats["timestamp"] = time.time()
        return stats

    def decode_dlq(self, ids: Sequence[str], rows: Sequence[Any]) -> list[DLQEntry]:
        """The DLQ entries of ``ids`` from their HGETALL replies (an unreadable or gone one skipped)."""
        return [self.decode_dead(i, row) for i, row in zip(ids, rows, strict=True) if isinstance(row, dict) and row]

    @staticmethod
    def decode_dead(task_id: str, fields: dict[Any, Any]) -> DLQEntry:
        f = task_fields(fields)
        raw = f.get("b", "")
        try:
            task = Task.from_json(raw, task_id, f.get("u"))
            if task.task_id != task_id:  # listed, requeued and deleted by the id it is stored under
                raise CorruptTaskError(f"body names task {task.task_id!r}")
            raw_body = None
        except CorruptTaskError:
            task = Task(task_id=task_id, user_id=f.get("u", "?"))
            raw_body = raw
        task.retry_count = count(f.get("r")) or 0  # garbage reads as 0 (a requeue repairs it)
        task.attempts = count(f.get("a")) or 0
        return DLQEntry(
            task=task, error=f.get("err", ""), error_type=f.get("et", ""), traceback=f.get("tb", ""),
            failure_type=f.get("ft", ""), attempts=task.attempts, retry_count=task.retry_count,
            dead_at=(count(f.get("dt")) or 0) / 1000.0, user_id=f.get("u", "?"), raw_body=raw_body,
            max_retries=int(m) if (m := f.get("m", "")).isdigit() else task.max_retries,
        )


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What the retention sweep (``fold_idle.lua``) did: tenants folded (their per-tenant state gone),
    kept (a finish tag still ahead of their rotation or a rate bucket not spent: looked at again one
    window later), back (active again: no longer idle), whether more may be due, and the problems
    the script reported (keys moved aside, values repaired)."""

    folded: int = 0
    kept: int = 0
    back: int = 0
    more: bool = False
    problems: tuple[str, ...] = ()

    def __add__(self, other: FoldResult) -> FoldResult:
        return FoldResult(self.folded + other.folded, self.kept + other.kept, self.back + other.back, other.more,
                          self.problems + other.problems)


def parse_fold(reply: Sequence[Any]) -> FoldResult:
    """``fold_idle.lua``'s reply."""
    folded, kept, back, more = (int(x) for x in reply[:4])
    return FoldResult(folded, kept, back, bool(more), tuple(text(p) for p in reply[4:]))


def read_depth(replies: Sequence[Any]) -> dict[str, int]:
    lanes = counts_from(replies[:COUNT_READS])
    return {"critical": lanes[6], "normal": sum(n for p, n in lanes.items() if p != 6),
            "live": count(replies[COUNT_READS]) or 0}


# push.lua's answers for one task: what happened, and whether it is a duplicate
PUSH_ANSWERS = {"1": "stored", "0": "duplicate", "W": "waiting", "C": "cancelled", "D": "dropped",
                "R": "replaced", "B": "debounced", "X": "refused"}


def push_answers(reply: Any) -> list[tuple[str, str]]:
    """push.lua's reply as (answer, detail) per task: answers of :data:`PUSH_ANSWERS`; the detail is
    the other task's id (dropped, replaced, debounced), the failed dependency (cancelled), why it was
    refused, else ''."""
    raw = text(reply)
    codes, _, rest = raw.partition("\t")
    notes = iter(rest.split("\t")) if rest else iter(())
    return [(PUSH_ANSWERS.get(c, "stored"), "" if c in "10" else next(notes, "")) for c in codes]


def stored_flags(reply: Any) -> list[bool]:
    """push.lua's reply as booleans: the task is not a duplicate."""
    return [answer != "duplicate" for answer, _ in push_answers(reply)]


def push_outcome(task: Task, stored: Any) -> dict[str, Any]:
    """What :meth:`push` returns for ``task`` given ``push.lua``'s reply: ``task_id`` is the task
    the push ended in (another task's id when its unique key dropped, replaced or debounced it;
    ``conflict`` then says which); a refused dependency raises :class:`DependencyError`."""
    answer, detail = push_answers(stored)[0]
    if answer == "refused":
        raise DependencyError(f"task {task.task_id} not queued: {detail}")
    ok = answer != "duplicate"
    state = "delayed" if task.execute_after else "queued"
    outcome: dict[str, Any] = {"success": ok, "task_id": task.task_id, "user_id": task.user_id,
                               "priority": int(task.priority), "duplicate": not ok, "state": state}
    if answer in ("waiting", "cancelled"):
        outcome["state"] = answer
    elif answer in ("dropped", "replaced", "debounced"):
        outcome.update(task_id=detail, conflict=answer, state="existing")
    return outcome


def batch_outcome(groups: Sequence[Sequence[Task]], replies: Sequence[Any]) -> tuple[list[str], list[str]]:
    """(ids, duplicate ids) of pushed task ``groups`` given their ``push.lua`` replies; ids name the
    task each push ended in (another task's when its unique key dropped, replaced or debounced it).
    A refused dependency raises :class:`DependencyError` (the other tasks are pushed)."""
    ids: list[str] = []
    duplicates: list[str] = []
    refused: list[str] = []
    for group, reply in zip(groups, replies, strict=False):
        for task, (answer, detail) in zip(group, push_answers(reply), strict=True):
            if answer == "duplicate":
                duplicates.append(task.task_id)
            elif answer == "refused":
                refused.append(f"{task.task_id}: {detail}")
            else:
                ids.append(detail if answer in ("dropped", "replaced", "debounced") else task.task_id)
    if refused:
        raise DependencyError(f"{len(refused)} task(s) not queued: " + "; ".join(refused[:5]))
    return ids, duplicates


def dead_ids(ids: Sequence[str], scores: Sequence[Any]) -> list[str]:
    """The ids of ``ids`` that are in the DLQ (their ZMSCORE is not None)."""
    return [i for i, s in zip(ids, scores, strict=True) if s is not None]
