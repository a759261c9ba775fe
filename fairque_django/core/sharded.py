"""The queue of a sharded prefix (``queue.shards`` > 1): :class:`ShardedTaskQueue`, and :func:`open_queue`,
which gives a plain :class:`~.queue.TaskQueue` when the prefix has one shard.

A :class:`ShardedTaskQueue` holds one :class:`~.queue.TaskQueue` per keyspace shard (``shard_queues``,
sharing one client; every script call of one of them touches that shard's keys only) and the home
queue (``home_queue``: the workers, heartbeats, schedules, samples and alerts of the prefix). It has
the public methods of :class:`~.queue.TaskQueue` and routes each:

- by tenant (a tenant lives in one shard, :class:`~.shards.ShardMap`): push (a batch is split into one
  stream per shard), ack, fail, release, extend, progress, results, cancel with a user, the tenant
  limits, pause, ``cancel_tenant``, ``user_depth``. A dependency must live in the dependent's shard
  (dependencies are read atomically by ``push.lua``): another shard's is refused
  (:class:`~.errors.DependencyError`); pin related tenants to one shard (``queue.shard_pins``);
- by task id only (``get_task_state``, ``delete``, ``delete_task``, ``cancel`` without a user,
  ``get_dead``, ``requeue_dead`` / ``delete_dead`` of ids): every shard is asked, one call each
  (``queue.shards`` round trips: ids do not name their shard);
- reads that span tenants merge: ``get_stats`` (counters and gauges summed, the per-user and
  per-priority dicts merged), ``dlq_size``, ``get_dlq`` (each shard's first ``offset + limit``,
  merged by time of death), ``purge_dlq``, ``pushed_tenants``, ``next_delayed_seconds`` (the
  earliest), the retention sweep (each shard);
- a slot's round trip goes to every shard it concerns at once (:func:`~.ops.drive_together`: one
  pipeline, on a cluster one write to each master): its acks, each to the shard its task was leased
  from, and the pops :meth:`~.shard_turns.ShardTurns.allot` gives out. A batch is turns of a weighted
  round robin over the shards with ready work (each turn worth ``ceil(count / BATCH_SHARDS)`` tasks,
  so at most ``BATCH_SHARDS`` shards a batch), so over the batches each shard leases in proportion to
  its tenants with ready work, wherever the tenants live. When nothing was leased, the other shards
  are asked in turn (an empty pop asks every shard once, which also runs every shard's timers:
  delayed promotion, lease recovery; a shard with no ready work is also visited on a timer).
  Fairness is exact within a shard; across shards a shard's turns follow its tenants with ready
  work (see docs/operations.md for the bound).
- an idle worker waits on the *home* wake lists of its partitions (``{prefix}:wake:<part>``, one
  slot), where a push that made a tenant join its shard's rotation leaves a token (``push.lua``
  reports it: one more command on such a push only). There is no parking / hand-off and no
  prefetch on a sharded prefix (the worker turns prefetch off).

The asyncio queue has no sharded counterpart yet: :class:`~.aio.AsyncTaskQueue` refuses a sharded
prefix.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

import redis

from .config import FairQueueConfig
from .config.limits import UNCHANGED, Unchanged
from .connection import get_client
from .context import CurrentQueue
from .errors import DependencyError, FairQueueError
from .models import DLQEntry, Task
from .ops import drive, drive_together
from .queue import TaskQueue
from .results import CancelResult, ResultSnapshot, TaskResult
from .scripts.buffered import MetricsBuffer
from .scripts.commands import FoldResult
from .scripts.pop import PopStep
from .shard_turns import ShardTurns
from .shards import shard_map
from .transport import HeldConnection

__all__ = ["AnyQueue", "ShardedTaskQueue", "open_queue"]

logger = logging.getLogger("fairque_django.queue")

T = TypeVar("T")


class Done(Generic[T]):
    """The result of a round trip already made (what :meth:`ShardedTaskQueue.send_complete_and_pop`
    returns: a sharded queue does not split a round trip in two)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def result(self) -> T:
        return self._value


