"""The operations of a sharded prefix (``queue.shards`` > 1), written once for
:class:`~.sharded.ShardedTaskQueue` and :class:`~.aio.AsyncShardedTaskQueue`.

:class:`ShardedOps` holds one queue per keyspace shard (``shard_queues``: :class:`~.queue.TaskQueue` or
:class:`~.aio.AsyncTaskQueue`, sharing one client) and the home queue (``home_queue``). Each of its
operations is a generator as in :mod:`.ops`: it runs a shard's own operation (``queue._push(...)``) by
the request :func:`~.ops.on` (shard number, operation), and several shards' at once by
:func:`~.ops.together`; :func:`~.ops.drive` runs it on a :class:`~.ops.ShardTransport`,
:func:`~.ops.adrive` on an :class:`~.ops.AsyncShardTransport`. How each operation is routed and merged
is described in :mod:`.sharded`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import redis

from .config import FairQueueConfig
from .config.limits import Unchanged
from .errors import DependencyError, FairQueueError
from .models import DLQEntry, Task
from .ops import DoneTask, Op, Outcome, QueueOps, execute, on, request, together
from .results import CancelResult, ResultSnapshot
from .scripts.buffered import MetricsBuffer
from .scripts.commands import FoldResult
from .scripts.pop import PopStep
from .shard_turns import ShardTurns
from .shards import shard_map

__all__ = ["ShardedOps", "merge_stats"]

logger = logging.getLogger("fairque_django.queue")

Q = TypeVar("Q", bound=QueueOps)
T = TypeVar("T")


class ShardedOps(Generic[Q]):
    """The state and operations the two sharded queues share (see the module doc): the operations have
    the names and arguments of :class:`~.ops.QueueOps`'s, so that the queues' public methods are
    :mod:`.facade`'s, as a one-shard queue's; the queues add a client and a transport."""

    def __init__(self, config: FairQueueConfig, home: Q, shards: Sequence[Q]) -> None:
        self.config = config
        self.shard_map = shard_map(config.queue)
        self.home_queue = home
        self.shard_queues: tuple[Q, ...] = tuple(shards)
        orphans = home._orphans  # one look at the heartbeats serves every shard
        for queue in self.shard_queues:
            queue.proto.report_wakes = True
            queue._orphans = orphans
        self.proto = home.proto  # checks and encodes tasks (no keys): the Django enqueue path
        self.turns = ShardTurns(home, self.shard_queues)  # which shards a pop asks, and for how many
        # (when, due at) of the last pop that found every shard empty: idle slots share it (wait_and_pop)
        self._quiet: tuple[float, float | None] | None = None
        self._lock = threading.Lock()

    # --- routing --------------------------------------------------------------------------
    def queue_of(self, user_id: str) -> Q:
        """The queue of the shard ``user_id``'s keys live in."""
        return self.shard_queues[self.shard_map.of(user_id)]

    def _shard_of_task(self, task: Task) -> int:
        """The shard of a task: the one this queue leased it from (a tenant's tasks left in its former
        shard after ``queue.shards`` changed are acknowledged there), else its user's."""
        shard = self.shard_map.of(task.user_id or "")
        if task.task_id in self.shard_queues[shard]._leases:
            return shard
        for n, queue in enumerate(self.shard_queues):
            if task.task_id in queue._leases:
                return n
        return shard

    def _by_shard(self, tasks: Iterable[Task]) -> dict[int, list[Task]]:
        groups: dict[int, list[Task]] = {}
        for task in tasks:
            groups.setdefault(self._shard_of_task(task), []).append(task)
        return groups

    @staticmethod
    def _on(shard: int | None, op: Op[T]) -> Op[T]:
        """``op`` (of shard ``shard``'s queue; None: the home queue's) run there: :func:`~.ops.on`, typed."""
        result: T = yield on(shard, op)
        return result

    def _on_user(self, user_id: str, make: Callable[[Q], Op[T]]) -> Op[T]:
        """``make(queue)``'s operation run in ``user_id``'s shard."""
        shard = self.shard_map.of(user_id)
        return self._on(shard, make(self.shard_queues[shard]))

    def _on_task(self, task: Task, make: Callable[[Q], Op[T]]) -> Op[T]:
        """``make(queue)``'s operation run in ``task``'s shard (:meth:`_shard_of_task`)."""
        shard = self._shard_of_task(task)
        return self._on(shard, make(self.shard_queues[shard]))

    @property
    def metrics_buffer(self) -> MetricsBuffer | None:
        """The first shard's metrics buffer (each shard has its own: acks write to their shard)."""
        return self.shard_queues[0].metrics_buffer

    @metrics_buffer.setter
    def metrics_buffer(self, buffer: MetricsBuffer | None) -> None:
        for queue in self.shard_queues:
            queue.metrics_buffer = None if buffer is None else (buffer if queue is self.shard_queues[0]
                                                                 else MetricsBuffer())

    # --- push ---------------------------------------------------------------------------
    def _check_deps(self, task: Task, user_id: str | None) -> None:
        """A dependency must live in the dependent's shard (push.lua reads it atomically)."""
        if not task.depends_on:
            return
        owner = user_id if user_id is not None else task.user_id
        shard = self.shard_map.of(owner or "")
        for user, dep_id in task.depends_on:
            if user is not None and self.shard_map.of(user) != shard:
                raise DependencyError(
                    f"task {task.task_id} not queued: dependency {dep_id} of user {user} lives in keyspace shard "
                    f"{self.shard_map.of(user)}, the task's user {owner} in shard {shard} (queue.shards = "
                    f"{self.shard_map.count}): pin both users to one shard (queue.shard_pins)")

    def _push(self, task: Task, user_id: str | None, traced: bool = False,
              encoded: list[Any] | None = None) -> Op[dict[str, Any]]:
        if encoded is None:  # checked and encoded once (the user it takes: the current tenant's, if none)
            task, encoded = self.proto.prepare(task, user_id)
        self._check_deps(task, None)
        return (yield from self._on_task(task, lambda q: q._push(task, None, traced, encoded)))

    def _push_batch(self, tasks: Iterable[Task], user_id: str | None, idempotent: bool = False,
                    traced: bool = False, encoded: Sequence[list[Any]] | None = None) -> Op[dict[str, Any]]:
        """``encoded``: each task's (header, body), checked already (not again: only the shards of
        its dependencies are)."""
        batch = list(tasks)
        if encoded is not None and len(encoded) != len(batch):
            raise ValueError(f"{len(batch)} tasks but {len(encoded)} encoded")
        for task in batch:
            if encoded is None:
                self.proto.check(task, user_id)
            self._check_deps(task, None)
        return (yield from self._push_groups(batch, None if encoded is None else list(encoded), idempotent, traced))

    def _push_groups(self, batch: list[Task], encoded: list[list[Any]] | None, idempotent: bool, traced: bool,
                     ) -> Op[dict[str, Any]]:
        groups: dict[int, list[int]] = {}
        for i, task in enumerate(batch):
            groups.setdefault(self.shard_map.of(task.user_id or ""), []).append(i)
        ids: list[str] = []
        duplicates: list[str] = []
        done: list[tuple[int, list[str]]] = []
        try:
            for shard, index in groups.items():
                queue = self.shard_queues[shard]
                tasks = [batch[i] for i in index]
                pairs = None if encoded is None else [encoded[i] for i in index]
                reply = yield on(shard, queue._push_batch(tasks, None, idempotent, traced, pairs))
                done.append((shard, reply["task_ids"]))
                ids += reply["task_ids"]
                duplicates += reply["duplicates"]
        except BaseException:
            if not idempotent:  # all or nothing, as for one shard (idempotent: the caller pushes again)
                for shard, stored in done:
                    if stored:
                        yield on(shard, self.shard_queues[shard]._delete(stored))
            raise
        return {"success": not duplicates, "pushed": len(ids), "task_ids": ids, "duplicates": duplicates}

    # --- pop ----------------------------------------------------------------------------
    def _pop_many(self, count: int, worker_id: str | None, lease_seconds: float | None,
                  ) -> Op[tuple[list[Task], float | None]]:
        if count >= 1:
            _, tasks, due = yield from self._complete_and_pop_many([], count, worker_id, lease_seconds)
            return tasks, due
        order = yield from self.turns.rotation(worker_id)
        return (yield from self._pop_from(order, count, worker_id, lease_seconds))

    def _pop_from(self, shards: Sequence[int], count: int, worker_id: str | None, lease_seconds: float | None,
                  ) -> Op[tuple[list[Task], float | None]]:
        tasks, due = yield from self._pop_each(shards, count, worker_id, lease_seconds)
        if tasks:
            self._quiet = None  # work again: the idle slots look for themselves
        return tasks, due

    def _pop_each(self, shards: Sequence[int], count: int, worker_id: str | None, lease_seconds: float | None,
                  ) -> Op[tuple[list[Task], float | None]]:
        """Up to ``count`` tasks of the first of ``shards`` that leases any (a batch comes from one
        shard: the next shards' tenants wait for their own turns, not behind a batch filled from
        another shard); due: the earliest of the shards asked when none leased anything."""
        due: float | None = None
        for shard in shards:
            queue = self.shard_queues[shard]
            got, when = yield on(shard, queue._pop_many(self.turns.share(worker_id, shard, count), worker_id,
                                                        lease_seconds))
            self.turns.visited(shard, when, time.monotonic())
            if got:
                return got, None
            if when is not None:
                due = when if due is None else min(due, when)
        return [], due

    def _pop_step(self, worker_id: str | None, count: int, lease_seconds: float | None, park_ms: int,
                  unpark: str | None) -> Op[PopStep]:
        """In the next start shard of the rotation; never parks (``park_ms``, ``unpark``: ignored)."""
        first = (yield from self.turns.rotation(worker_id))[0]
        queue = self.shard_queues[first]
        return (yield from self._on(first, queue._pop_step(worker_id, count, lease_seconds, 0, None)))

    def _take_handed(self, token: str, worker_id: str | None) -> Op[PopStep]:
        return PopStep([], None, token)
        yield  # (an operation: never asks anything)

    def _complete_and_pop_many(self, done: Sequence[DoneTask], count: int, worker_id: str | None,
                               lease_seconds: float | None) -> Op[tuple[list[int], list[Task], float | None]]:
        allot, rest, visits = ((yield from self.turns.allot(worker_id, count, run_seconds(done), True))
                               if count > 0 else ({}, [], []))
        codes, tasks, due = yield from self._together(done, allot, worker_id, lease_seconds, visits,
                                                      self.turns.carry_reads(worker_id))
        if count > 0 and not tasks:
            more, when = yield from self._pop_from(rest, count, worker_id, lease_seconds)
            tasks += more
            due = None if tasks else (when if due is None or when is None else min(due, when))
        if tasks:
            self._quiet = None
        return codes, tasks, (None if tasks else due)

    def _together(self, done: Sequence[DoneTask], allot: dict[int, int], worker_id: str | None,
                  lease_seconds: float | None, visits: Sequence[int] = (), reads: Sequence[list[Any]] = (),
                  ) -> Op[tuple[list[int], list[Task], float | None]]:
        """Acknowledge ``done``, lease ``allot[shard]`` tasks of each shard, visit the shards ``visits``
        (a pop of no task: their timers run) and read the turns' counts ``reads``, all at once
        (:func:`~.ops.together`: one round trip on a synchronous client): (ack codes, the tasks leased,
        the earliest due of the shards that leased nothing). When a shard's call fails, the tasks the
        others leased go back and its error is raised (the acknowledgements are sent again: one
        already made answers "gone")."""
        groups: dict[int, list[int]] = {}
        for i, (task, _, _) in enumerate(done):
            groups.setdefault(self._shard_of_task(task), []).append(i)
        shards = [*allot, *(shard for shard in groups if shard not in allot)]
        shards += [shard for shard in visits if shard not in shards]
        outcomes: list[Outcome]
        outcomes, counts = yield together([
            (shard, self.shard_queues[shard]._complete_and_pop_many(
                [done[i] for i in groups.get(shard, ())], allot.get(shard, 0), worker_id, lease_seconds,
                shard in visits))
            for shard in shards], reads)
        if reads:
            self.turns.carried(worker_id, counts)
        codes = [0] * len(done)
        leased: list[list[Task]] = []
        due: float | None = None
        error: BaseException | None = None
        now = time.monotonic()
        for shard, (ok, value) in zip(shards, outcomes, strict=True):
            if not ok:
                error = error or value
                continue
            got_codes, got, when = value
            for i, code in zip(groups.get(shard, ()), got_codes, strict=True):
                codes[i] = code
            if shard in allot or shard in visits:
                self.turns.visited(shard, when, now)
                leased.append(got)
                if not got and when is not None:
                    due = when if due is None else min(due, when)
        tasks = [task for row in itertools.zip_longest(*leased) for task in row if task is not None]
        if error is not None:
            if tasks:
                try:
                    yield from self._release(tasks, False)
                except (redis.RedisError, FairQueueError) as exc:  # their leases expire: late, not lost
                    logger.warning("fairque: could not hand back %d tasks leased with a failed call: %s",
                                   len(tasks), exc)
            raise error
        return codes, tasks, due

    def _flush_metrics(self) -> Op[int]:
        total = 0
        for shard, queue in enumerate(self.shard_queues):
            total += yield on(shard, queue._flush_metrics())
        return total

    def _wait_and_pop(self, worker_id: str | None, timeout: float, lease_seconds: float | None,
                      ) -> Op[tuple[Task | None, float | None]]:
        now = time.monotonic()
        deadline = now + timeout
        tasks: list[Task] = []
        due: float | None = None
        with self._lock:
            quiet = self._quiet
            skip = quiet is not None and now - quiet[0] < timeout and (quiet[1] is None or quiet[1] > now)
            if not skip:  # this slot scans: the others arriving meanwhile wait (claimed now)
                self._quiet = (now, None if quiet is None else quiet[1])
        if skip:
            assert quiet is not None
            due = None if quiet[1] is None else quiet[1] - now
        else:
            order = yield from self.turns.rotation(worker_id)
            tasks, due = yield from self._pop_from(order, 1, worker_id, lease_seconds)
            if not tasks:
                self._quiet = (now, None if due is None else now + due)
            elif quiet is not None:  # idle slots may wait: more may be ready (e.g. delayed tasks promoted)
                yield from self._pass_token(worker_id, self.shard_map.of(tasks[0].user_id or ""))
        while not tasks:
            left = deadline - time.monotonic()
            wait = left if due is None else min(left, max(due, 0.0))
            woke = (yield from self._wait(worker_id, wait)) if wait > 0 else None
            if woke is None:
                return None, due
            key, token = woke
            shards = len(self.shard_queues)
            start = int(token[1:]) % shards if token[:1] == "s" and token[1:].isdigit() else self.turns.next_start()
            # the shard the push woke first (a token left by a push whose task a pop took already
            # wakes us for nothing: wait on)
            tasks, due = yield from self._pop_from([*range(start, shards), *range(start)], 1, worker_id,
                                                   lease_seconds)
            if tasks:  # more may be ready: the next idle slot looks too
                yield on(None, request(execute([["LPUSH", key, token], ["LTRIM", key, 0, 0]])))
        return tasks[0], None

    def _pass_token(self, worker_id: str | None, shard: int) -> Op[None]:
        """Wake the next idle slot (of any worker) of the worker's partitions, on shard ``shard``."""
        home = self.home_queue
        commands: list[list[Any]] = []
        for part in home.proto.plan(worker_id).wake_partitions:
            key = home.keys.home_wake(part)
            commands += [["LPUSH", key, f"s{shard}"], ["LTRIM", key, 0, 0]]
        yield on(None, request(execute(commands)))

    def _wait(self, worker_id: str | None, timeout: float) -> Op[tuple[str, str] | None]:
        """Wait on the home wake lists of the worker's partitions (and of those it took over: orphan
        takeover): (wake list, token: the number of the shard a push woke), or None."""
        home = self.home_queue
        plan = home.proto.plan(worker_id)
        if home._orphans_unchecked(plan):
            yield on(None, home._check_orphans(plan))
        parts = [*plan.wake_partitions, *home._orphaned(plan)]
        return (yield from self._on(None, home._wait_home(parts, timeout)))

    def _wait_for_work(self, worker_id: str | None, timeout: float) -> Op[bool]:
        return (yield from self._wait(worker_id, timeout)) is not None

    # --- finishing ----------------------------------------------------------------------
    def _complete(self, task: Task, duration: float | None) -> Op[None]:
        return self._on_task(task, lambda q: q._complete(task, duration))

    def _complete_code(self, task: Task, duration: float | None) -> Op[int]:
        return self._on_task(task, lambda q: q._complete_code(task, duration))

    def _fail(self, task: Task, error: BaseException | str, traceback: str, failure_type: str, retry: bool,
              ) -> Op[str]:
        return self._on_task(task, lambda q: q._fail(task, error, traceback, failure_type, retry))

    def _set_progress(self, task: Task, fraction: float, message: str) -> Op[bool]:
        return self._on_task(task, lambda q: q._set_progress(task, fraction, message))

    def _delete_task(self, task_id: str) -> Op[bool]:
        for shard, queue in enumerate(self.shard_queues):
            if task_id in queue._leases:
                return bool((yield on(shard, queue._delete_task(task_id))))
        return bool((yield from self._delete((task_id,))))

    def _release(self, tasks: Sequence[Task], count: bool) -> Op[int]:
        total = 0
        for shard, group in self._by_shard(tasks).items():
            total += yield on(shard, self.shard_queues[shard]._release(group, count))
        return total

    def _extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None,
                       ) -> Op[tuple[list[str], list[str]]]:
        lost: list[str] = []
        cancelling: list[str] = []
        for shard, group in self._by_shard(tasks).items():
            got_lost, got_cancelling = yield on(shard, self.shard_queues[shard]._extend_leases(group, lease_seconds))
            lost += got_lost
            cancelling += got_cancelling
        return lost, cancelling

    def _delete(self, task_ids: Sequence[str]) -> Op[list[str]]:
        deleted: list[str] = []
        if task_ids:
            for shard, queue in enumerate(self.shard_queues):
                deleted += yield on(shard, queue._delete(task_ids))
        return deleted

    # --- cancelling -------------------------------------------------------------------------
    def _cancel(self, task_id: str, user_id: str | None) -> Op[CancelResult]:
        if user_id is not None:
            return (yield from self._on_user(user_id, lambda q: q._cancel(task_id, user_id)))
        for shard, queue in enumerate(self.shard_queues):
            answer = yield from self._on(shard, queue._cancel(task_id, None))
            if answer is not CancelResult.NOT_FOUND:
                return answer
        return CancelResult.NOT_FOUND

    def _cancel_tenant(self, user_id: str, running: bool, chunk: int) -> Op[dict[str, int]]:
        return self._on_user(user_id, lambda q: q._cancel_tenant(user_id, running, chunk))

    # --- dead-letter queue ----------------------------------------------------------------
    def _each(self, make: Any) -> Op[list[Any]]:
        """``make(queue)``'s operation run in every shard, in order: their results."""
        results: list[Any] = []
        for shard, queue in enumerate(self.shard_queues):
            results.append((yield on(shard, make(queue))))
        return results

    def _first(self, make: Any) -> Op[Any]:
        """``make(queue)``'s operation run in each shard until one returns something other than None."""
        for shard, queue in enumerate(self.shard_queues):
            found = yield on(shard, make(queue))
            if found is not None:
                return found
        return None

    def _dlq_size(self) -> Op[int]:
        return sum((yield from self._each(lambda q: q._dlq_size())))

    def _get_dlq(self, offset: int, limit: int, newest_first: bool) -> Op[list[DLQEntry]]:
        if limit <= 0:
            return []
        pages: list[list[DLQEntry]] = yield from self._each(lambda q: q._get_dlq(0, offset + limit, newest_first))
        merged = heapq.merge(*pages, key=lambda e: (-e.dead_at if newest_first else e.dead_at))
        return list(itertools.islice(merged, offset, offset + limit))

    def _get_dead(self, task_id: str) -> Op[DLQEntry | None]:
        return self._first(lambda q: q._get_dead(task_id))

    def _requeue_dead(self, task_ids: Iterable[str] | None) -> Op[list[str]]:
        ids = None if task_ids is None else list(task_ids)
        return [x for part in (yield from self._each(lambda q: q._requeue_dead(ids))) for x in part]

    def _delete_dead(self, task_ids: Iterable[str] | None) -> Op[list[str]]:
        ids = None if task_ids is None else list(task_ids)
        return [x for part in (yield from self._each(lambda q: q._delete_dead(ids))) for x in part]

    def _purge_dlq(self) -> Op[int]:
        return sum((yield from self._each(lambda q: q._purge_dlq())))

    # --- inspection -----------------------------------------------------------------------
    def _get_stats(self) -> Op[dict[str, Any]]:
        return merge_stats((yield from self._each(lambda q: q._get_stats())))

    def _fold_idle_tenants(self, window_seconds: float | None, limit: int, max_calls: int) -> Op[FoldResult]:
        total = FoldResult()
        more = False
        for step in (yield from self._each(lambda q: q._fold_idle_tenants(window_seconds, limit, max_calls))):
            total += step
            more = more or step.more
        return FoldResult(total.folded, total.kept, total.back, more, total.problems)

    def _mark_idle_tenants(self, cursor: int, pages: int | None) -> Op[tuple[int, int]]:
        shards = len(self.shard_queues)
        shard, inner = cursor % shards, cursor // shards
        marked, done = 0, 0
        while pages is None or done < pages:
            got, inner = yield on(shard, self.shard_queues[shard]._mark_idle_tenants(inner, 1))
            marked += got
            done += 1
            if inner == 0:
                shard += 1
                if shard == shards:
                    return marked, 0
        return marked, inner * shards + shard

    def _get_task_state(self, task_id: str) -> Op[dict[str, str] | None]:
        return self._first(lambda q: q._get_task_state(task_id))

    def _user_depth(self, user_id: str) -> Op[dict[str, int]]:
        return self._on_user(user_id, lambda q: q._user_depth(user_id))

    # --- tenant limits ------------------------------------------------------------------------
    def _set_tenant_limits(self, user_id: str, concurrency: int | Unchanged | None, rate: str | Unchanged | None,
                           burst: int | Unchanged | None) -> Op[dict[str, Any]]:
        return self._on_user(user_id, lambda q: q._set_tenant_limits(user_id, concurrency, rate, burst))

    def _tenant_op(self, user_id: str, op: str) -> Op[dict[str, Any]]:
        state = yield from self._on_user(user_id, lambda q: q._tenant_op(user_id, op))
        if op == "resume":  # the idle workers are woken on the home wake lists
            home = self.home_queue
            key = home.keys.home_wake(home.proto.partition_of(user_id))
            yield on(None, request(execute([["LPUSH", key, f"s{self.shard_map.of(user_id)}"],
                                            ["LTRIM", key, 0, 0]])))
        return state

    def _get_tenant_limits(self, user_id: str) -> Op[dict[str, Any]]:
        return self._on_user(user_id, lambda q: q._get_tenant_limits(user_id))

    def _is_paused(self, user_id: str) -> Op[bool]:
        return self._on_user(user_id, lambda q: q._is_paused(user_id))

    # --- results ----------------------------------------------------------------------------
    def _store_result(self, task: Task, record: dict[str, Any]) -> Op[None]:
        return self._on_user(task.user_id or "", lambda q: q._store_result(task, record))

    def _store_result_json(self, task: Task, data: str) -> Op[None]:
        return self._on_user(task.user_id or "", lambda q: q._store_result_json(task, data))

    def _get_result(self, task_id: str, user_id: str) -> Op[dict[str, Any] | None]:
        return self._on_user(user_id, lambda q: q._get_result(task_id, user_id))

    def _read_result(self, task_id: str, user_id: str) -> Op[ResultSnapshot]:
        return self._on_user(user_id, lambda q: q._read_result(task_id, user_id))

    def _next_delayed_seconds(self) -> Op[float | None]:
        found = [s for s in (yield from self._each(lambda q: q._next_delayed_seconds())) if s is not None]
        return min(found) if found else None

    # --- schedules (home keys) --------------------------------------------------------------------
    def _schedule_tick(self, name: str, tick: int | None, token: str, stale_ms: int, skip: bool,
                       ) -> Op[tuple[str, int, list[str]]]:
        return self._on(None, self.home_queue._schedule_tick(name, tick, token, stale_ms, skip))

    def _schedule_stale(self, names: Sequence[str], token: str, stale_ms: int) -> Op[dict[str, list[str]]]:
        return self._on(None, self.home_queue._schedule_stale(names, token, stale_ms))

    def _schedule_done(self, name: str, ticks: Sequence[str]) -> Op[None]:
        return self._on(None, self.home_queue._schedule_done(name, ticks))

    def _schedule_states(self, names: Sequence[str]) -> Op[dict[str, dict[str, str]]]:
        return self._on(None, self.home_queue._schedule_states(names))

    def _schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str]) -> Op[None]:
        return self._on(None, self.home_queue._schedule_set(name, fields, delete))

    def _pushed_tenants(self) -> Op[list[str]]:
        return sorted({user for users in (yield from self._each(lambda q: q._pushed_tenants())) for user in users})


def merge_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One ``get_stats`` answer of several shards': numbers summed, ``users`` and ``priorities`` merged
    (a user's counters live in one shard; priorities summed), ``problems`` joined, the latest timestamp."""
    merged: dict[str, Any] = {}
    for part in parts:
        for name, value in part.items():
            if name == "users":
                merged.setdefault(name, {}).update(value)
            elif name == "priorities":
                into = merged.setdefault(name, {})
                for prio, n in value.items():
                    into[prio] = into.get(prio, 0) + n
            elif name == "problems":
                merged[name] = [*merged.get(name, []), *value]
            elif name == "timestamp":
                merged[name] = max(merged.get(name, 0.0), value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                merged[name] = merged.get(name, 0) + value
            else:
                merged.setdefault(name, value)
    return merged


def run_seconds(done: Sequence[DoneTask]) -> float | None:
    """The mean run time of the finished tasks ``done`` whose run time is known (None: none is): how
    long the slot's next tasks likely take."""
    times = [seconds for _, seconds, _ in done if seconds is not None]
    return sum(times) / len(times) if times else None