class ShardedTaskQueue(CurrentQueue):
    """A fair multi-tenant task queue over ``queue.shards`` keyspace shards (see the module doc)."""

    def __init__(self, config: FairQueueConfig, client: redis.Redis | None = None, *,
                 worker_id: str | None = None) -> None:
        self.config = config
        self.client: redis.Redis = client if client is not None else get_client(config.redis)
        self.shard_map = shard_map(config.queue)
        self.home_queue = TaskQueue(config, self.client, worker_id=worker_id)
        self.shard_queues: tuple[TaskQueue, ...] = tuple(
            TaskQueue(config, self.client, worker_id=worker_id, shard=n) for n in range(config.queue.shards))
        orphans = self.home_queue._orphans  # one look at the heartbeats serves every shard
        for queue in self.shard_queues:
            queue.proto.report_wakes = True
            queue._orphans = orphans
        self.proto = self.home_queue.proto  # checks and encodes tasks (no keys): the Django enqueue path
        self.turns = ShardTurns(self.home_queue, self.shard_queues)  # which shards a pop asks, and for how many
        self._index = {id(queue): n for n, queue in enumerate(self.shard_queues)}
        # (when, due at) of the last pop that found every shard empty: idle slots share it (wait_and_pop)
        self._quiet: tuple[float, float | None] | None = None
        self._lock = threading.Lock()

    # --- routing --------------------------------------------------------------------------
    def queue_of(self, user_id: str) -> TaskQueue:
        """The queue of the shard ``user_id``'s keys live in."""
        return self.shard_queues[self.shard_map.of(user_id)]

    def _queues(self, shards: Iterable[int]) -> list[TaskQueue]:
        return [self.shard_queues[i] for i in shards]

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

    def _of_task(self, task: Task) -> TaskQueue:
        return self.shard_queues[self._shard_of_task(task)]

    def _by_shard(self, tasks: Iterable[Task]) -> dict[int, list[Task]]:
        groups: dict[int, list[Task]] = {}
        for task in tasks:
            groups.setdefault(self._shard_of_task(task), []).append(task)
        return groups

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

    def push(self, task: Task, user_id: str | None = None, *, encoded: list[Any] | None = None) -> dict[str, Any]:
        """As :meth:`TaskQueue.push`, into the shard of the task's user."""
        if encoded is None:  # checked and encoded once (the user it takes: the current tenant's, if none)
            task, encoded = self.proto.prepare(task, user_id)
        self._check_deps(task, None)
        return self._of_task(task).push(task, encoded=encoded)

    def push_batch(self, tasks: Iterable[Task], user_id: str | None = None, *,
                   idempotent: bool = False) -> dict[str, Any]:
        """As :meth:`TaskQueue.push_batch`: every task is checked first, then one stream per shard. When
        a later shard's stream fails (a body that does not encode), what earlier shards stored is
        deleted again (not with ``idempotent``, as for one shard)."""
        batch = list(tasks)
        for task in batch:
            self.proto.check(task, user_id)
            self._check_deps(task, None)
        return self._push_groups(batch, None, idempotent)

    def push_prepared(self, tasks: Sequence[Task], encoded: Sequence[list[Any]]) -> dict[str, Any]:
        """As :meth:`TaskQueue.push_prepared`."""
        if len(encoded) != len(tasks):
            raise ValueError(f"{len(tasks)} tasks but {len(encoded)} encoded")
        for task in tasks:
            self._check_deps(task, None)
        return self._push_groups(list(tasks), list(encoded), False)

    def _push_groups(self, batch: list[Task], encoded: list[list[Any]] | None, idempotent: bool) -> dict[str, Any]:
        groups: dict[int, list[int]] = {}
        for i, task in enumerate(batch):
            groups.setdefault(self.shard_map.of(task.user_id or ""), []).append(i)
        ids: list[str] = []
        duplicates: list[str] = []
        done: list[tuple[TaskQueue, list[str]]] = []
        try:
            for shard, index in groups.items():
                queue = self.shard_queues[shard]
                tasks = [batch[i] for i in index]
                if encoded is not None:
                    reply = queue.push_prepared(tasks, [encoded[i] for i in index])
                else:
                    reply = drive(queue.transport, queue._push_batch(tasks, None, idempotent))
                done.append((queue, reply["task_ids"]))
                ids += reply["task_ids"]
                duplicates += reply["duplicates"]
        except BaseException:
            if not idempotent:  # all or nothing, as for one shard (idempotent: the caller pushes again)
                for queue, stored in done:
                    if stored:
                        queue.delete(*stored)
            raise
        return {"success": not duplicates, "pushed": len(ids), "task_ids": ids, "duplicates": duplicates}

    # --- pop ----------------------------------------------------------------------------
    def pop(self, worker_id: str | None = None, *, lease_seconds: float | None = None) -> Task | None:
        """As :meth:`TaskQueue.pop`: the shards in rotation, from the next start shard."""
        tasks, _ = self.pop_many_reply(1, worker_id, lease_seconds=lease_seconds)
        return tasks[0] if tasks else None

    def pop_reply(self, worker_id: str | None = None, *, lease_seconds: float | None = None,
                  ) -> tuple[Task | None, float | None]:
        """As :meth:`TaskQueue.pop_reply` (due: the earliest of the shards asked)."""
        tasks, due = self.pop_many_reply(1, worker_id, lease_seconds=lease_seconds)
        return (tasks[0] if tasks else None), due

    def pop_many(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                 ) -> list[Task]:
        """As :meth:`TaskQueue.pop_many`."""
        return self.pop_many_reply(count, worker_id, lease_seconds=lease_seconds)[0]

    def pop_many_reply(self, count: int, worker_id: str | None = None, *, lease_seconds: float | None = None,
                       ) -> tuple[list[Task], float | None]:
        """As :meth:`TaskQueue.pop_many_reply`: the shards the rotation allots tasks to
        (:meth:`complete_and_pop_many` with nothing to acknowledge), then the others until one leases
        something (an empty pop asks every shard once)."""
        if count > 1:
            _, tasks, due = self.complete_and_pop_many([], count, worker_id=worker_id, lease_seconds=lease_seconds)
            return tasks, due
        return self._pop_from(self._queues(self.turns.rotation(worker_id)), count, worker_id, lease_seconds)

    def _pop_from(self, queues: Sequence[TaskQueue], count: int, worker_id: str | None, lease_seconds: float | None,
                  ) -> tuple[list[Task], float | None]:
        tasks, due = self._pop_each(queues, count, worker_id, lease_seconds)
        if tasks:
            self._quiet = None  # work again: the idle slots look for themselves
        return tasks, due

    def _pop_each(self, queues: Sequence[TaskQueue], count: int, worker_id: str | None, lease_seconds: float | None,
                  ) -> tuple[list[Task], float | None]:
        """Up to ``count`` tasks of the first of ``queues`` that leases any (a batch comes from one
        shard: the next shards' tenants wait for their own turns, not behind a batch filled from
        another shard); due: the earliest of the shards asked when none leased anything."""
        due: float | None = None
        for queue in queues:
            shard = self._index[id(queue)]
            got, when = queue.pop_many_reply(self.turns.share(worker_id, shard, count), worker_id,
                                             lease_seconds=lease_seconds)
            self.turns.visited(shard, when, time.monotonic())
            if got:
                return got, None
            if when is not None:
                due = when if due is None else min(due, when)
        return [], due

    def pop_step(self, worker_id: str | None = None, *, count: int = 1, lease_seconds: float | None = None,
                 park_ms: int = 0, unpark: str | None = None) -> PopStep:
        """As :meth:`TaskQueue.pop_step`, in the next start shard of the rotation. A sharded prefix does
        not park (``park_ms`` and ``unpark`` are ignored: no push hands a task over)."""
        first = self.turns.rotation(worker_id)[0]
        return self.shard_queues[first].pop_step(worker_id, count=count, lease_seconds=lease_seconds)

    def take_handed(self, token: str, worker_id: str | None = None) -> PopStep:
        """As :meth:`TaskQueue.take_handed`: never anything (a sharded prefix does not park)."""
        return PopStep([], None, token)

    def complete_and_pop(self, task: Task, *, duration: float | None = None, result_json: str | None = None,
                         worker_id: str | None = None, lease_seconds: float | None = None,
                         ) -> tuple[int, Task | None, float | None]:
        """As :meth:`TaskQueue.complete_and_pop`."""
        codes, tasks, due = self.complete_and_pop_many([(task, duration, result_json)], 1, worker_id=worker_id,
                                                       lease_seconds=lease_seconds)
        return codes[0], (tasks[0] if tasks else None), due

    def complete_and_pop_many(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, lease_seconds: float | None = None,
                              ) -> tuple[list[int], list[Task], float | None]:
        """As :meth:`TaskQueue.complete_and_pop_many`: the acks of each shard and the pops the rotation
        allots (:meth:`ShardTurns.allot`) go in one round trip, to every shard concerned at once; the tasks
        leased come interleaved shard by shard. When none was leased, the next shards are asked."""
        allot, rest = self.turns.allot(worker_id, count) if count > 0 else ({}, [])
        codes, tasks, due = self._together(done, allot, worker_id, lease_seconds)
        if count > 0 and not tasks:
            more, when = self._pop_from(self._queues(rest), count, worker_id, lease_seconds)
            tasks += more
            due = None if tasks else (when if due is None or when is None else min(due, when))
        if tasks:
            self._quiet = None
        return codes, tasks, (None if tasks else due)

    def _together(self, done: Sequence[tuple[Task, float | None, str | None]], allot: dict[int, int],
                  worker_id: str | None, lease_seconds: float | None) -> tuple[list[int], list[Task], float | None]:
        """Acknowledge ``done`` and lease ``allot[shard]`` tasks of each shard, all in one round trip
        (:func:`~.ops.drive_together`): (ack codes, the tasks leased, the earliest due of the shards that
        leased nothing). When a shard's call fails, the tasks the others leased go back and its error
        is raised (the acknowledgements are sent again: one already made answers "gone")."""
        groups: dict[int, list[int]] = {}
        for i, (task, _, _) in enumerate(done):
            groups.setdefault(self._shard_of_task(task), []).append(i)
        shards = [*allot, *(shard for shard in groups if shard not in allot)]
        queues = [self.shard_queues[shard] for shard in shards]
        outcomes = drive_together([
            (queue.transport, queue._complete_and_pop_many([done[i] for i in groups.get(shard, ())],
                                                           allot.get(shard, 0), worker_id, lease_seconds))
            for shard, queue in zip(shards, queues, strict=True)])
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
            if shard in allot:
                self.turns.visited(shard, when, now)
                leased.append(got)
                if not got and when is not None:
                    due = when if due is None else min(due, when)
        tasks = [task for row in itertools.zip_longest(*leased) for task in row if task is not None]
        if error is not None:
            if tasks:
                try:
                    self.release(tasks, count=False)
                except (redis.RedisError, FairQueueError) as exc:  # their leases expire: late, not lost
                    logger.warning("fairque: could not hand back %d tasks leased with a failed call: %s",
                                   len(tasks), exc)
            raise error
        return codes, tasks, due

    def flush_metrics(self) -> int:
        """As :meth:`TaskQueue.flush_metrics`: each shard's buffer."""
        return sum(queue.flush_metrics() for queue in self.shard_queues)

    def send_complete_and_pop(self, done: Sequence[tuple[Task, float | None, str | None]], count: int, *,
                              worker_id: str | None = None, via: HeldConnection | None = None,
                              ) -> Done[tuple[list[int], list[Task], float | None]]:
        """:meth:`complete_and_pop_many`, made now (a sharded prefix does not prefetch: its round trips
        may go to several shards); ``result()`` returns its result."""
        return Done(self.complete_and_pop_many(done, count, worker_id=worker_id))

    def hold_connection(self) -> HeldConnection | None:
        """None: a sharded queue does not prefetch."""
        return None

    def wait_and_pop(self, worker_id: str | None = None, timeout: float = 1.0, *,
                     lease_seconds: float | None = None) -> tuple[Task | None, float | None]:
        """As :meth:`TaskQueue.wait_and_pop`: a pop in rotation (every shard when none is ready), then a
        wait on the home wake lists of the worker's partitions (up to ``timeout``, or until something is
        due), then, when a push woke it, a pop from the shard it woke on. No parking: no push hands a
        task over. The idle slots of one queue share their scans: a slot skips its first pop when
        another found every shard empty less than ``timeout`` ago and nothing was leased since (a push
        since then left a token; a woken slot that leases a task passes the token on, as ``pop.lua``
        wakes the next waiter of a tenant with more work)."""
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
            tasks, due = self._pop_from(self._queues(self.turns.rotation(worker_id)), 1, worker_id, lease_seconds)
            if not tasks:
                self._quiet = (now, None if due is None else now + due)
            elif quiet is not None:  # idle slots may wait: more may be ready (e.g. delayed tasks promoted)
                self._pass_token(worker_id, self.shard_map.of(tasks[0].user_id or ""))
        while not tasks:
            left = deadline - time.monotonic()
            wait = left if due is None else min(left, max(due, 0.0))
            woke = self._wait(worker_id, wait) if wait > 0 else None
            if woke is None:
                return None, due
            key, token = woke
            shards = len(self.shard_queues)
            start = int(token[1:]) % shards if token[:1] == "s" and token[1:].isdigit() else self.turns.next_start()
            # the shard the push woke first (a token left by a push whose task a pop took already
            # wakes us for nothing: wait on)
            tasks, due = self._pop_from([*self.shard_queues[start:], *self.shard_queues[:start]], 1, worker_id,
                                        lease_seconds)
            if tasks:  # more may be ready: the next idle slot looks too
                self.home_queue.transport.execute([["LPUSH", key, token], ["LTRIM", key, 0, 0]])
        return tasks[0], None

    def _pass_token(self, worker_id: str | None, shard: int) -> None:
        """Wake the next idle slot (of any worker) of the worker's partitions, on shard ``shard``."""
        home = self.home_queue
        commands: list[list[Any]] = []
        for part in home.proto.plan(worker_id).wake_partitions:
            key = home.keys.home_wake(part)
            commands += [["LPUSH", key, f"s{shard}"], ["LTRIM", key, 0, 0]]
        home.transport.execute(commands)

    def wait_for_work(self, worker_id: str | None = None, timeout: float = 1.0) -> bool:
        """As :meth:`TaskQueue.wait_for_work`, on the home wake lists of the worker's partitions (and of
        those it took over: orphan takeover)."""
        return self._wait(worker_id, timeout) is not None

    def _wait(self, worker_id: str | None, timeout: float) -> tuple[str, str] | None:
        """:meth:`wait_for_work`'s (wake list, token: the number of the shard a push woke), or None."""
        home = self.home_queue
        plan = home.proto.plan(worker_id)
        if home._orphans_unchecked(plan):
            drive(home.transport, home._check_orphans(plan))
        parts = [*plan.wake_partitions, *home._orphaned(plan)]
        return drive(home.transport, home._wait_home(parts, timeout))

    # --- finishing ----------------------------------------------------------------------
    def complete(self, task: Task, *, duration: float | None = None) -> None:
        """As :meth:`TaskQueue.complete`."""
        self._of_task(task).complete(task, duration=duration)

    def complete_code(self, task: Task, *, duration: float | None = None) -> int:
        """As :meth:`TaskQueue.complete_code`."""
        return self._of_task(task).complete_code(task, duration=duration)

    def delete_task(self, task_id: str) -> bool:
        """As :meth:`TaskQueue.delete_task`: the shard whose queue leased it, else every shard."""
        for queue in self.shard_queues:
            if task_id in queue._leases:
                return queue.delete_task(task_id)
        return bool(self.delete(task_id))

    def fail(self, task: Task, error: BaseException | str, *, traceback: str = "",
             failure_type: str = "error", retry: bool = True) -> str:
        """As :meth:`TaskQueue.fail`."""
        return self._of_task(task).fail(task, error, traceback=traceback, failure_type=failure_type, retry=retry)

    def release(self, tasks: Sequence[Task], *, count: bool = True) -> int:
        """As :meth:`TaskQueue.release`, each task in its shard."""
        return sum(self.shard_queues[s].release(group, count=count) for s, group in self._by_shard(tasks).items())

    def extend(self, tasks: Sequence[Task], lease_seconds: float | None = None) -> list[str]:
        """As :meth:`TaskQueue.extend`."""
        return self.extend_leases(tasks, lease_seconds)[0]

    def extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None = None,
                      ) -> tuple[list[str], list[str]]:
        """As :meth:`TaskQueue.extend_leases`: one call per shard holding some of ``tasks``."""
        lost: list[str] = []
        cancelling: list[str] = []
        for shard, group in self._by_shard(tasks).items():
            got_lost, got_cancelling = self.shard_queues[shard].extend_leases(group, lease_seconds)
            lost += got_lost
            cancelling += got_cancelling
        return lost, cancelling

    def set_progress(self, task: Task, fraction: float, message: str = "") -> bool:
        """As :meth:`TaskQueue.set_progress`."""
        return self._of_task(task).set_progress(task, fraction, message)

    def delete(self, *task_ids: str) -> list[str]:
        """As :meth:`TaskQueue.delete`: every shard is asked (one call each)."""
        if not task_ids:
            return []
        deleted: list[str] = []
        for queue in self.shard_queues:
            deleted += queue.delete(*task_ids)
        return deleted

    # --- cancelling -------------------------------------------------------------------------
    def cancel(self, task_id: str, *, user_id: str | None = None) -> CancelResult:
        """As :meth:`TaskQueue.cancel`: the user's shard, or (no user) every shard until one knows it."""
        if user_id is not None:
            return self.queue_of(user_id).cancel(task_id, user_id=user_id)
        for queue in self.shard_queues:
            answer = queue.cancel(task_id)
            if answer is not CancelResult.NOT_FOUND:
                return answer
        return CancelResult.NOT_FOUND

    def cancel_tenant(self, user_id: str, *, running: bool = False, chunk: int = 1000) -> dict[str, int]:
        """As :meth:`TaskQueue.cancel_tenant`, in the tenant's shard."""
        return self.queue_of(user_id).cancel_tenant(user_id, running=running, chunk=chunk)

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_size(self) -> int:
        """As :meth:`TaskQueue.dlq_size`: the sum over the shards."""
        return sum(queue.dlq_size() for queue in self.shard_queues)

    def get_dlq(self, offset: int = 0, limit: int = 100, *, newest_first: bool = True) -> list[DLQEntry]:
        """As :meth:`TaskQueue.get_dlq`, across the shards: each shard's first ``offset + limit`` entries,
        merged by time of death (so a deep page costs ``shards * (offset + limit)`` entries read)."""
        if limit <= 0:
            return []
        pages = [queue.get_dlq(0, offset + limit, newest_first=newest_first) for queue in self.shard_queues]
        merged = heapq.merge(*pages, key=lambda e: (-e.dead_at if newest_first else e.dead_at))
        return list(itertools.islice(merged, offset, offset + limit))

    def get_dead(self, task_id: str) -> DLQEntry | None:
        """As :meth:`TaskQueue.get_dead`: every shard is asked until one has it."""
        for queue in self.shard_queues:
            entry = queue.get_dead(task_id)
            if entry is not None:
                return entry
        return None

    def requeue_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """As :meth:`TaskQueue.requeue_dead`, in every shard."""
        ids = None if task_ids is None else list(task_ids)
        return [x for queue in self.shard_queues for x in queue.requeue_dead(ids)]

    def delete_dead(self, task_ids: Iterable[str] | None = None) -> list[str]:
        """As :meth:`TaskQueue.delete_dead`, in every shard."""
        ids = None if task_ids is None else list(task_ids)
        return [x for queue in self.shard_queues for x in queue.delete_dead(ids)]

    def purge_dlq(self) -> int:
        """As :meth:`TaskQueue.purge_dlq`: every shard's."""
        return sum(queue.purge_dlq() for queue in self.shard_queues)

    # --- inspection -----------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """As :meth:`TaskQueue.get_stats`, the shards' merged: numbers summed, per-user and per-priority
        counts merged (a user lives in one shard), problems joined."""
        return merge_stats([queue.get_stats() for queue in self.shard_queues])

    def fold_idle_tenants(self, *, window_seconds: float | None = None, limit: int = 200,
                          max_calls: int = 50) -> FoldResult:
        """As :meth:`TaskQueue.fold_idle_tenants`, in every shard (``more``: in any)."""
        total = FoldResult()
        more = False
        for queue in self.shard_queues:
            step = queue.fold_idle_tenants(window_seconds=window_seconds, limit=limit, max_calls=max_calls)
            total += step
            more = more or step.more
        return FoldResult(total.folded, total.kept, total.back, more, total.problems)

    def mark_idle_tenants(self, *, cursor: int = 0, pages: int | None = None) -> tuple[int, int]:
        """As :meth:`TaskQueue.mark_idle_tenants`, the shards one after the other: the cursor names the
        shard and where its scan goes on (``inner * shards + shard``; 0 at the start and when done)."""
        shards = len(self.shard_queues)
        shard, inner = cursor % shards, cursor // shards
        marked, done = 0, 0
        while pages is None or done < pages:
            got, inner = self.shard_queues[shard].mark_idle_tenants(cursor=inner, pages=1)
            marked += got
            done += 1
            if inner == 0:
                shard += 1
                if shard == shards:
                    return marked, 0
        return marked, inner * shards + shard

    def get_task_state(self, task_id: str) -> dict[str, str] | None:
        """As :meth:`TaskQueue.get_task_state`: every shard is asked until one has it."""
        for queue in self.shard_queues:
            state = queue.get_task_state(task_id)
            if state is not None:
                return state
        return None

    def user_depth(self, user_id: str) -> dict[str, int]:
        """As :meth:`TaskQueue.user_depth`."""
        return self.queue_of(user_id).user_depth(user_id)

    # --- tenant limits ------------------------------------------------------------------------
    def set_tenant_limits(self, user_id: str, *, concurrency: int | Unchanged | None = UNCHANGED,
                          rate: str | Unchanged | None = UNCHANGED,
                          burst: int | Unchanged | None = UNCHANGED) -> dict[str, Any]:
        """As :meth:`TaskQueue.set_tenant_limits`, in the tenant's shard."""
        return self.queue_of(user_id).set_tenant_limits(user_id, concurrency=concurrency, rate=rate, burst=burst)

    def clear_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.clear_tenant_limits`."""
        return self.queue_of(user_id).clear_tenant_limits(user_id)

    def get_tenant_limits(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.get_tenant_limits`."""
        return self.queue_of(user_id).get_tenant_limits(user_id)

    def pause_tenant(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.pause_tenant`."""
        return self.queue_of(user_id).pause_tenant(user_id)

    def resume_tenant(self, user_id: str) -> dict[str, Any]:
        """As :meth:`TaskQueue.resume_tenant` (the idle workers are woken on the home wake lists)."""
        queue = self.queue_of(user_id)
        state = queue.resume_tenant(user_id)
        self._wake(user_id)
        return state

    def _wake(self, user_id: str) -> None:
        """Leave a wake-up token on the home wake list of ``user_id``'s partition."""
        home = self.home_queue
        key = home.keys.home_wake(home.proto.partition_of(user_id))
        home.transport.execute([["LPUSH", key, f"s{self.shard_map.of(user_id)}"], ["LTRIM", key, 0, 0]])

    def is_paused(self, user_id: str) -> bool:
        """As :meth:`TaskQueue.is_paused`."""
        return self.queue_of(user_id).is_paused(user_id)

    # --- results ----------------------------------------------------------------------------
    def store_result(self, task: Task, record: dict[str, Any]) -> None:
        """As :meth:`TaskQueue.store_result`, in the tenant's shard (where result reads look)."""
        self.queue_of(task.user_id or "").store_result(task, record)

    def store_result_json(self, task: Task, data: str) -> None:
        """As :meth:`TaskQueue.store_result_json`, in the tenant's shard."""
        self.queue_of(task.user_id or "").store_result_json(task, data)

    def get_result(self, task_id: str, *, user_id: str) -> dict[str, Any] | None:
        """As :meth:`TaskQueue.get_result`."""
        return self.queue_of(user_id).get_result(task_id, user_id=user_id)

    def read_result(self, task_id: str, user_id: str) -> ResultSnapshot:
        """As :meth:`TaskQueue.read_result`."""
        return self.queue_of(user_id).read_result(task_id, user_id)

    def result(self, task_id: str, *, user_id: str) -> TaskResult:
        """As :meth:`TaskQueue.result`."""
        return TaskResult(task_id, user_id, self).refresh()

    def next_delayed_seconds(self) -> float | None:
        """As :meth:`TaskQueue.next_delayed_seconds`: the earliest of the shards."""
        found = [s for s in (queue.next_delayed_seconds() for queue in self.shard_queues) if s is not None]
        return min(found) if found else None

    # --- schedules (home keys) --------------------------------------------------------------------
    def schedule_tick(self, name: str, tick: int | None, token: str, *, stale_ms: int = 10_000,
                      skip: bool = False) -> tuple[str, int, list[str]]:
        """As :meth:`TaskQueue.schedule_tick` (home keys)."""
        return self.home_queue.schedule_tick(name, tick, token, stale_ms=stale_ms, skip=skip)

    def schedule_stale(self, names: Sequence[str], token: str, *, stale_ms: int = 10_000) -> dict[str, list[str]]:
        """As :meth:`TaskQueue.schedule_stale` (home keys)."""
        return self.home_queue.schedule_stale(names, token, stale_ms=stale_ms)

    def schedule_done(self, name: str, ticks: Sequence[str]) -> None:
        """As :meth:`TaskQueue.schedule_done` (home keys)."""
        self.home_queue.schedule_done(name, ticks)

    def schedule_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """As :meth:`TaskQueue.schedule_states` (home keys)."""
        return self.home_queue.schedule_states(names)

    def schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str] = ()) -> None:
        """As :meth:`TaskQueue.schedule_set` (home keys)."""
        self.home_queue.schedule_set(name, fields, delete)

    def pushed_tenants(self) -> list[str]:
        """As :meth:`TaskQueue.pushed_tenants`: the shards' together."""
        return sorted({user for queue in self.shard_queues for user in queue.pushed_tenants()})


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


AnyQueue: TypeAlias = TaskQueue | ShardedTaskQueue


def open_queue(config: FairQueueConfig, client: redis.Redis | None = None, *,
               worker_id: str | None = None) -> AnyQueue:
    """The queue of ``config``'s prefix: a :class:`TaskQueue` when it has one keyspace shard
    (``queue.shards = 1``, the default), else a :class:`ShardedTaskQueue`."""
    if config.queue.shards > 1:
        return ShardedTaskQueue(config, client, worker_id=worker_id)
    return TaskQueue(config, client, worker_id=worker_id)
