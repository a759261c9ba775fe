"""The queue's operations, written once for :class:`~.queue.TaskQueue` and :class:`~.aio.AsyncTaskQueue`.

Each operation is a generator (sans-I/O): it yields requests, each naming a method of the
transport (:class:`~.transport.Transport` or :class:`~.transport.AsyncTransport`, which have the
same method names) with its arguments, and receives the replies; its return value is the
operation's result. :func:`drive` runs one on a synchronous transport, :func:`adrive` awaits one
on an asynchronous transport. An error raised by a request is thrown back into the operation at
its ``yield``, so ``with redis_errors(...)`` around it translates it as a direct call would.
Arguments and replies are :mod:`.scripts.commands`'s. (A little over 400 lines: it holds every
queue operation, so that both drivers find all of them in one place.) A sharded prefix's operations
(:mod:`.shardops`) are generators too: they run a shard's operation by the request :func:`on`, and
:class:`ShardTransport` / :class:`AsyncShardTransport` pass it to that shard's transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

import redis

from . import tracing
from .codec import chunks, text
from .config import FairQueueConfig
from .config.limits import UNCHANGED, LimitSpec, Unchanged, parse_rate
from .errors import LeaseLostError, TaskValidationError
from .keys import validate_user_id
from .models import DLQEntry, Task, dumps
from .results import CancelResult, ResultSnapshot, TaskStatus, check_progress
from .retry import RETRYABLE, Attempts, Replayable
from .scripts import Scripts
from .scripts.buffered import MetricsBuffer
from .scripts.commands import (
    PARK_MARGIN_MS,
    Commands,
    FoldResult,
    batch_outcome,
    dead_ids,
    parse_fold,
    push_outcome,
    read_depth,
    task_fields,
)
from .scripts.pop import PopPlan, PopReply, PopStep
from .transport import (
    AnyPending,
    AsyncTransport,
    HeldConnection,
    Pending,
    ScriptCall,
    Transport,
    evalsha,
    redis_errors,
)

__all__ = ["UNCHANGED", "AsyncShardTransport", "DoneTask", "Op", "QueueOps", "Request", "Sent", "ShardTransport",
           "Together", "TogetherSent", "Unchanged", "adrive", "drive", "on", "send", "send_together", "together"]

logger = logging.getLogger("fairque_django.queue")

# How often a queue checks that a worker's steal copies are still in Redis (one script call).
STEAL_SET_RECHECK_SECONDS = 5.0
# The steal copies of a worker that has not synced them for this long are deleted (a worker removed
# from the configuration, or stopped that long); it rebuilds them when it pops again.
STEALER_FORGET_SECONDS = 3600.0
# How often a worker's queue reads which partitions are orphaned (one MGET of heartbeat keys).
ORPHAN_RECHECK_SECONDS = 1.0
# Tasks one cancel script call handles at most (cancel_tenant): Redis serves others in between.
CANCEL_CHUNK = 1000
# Steal-copy syncs one pop makes (each after a script call that found a copy out of date or spoiled)
# before it returns what it has leased (see _pop_step).
MAX_RESYNCS = 4

# How often a queue checks that the tenant limit settings are mirrored in Redis (one HGET in a script).
LIMITS_RECHECK_SECONDS = 5.0
# A wait shorter than this sleeps in the client, then pops: Redis times a blocking command out only
# at its cron ticks (100 ms at the default hz 10), far too late for a rate token due in 20 ms.
PRECISE_WAIT_SECONDS = 0.1

T = TypeVar("T")
# (transport method name, its arguments): no keyword arguments, they cost the hot paths time
Request: TypeAlias = tuple[str, tuple[Any, ...]]
Op: TypeAlias = Generator[Request, Any, T]
DoneTask: TypeAlias = tuple[Task, float | None, str | None]  # a finished task to acknowledge: task, run time, result


# drive and adrive are the one piece written twice, on purpose: one calls, the other awaits.
# Each request is retried by the transport's policy (core.retry): a transient error the policy
# gives up on is thrown into the operation like any other.
def drive(transport: Transport | ShardTransport, op: Op[T]) -> T:
    """Run ``op`` on a synchronous transport; its result."""
    return resume(transport, op, None)


def resume(transport: Transport | ShardTransport, op: Op[T], reply: Any, error: BaseException | None = None) -> T:
    """Run ``op`` on from where it waits (a fresh one: ``reply`` None): send it ``reply``, or throw
    ``error`` into it; its result."""
    result: T = _run(transport, op, reply, error, "")[1]
    return result


def _run(transport: Transport | ShardTransport, op: Op[Any], reply: Any, error: BaseException | None,
         until: str) -> tuple[bool, Any]:
    """Run ``op`` on (as :func:`resume`): (True, its result) when it ends, or (False, the arguments of
    its first request ``until``, not run) when it yields that: ``"attempt"``, a counted script round
    trip (``counted(run_scripts(...))``); ``"together"``; ``""``: none."""
    retried = transport.policy.call
    try:
        method, args = op.send(reply) if error is None else op.throw(error)
        while not (method == until and (until != "attempt" or args[0] == "run_scripts")):
            try:
                reply = retried(getattr(transport, method), args)
            except BaseException as exc:  # the operation sees it where it yielded the request
                method, args = op.throw(exc)
            else:
                method, args = op.send(reply)
    except StopIteration as stop:
        return True, stop.value
    return False, args


def send(transport: Transport, op: Op[T], via: HeldConnection | None = None) -> Sent[T]:
    """Run ``op`` up to its first counted script round trip (``counted(run_scripts(...))``), send
    that on ``via`` without reading its reply and return: :meth:`Sent.result` reads the reply and
    runs the operation to its end. Requests before it run as :func:`drive` runs them (and what
    they raise is raised here)."""
    ended, args = _run(transport, op, None, None, "attempt")
    if ended:
        return Sent(transport, op, args=None, value=args)
    try:
        pending = transport.send(_attempted(transport, args), via)
    except RETRYABLE as exc:  # result() tries it again
        return Sent(transport, op, args, failed=exc)
    return Sent(transport, op, args, pending=pending)


def _attempted(transport: Transport, args: tuple[Any, ...]) -> list[list[Any]]:
    """The commands of a counted script round trip (``args``: its request's), counted as an attempt."""
    calls, before = args[1]
    args[2].n += 1  # its Attempts
    return [*before, *(evalsha(s, transport.route_key, a) for s, a in calls)]


class Sent(Generic[T]):
    """An operation :func:`send` paused with its round trip sent and the reply unread."""

    __slots__ = ("_args", "_failed", "_op", "_pending", "_transport", "_value")

    def __init__(self, transport: Transport, op: Op[T], args: tuple[Any, ...] | None, *,
                 pending: AnyPending | None = None, failed: BaseException | None = None, value: Any = None) -> None:
        self._transport, self._op, self._args = transport, op, args
        self._pending, self._failed, self._value = pending, failed, value

    def result(self) -> T:
        """Read the reply and run the operation to its end (call it once); its result. A reply
        lost with the connection (or a send that failed) is asked for again as :func:`drive`
        retries a request: the operation learns that it was retried."""
        transport, args = self._transport, self._args
        if args is None:  # the operation ended before its round trip
            value: T = self._value
            return value
        calls, before = args[1]
        try:
            if self._pending is None:
                raise self._failed or RuntimeError("nothing was sent")
            replies = transport.checked(calls, self._pending.read()[len(before):])
            reply: Any = (replies, args[2].n > 1)
        except RETRYABLE:
            try:
                reply = transport.policy.call(transport.attempt, args)
            except BaseException as exc:  # the operation sees it where it yielded the request
                return resume(transport, self._op, None, exc)
        except BaseException as exc:
            return resume(transport, self._op, None, exc)
        return resume(transport, self._op, reply)


Outcome: TypeAlias = tuple[bool, Any]  # (True, an operation's result) or (False, the exception it raised)


def drive_together(ops: Sequence[tuple[Transport, Op[Any]]], reads: Sequence[list[Any]] = (),
                   ) -> tuple[list[Outcome], list[Any] | BaseException]:
    """Run several operations, each on its own transport (all on one client: the shards of one prefix),
    with their first counted script round trips (``counted(run_scripts(...))``) made together in one
    round trip (one pipeline: on a cluster client one write to each node, then the reads); what each
    requests before and after that runs as :func:`drive` runs it. Each is then finished as
    :meth:`Sent.result` finishes a sent one (a round trip that failed is retried for each alone).
    ``reads``: plain commands that go last in the same round trip (they see what the operations' scripts
    did), not retried.
    Returns each operation's outcome, in order (every one is run to its end, whatever the others
    raise), and the replies of ``reads`` (or what the round trip raised)."""
    return Together(ops, reads, send=False).finish()


class Together:
    """:func:`drive_together` in two halves: made, it runs the operations up to their round trip and
    makes it (``send``: sends it without reading the replies, :meth:`Transport.send`); :meth:`finish`
    reads the replies and finishes the operations."""

    __slots__ = ("_failed", "_ops", "_outcomes", "_pending", "_replies", "_scripted", "_waiting")

    def __init__(self, ops: Sequence[tuple[Transport, Op[Any]]], reads: Sequence[list[Any]], send: bool) -> None:
        self._ops = ops
        self._outcomes: list[Outcome] = [(False, None)] * len(ops)
        self._waiting: list[tuple[int, tuple[Any, ...], int, int]] = []  # (index, its request's args, first, end)
        self._failed: BaseException | None = None
        self._pending: AnyPending | None = None
        self._replies: list[Any] = []
        commands: list[list[Any]] = []
        for i, (transport, op) in enumerate(ops):
            try:
                ended, args = _run(transport, op, None, None, "attempt")
            except Exception as exc:
                self._outcomes[i] = (False, exc)
                continue
            if ended:
                self._outcomes[i] = (True, args)
                continue
            first = len(commands)
            commands += _attempted(transport, args)
            self._waiting.append((i, args, first, len(commands)))
        self._scripted = len(commands)
        if not self._waiting and not reads:
            return
        transport = ops[self._waiting[0][0] if self._waiting else 0][0]
        try:
            if send:
                self._pending = transport.send([*commands, *reads])
            else:
                self._replies = transport.round_trip([*commands, *reads])
        except RETRYABLE as exc:  # each is asked for again, alone (Sent.result)
            self._failed = exc

    def finish(self) -> tuple[list[Outcome], list[Any] | BaseException]:
        """Each operation's outcome, in order, and the replies of the reads (or what the round trip raised)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                self._replies = pending.read()
            except RETRYABLE as exc:
                self._failed = exc
        outcomes, failed, replies = self._outcomes, self._failed, self._replies
        for i, args, first, end in self._waiting:
            transport, op = self._ops[i]
            if failed is not None:
                sent: Sent[Any] = Sent(transport, op, args, failed=failed)
            else:
                sent = Sent(transport, op, args, pending=Pending(None, None, False, end - first, replies[first:end]))
            try:
                outcomes[i] = (True, sent.result())
            except Exception as exc:
                outcomes[i] = (False, exc)
        return outcomes, (failed if failed is not None else replies[self._scripted:])


def send_together(transport: ShardTransport, op: Op[T]) -> TogetherSent[T]:
    """Run a sharded queue's operation up to its first ``together`` request and send that round trip
    without reading its replies (:class:`Together`); :meth:`TogetherSent.result` reads them and runs
    the operation to its end (a sharded slot's prefetch)."""
    ended, args = _run(transport, op, None, None, "together")
    if ended:
        return TogetherSent(transport, op, None, args)
    ops, reads = args
    return TogetherSent(transport, op, Together([(transport.shards[shard], o) for shard, o in ops], reads, True))


class TogetherSent(Generic[T]):
    """A sharded operation :func:`send_together` paused with its round trip sent and the replies unread."""

    __slots__ = ("_op", "_together", "_transport", "_value")

    def __init__(self, transport: ShardTransport, op: Op[T], together: Together | None, value: Any = None) -> None:
        self._transport, self._op, self._together, self._value = transport, op, together, value

    def result(self) -> T:
        """Read the replies and run the operation to its end (call it once); its result."""
        together, self._together = self._together, None
        if together is None:
            value: T = self._value
            return value
        try:
            reply = together.finish()
        except BaseException as exc:
            return resume(self._transport, self._op, None, exc)
        return resume(self._transport, self._op, reply)


async def adrive(transport: AsyncTransport | AsyncShardTransport, op: Op[T]) -> T:
    """Run ``op`` on an asynchronous transport; its result."""
    retried = transport.policy.acall
    try:
        method, args = op.send(None)
        while True:
            try:
                reply = await retried(getattr(transport, method), args)
            except BaseException as exc:  # cancellation too: the operation sees it where it yielded
                method, args = op.throw(exc)
            else:
                method, args = op.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


# --- a sharded prefix's transports (core/shardops.py) ---------------------------------------
# A sharded queue's operation is written once too: it runs each shard's operation on that shard's
# transport by a request ``on(shard, op)`` (None: the home queue's), and several shards' at once by
# ``together([(shard, op), ...])``. Its transport only passes them on: each shard's operation retries
# its own requests (by its transport's policy), so the sharded transport's policy retries nothing.
class Direct:
    """The policy of a sharded queue's transport: no retries (what it runs retries its own requests)."""

    @staticmethod
    def call(fn: Callable[..., T], args: Iterable[Any]) -> T:
        return fn(*args)

    @staticmethod
    async def acall(fn: Callable[..., Any], args: Iterable[Any]) -> Any:
        return await fn(*args)


class ShardTransport:
    """Runs a sharded queue's requests: each shard's operations on that shard's :class:`Transport`."""

    policy = Direct()

    def __init__(self, home: Transport, shards: Sequence[Transport]) -> None:
        self.home = home
        self.shards = tuple(shards)

    def on(self, shard: int | None, op: Op[T]) -> T:
        """``op`` driven on shard ``shard``'s transport (None: the home queue's)."""
        return drive(self.home if shard is None else self.shards[shard], op)

    def together(self, ops: Sequence[tuple[int, Op[Any]]], reads: Sequence[list[Any]],
                 ) -> tuple[list[Outcome], list[Any] | BaseException]:
        """Several shards' operations with their first script round trips, and ``reads``, in one
        (:func:`drive_together`)."""
        return drive_together([(self.shards[shard], op) for shard, op in ops], reads)

    def home_round_trip(self, commands: list[list[Any]]) -> list[Any]:
        """One round trip on the home transport, not retried (a read whose failure has a fallback)."""
        return self.home.round_trip(commands)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class AsyncShardTransport:
    """The same on :class:`AsyncTransport`s; ``together`` runs the shards' operations concurrently (each
    its own round trips: a ``redis.asyncio`` pipeline cannot be sent now and read later)."""

    policy = Direct()

    def __init__(self, home: AsyncTransport, shards: Sequence[AsyncTransport]) -> None:
        self.home = home
        self.shards = tuple(shards)

    async def on(self, shard: int | None, op: Op[T]) -> T:
        return await adrive(self.home if shard is None else self.shards[shard], op)

    async def together(self, ops: Sequence[tuple[int, Op[Any]]], reads: Sequence[list[Any]],
                       ) -> tuple[list[Outcome], list[Any] | BaseException]:
        async def outcome(shard: int, op: Op[Any]) -> Outcome:
            try:
                return True, await adrive(self.shards[shard], op)
            except Exception as exc:
                return False, exc

        async def read() -> list[Any] | BaseException:
            try:
                return await self.home.round_trip(list(reads)) if reads else []
            except Exception as exc:
                return exc
        replies, *outcomes = await asyncio.gather(read(), *(outcome(shard, op) for shard, op in ops))
        return outcomes, replies

    async def home_round_trip(self, commands: list[list[Any]]) -> list[Any]:
        return await self.home.round_trip(commands)

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)


def on(shard: int | None, op: Op[Any]) -> Request:
    """Run ``op`` on shard ``shard``'s transport (None: the home queue's); its result, or what it raised."""
    return "on", (shard, op)


def together(ops: Sequence[tuple[int, Op[Any]]], reads: Sequence[list[Any]] = ()) -> Request:
    """Run several shards' operations at once, and plain commands ``reads`` (not retried): each
    operation's :data:`Outcome`, in order, and the replies of ``reads`` (or what their round trip raised)."""
    return "together", (ops, reads)


def request(req: Request) -> Op[Any]:
    """An operation of one request (``on(shard, request(execute(...)))``)."""
    return (yield req)


# --- requests (see the transports' methods of the same names) ------------------------------
def run(script: Any, args: list[Any]) -> Request:
    return "run", (script, args)


def run_scripts(calls: Sequence[ScriptCall], before: Sequence[list[Any]] = ()) -> Request:
    return "run_scripts", (calls, before)


def execute(commands: Sequence[list[Any]], *, transaction: bool = False, raise_on_error: bool = True) -> Request:
    return "execute", (commands, transaction, raise_on_error)


def round_trip(commands: list[list[Any]]) -> Request:
    return "round_trip", (commands,)


def call(name: str, *args: Any, **kwargs: Any) -> Request:
    """A redis-py client command (its reply decoded as redis-py decodes it)."""
    return "call", (name, args, kwargs)


def counted(request: Request) -> Request:
    """``request`` answered as (its reply, whether it was retried): a retried request may have
    run before (only its reply was lost), which an answer that is not idempotent must allow for."""
    return "attempt", (*request, Attempts())


def unmark_wake(reply: Any) -> tuple[Any, bool]:
    """push.lua's reply without its wake-up mark ('~' first: a user joined a rotation), and whether
    it had one (asked for by a shard of a sharded prefix only: ``Commands.report_wakes``)."""
    raw = text(reply)
    return (raw[1:], True) if raw.startswith("~") else (raw, False)


def acked(code: int, retried: bool) -> int:
    """An ack's code; -1 (no such task) after a retry: the attempt whose reply was lost did it."""
    return 1 if retried and code == -1 else code


class QueueOps:
    """The state and operations the two queues share; they add a client, its scripts and transport."""

    scripts: Scripts

    def __init__(self, config: FairQueueConfig, worker_id: str | None, shard: int | None = None) -> None:
        self.proto = Commands(config, worker_id, shard)
        self.config = config
        self.keys = self.proto.keys
        self._leases: dict[str, str] = {}  # task id -> lease token, for delete_task(task_id)
        self._synced: dict[str, float] = {}  # worker id -> when its steal set was last checked
        # Redis may come back empty (a restart without persistence): look again this often
        self.steal_set_recheck_seconds = STEAL_SET_RECHECK_SECONDS
        self.stealer_forget_seconds = STEALER_FORGET_SECONDS
        self._orphans: dict[str, tuple[float, tuple[str, ...]]] = {}  # worker id -> (checked at, orphans)
        self.orphan_recheck_seconds = ORPHAN_RECHECK_SECONDS
        self._limits_checked: float | None = None  # when the limit settings' mirror was last checked
        self.limits_recheck_seconds = LIMITS_RECHECK_SECONDS
        # a worker's acks leave the metrics to this buffer, flushed once per tick (None: each ack
        # writes them; see scripts/buffered.py for what a crash loses)
        self.metrics_buffer: MetricsBuffer | None = None

    # --- push ---------------------------------------------------------------------------
    def _push(self, task: Task, user_id: str | None, traced: bool = False,
              encoded: list[Any] | None = None) -> Op[dict[str, Any]]:
        """``encoded``: the task's (header, body) from :meth:`Commands.prepare` (checked and encoded
        already: not again; ignored while spans record, the span's context then goes in the body)."""
        if tracing.ENABLED and not traced:  # OpenTelemetry installed: a span, its context in the task
            return (yield from tracing.trace_push(task, self._push(task, user_id, True, encoded)))
        if encoded is not None and not (tracing.ENABLED and tracing.active()):
            args = encoded
        else:
            task, args = self.proto.prepare(task, user_id)
        with redis_errors("push"):
            stored, retried = yield counted(run(self.scripts.push, self.proto.push_args(
                [args], options=[self.proto.push_options(task)])))
            if self.proto.report_wakes:
                stored, woke = unmark_wake(stored)
                if woke:
                    yield from self._wake_home([task])
        outcome = push_outcome(task, stored)
        if retried and outcome["duplicate"]:  # most likely stored by the attempt whose reply was lost
            outcome.update(success=True, duplicate=False)
        return outcome

    def _push_batch(self, tasks: Iterable[Task], user_id: str | None, idempotent: bool = False,
                    traced: bool = False, encoded: Sequence[list[Any]] | None = None) -> Op[dict[str, Any]]:
        """``encoded``: each task's (header, body) from :meth:`Commands.prepare` (checked and encoded
        already: not again; ignored while spans record, the span's context then goes in the bodies)."""
        batch = list(tasks)
        if tracing.ENABLED and not traced:  # OpenTelemetry installed: one span, its context in the tasks
            return (yield from tracing.trace_push_batch(batch, self._push_batch(batch, user_id, idempotent, True,
                                                                                   encoded)))
        if encoded is not None and not (tracing.ENABLED and tracing.active()):
            if len(encoded) != len(batch):
                raise ValueError(f"{len(batch)} tasks but {len(encoded)} encoded")
            pairs: Sequence[list[Any]] | None = encoded
        else:
            pairs = None
            for task in batch:
                self.proto.check(task, user_id)
        # enable_pipeline_optimization=False: one script call per task (still one round trip)
        size = self.config.queue.batch_size if self.config.queue.enable_pipeline_optimization else 1
        groups = list(chunks(batch, size))
        options = self.proto.push_options

        def calls() -> Iterator[ScriptCall]:
            encode = self.proto.encode
            for start in range(0, len(batch), size):
                group = batch[start:start + size]
                args = pairs[start:start + size] if pairs is not None else [encode(task) for task in group]
                yield self.scripts.push, self.proto.push_args(args, idempotent, [options(task) for task in group])

        with redis_errors("push_batch"):
            (replies, error), retried = yield counted(("stream_scripts", (Replayable(calls()),)))
            if self.proto.report_wakes:
                marked = [unmark_wake(r) for r in replies]
                replies = [r for r, _ in marked]
                if any(w for _, w in marked):
                    yield from self._wake_home(batch)
        ids, duplicates = batch_outcome(groups, replies)
        if retried:  # the duplicates were most likely stored by the attempt whose reply was lost
            ids, duplicates = ids + duplicates, []
        if error is not None:
            if ids and not idempotent:  # idempotent: the caller pushes them all again (duplicates)
                yield from self._delete(ids)
            raise error
        return {"success": not duplicates, "pushed": len(ids), "task_ids": ids, "duplicates": duplicates}

    def _wake_home(self, tasks: Iterable[Task]) -> Op[None]:
        """A push made a user join a shard's rotation (a shard of a sharded prefix): leave one token on
        the home wake list of each of the tasks' partitions, where the idle workers wait (core/sharded.py).
        LPUSH then LTRIM: the list holds at most one token, ``s<shard number>`` (the waiter pops there first;
        shard 0's own wake-ups, ``1``, share the list: shard 0's tag is the home tag)."""
        parts = dict.fromkeys(self.proto.partition_of(t.user_id or "") for t in tasks)
        commands: list[list[Any]] = []
        for part in parts:
            key = self.keys.home_wake(part)
            commands += [["LPUSH", key, f"s{self.keys.shard or 0}"], ["LTRIM", key, 0, 0]]
        yield execute(commands)

    def _wait_home(self, partitions: Sequence[str], timeout: float) -> Op[tuple[str, str] | None]:
        """Wait up to ``timeout`` for a token on the home wake lists of ``partitions`` (BLPOP: they
        share the home hash tag, one slot on a cluster): (the wake list, its token: the number of the
        shard a push woke), or None when none came."""
        keys = [self.keys.home_wake(p) for p in dict.fromkeys(partitions)]
        if not keys or timeout < PRECISE_WAIT_SECONDS:
            yield "sleep", (max(timeout, 0.0),)
            return None
        with redis_errors("wait_for_work"):
            woke = yield call("blpop", keys, timeout=timeout)
        return None if woke is None else (text(woke[0]), text(woke[1]))

    # --- pop ----------------------------------------------------------------------------
    def _steal_set_unsynced(self, plan: PopPlan) -> bool:
        """Whether :meth:`_sync_steal_set` has work (asked first: a generator costs the hot paths time)."""
        if not self.config.workers:
            return False
        checked = self._synced.get(plan.worker_id)
        return checked is None or time.monotonic() - checked > self.steal_set_recheck_seconds

    def _sync_steal_set(self, plan: PopPlan) -> Op[None]:
        """Check the worker's steal copies (``steal_sync.lua``) and rebuild them from its definitions
        (from config) when their digest in Redis is not theirs (first use, a changed configuration,
        Redis lost its keys, a steal key was moved aside). Workers without steal targets sync too:
        that deletes the copies a former configuration gave them."""
        forget_ms = int(self.stealer_forget_seconds * 1000)
        if not int((yield run(self.scripts.steal_sync, self.proto.steal_sync_args(plan, forget_ms, False)))):
            yield run(self.scripts.steal_sync, self.proto.steal_sync_args(plan, forget_ms, True))
        self._synced[plan.worker_id] = time.monotonic()

    def _limits_unsynced(self) -> bool:
        """Whether :meth:`_sync_limits` is due (first use, then every ``limits_recheck_seconds``)."""
        checked = self._limits_checked
        return checked is None or time.monotonic() - checked > self.limits_recheck_seconds

    def _sync_limits(self) -> Op[None]:
        """Mirror the tenant limit settings into Redis (``limits_sync.lua``) unless Redis holds them
        already (their digest): every script reads them from there. Processes with different
        settings overwrite each other's mirror; keep them alike."""
        if not int((yield run(self.scripts.limits_sync, self.proto.limits_sync_args(False)))):
            yield run(self.scripts.limits_sync, self.proto.limits_sync_args(True))
        self._limits_checked = time.monotonic()

    def _orphans_unchecked(self, plan: PopPlan) -> bool:
        """Whether :meth:`_check_orphans` is due (asked first, like :meth:`_steal_set_unsynced`)."""
        if not plan.orphan_watch:
            return False
        checked = self._orphans.get(plan.worker_id)
        return checked is None or time.monotonic() - checked[0] > self.orphan_recheck_seconds

    def _check_orphans(self, plan: PopPlan) -> Op[None]:
        """Read which of the partitions the worker watches are orphaned: none of their workers has
        a heartbeat key (it expires ``orphan_after`` seconds after the last beat, by Redis's clock).
        Only a live worker takes over: none when the worker's own key is absent (a queue that pops
        without a worker's heartbeat, or a worker whose own beats stopped)."""
        owners = plan.beat_owners
        own, *beats = yield call("mget", [self.keys.beat(plan.worker_id), *(self.keys.beat(w) for w in owners)])
        alive = {w for w, beat in zip(owners, beats, strict=True) if beat is not None}
        orphans = plan.orphaned(alive) if own is not None else ()
        before = self._orphans.get(plan.worker_id)
        if orphans != (before[1] if before else ()):
            logger.info("fairque: worker %s takes over the orphaned partitions %s (no live heartbeat)",
                        plan.worker_id, ", ".join(orphans) or "(none any more)")
        self._orphans[plan.worker_id] = (time.monotonic(), orphans)

    def _pop_syncs_due(self, plan: PopPlan) -> bool:
        """Whether :meth:`_sync_before_pop` has work (asked first, like :meth:`_steal_set_unsynced`)."""
        return self._limits_unsynced() or self._steal_set_unsynced(plan) or self._orphans_unchecked(plan)

    def _sync_before_pop(self, plan: PopPlan) -> Op[None]:
        """What a pop brings up to date first, each when due: the tenant limits' mirror, the worker's
        steal copies, which partitions are orphaned."""
        if self._limits_unsynced():
            yield from self._sync_limits()
        if self._steal_set_unsynced(plan):
            yield from self._sync_steal_set(plan)
        if self._orphans_unchecked(plan):
            yield from self._check_orphans(plan)

    def _orphaned(self, plan: PopPlan) -> tuple[str, ...]:
        """The partitions the worker took over when it last looked (see ``queue.orphan_takeover``)."""
        checked = self._orphans.get(plan.worker_id)
        return checked[1] if checked else ()

    def _pop(self, worker_id: str | None, lease_seconds: float | None) -> Op[tuple[Task | None, float | None]]:
        tasks, due = yield from self._pop_many(1, worker_id, lease_seconds)
        return (tasks[0] if tasks else None), due

    def _pop_many(self, count: int, worker_id: str | None, lease_seconds: float | None,
                  ) -> Op[tuple[list[Task], float | None]]:
        resynced = False
        while True:
            step = yield from self._pop_step(worker_id, count, lease_seconds, 0, None)
            if not step.again or (step.resync and resynced):  # the copies synced: pop once more
                return step.tasks, step.due
            resynced = resynced or step.resync

    def _pop_step(self, worker_id: str | None, count: int, lease_seconds: float | None, park_ms: int,
                  unpark: str | None) -> Op[PopStep]:
        plan = self.proto.plan(worker_id)
        with redis_errors("pop"):
            if self._pop_syncs_due(plan):
                yield from self._sync_before_pop(plan)
            args, token = self.proto.pop_args(plan, lease_seconds, count, park_ms=park_ms, unpark=unpark,
                                              orphans=self._orphaned(plan))
            reply = PopReply.parse((yield run(self.scripts.pop, args)))
            for _ in range(MAX_RESYNCS):
                if not (reply.resync and len(reply.rows) < count):
                    break
                # the steal copies were out of date (nothing stolen): sync them, and lease the rest as
                # the same call would have (a slot about to wait parks now, its '-' wake-up taken back).
                # Again when the next call found a copy spoiled too (it moved it aside: each round
                # clears one, so a batch is not cut short by the second of two spoiled copies)
                yield from self._sync_steal_set(plan)
                if park_ms and not reply.rows:
                    yield call("delete", self.keys.hand(token))
                args, _ = self.proto.pop_args(plan, lease_seconds, count - len(reply.rows),
                                              park_ms=0 if reply.rows else park_ms, token=token,
                                              orphans=self._orphaned(plan))
                reply = reply.then(PopReply.parse((yield run(self.scripts.pop, args))))
        return (yield from self._leased(reply, token, plan))

    def _take_handed(self, token: str, worker_id: str | None) -> Op[PopStep]:
        plan = self.proto.plan(worker_id)
        with redis_errors("take_handed"):
            item = yield call("lpop", self.keys.hand(token))
        if item is None or text(item) == "-":
            return PopStep([], None, token)
        parts = text(item).split("\t", 3)
        if len(parts) < 4 or not parts[2].isdigit():  # garbage on the hand list: a task leased (if any) expires
            logger.error("fairque: corrupt data found and set aside: %s holds %r, not a handed task; ignored",
                         self.keys.hand(token), text(item)[:40])
            return PopStep([], None, token)
        return (yield from self._leased(PopReply.handed(item), token, plan))

    def _leased(self, reply: PopReply, token: str, plan: PopPlan) -> Op[PopStep]:
        """The step of a pop reply; corrupt tasks are dead-lettered."""
        tasks, corrupt = self.proto.read_pop(reply, token, plan.worker_id)
        if reply.resync:  # the steal copies are out of date: sync before the next pop
            self._synced.pop(plan.worker_id, None)
        for task_id, why in corrupt:
            yield from self._fail_raw(task_id, token, why, "CorruptTaskError", "", "corrupt", dead=True)
        for task in tasks:
            self._leases[task.task_id] = token
        return PopStep(tasks, reply.due, token, handed_over=not reply.served, corrupt=len(corrupt),
                       resync=reply.resync)

    def _complete_and_pop_many(self, done: Sequence[DoneTask], count: int,
                               worker_id: str | None, lease_seconds: float | None, visit: bool = False,
                               ) -> Op[tuple[list[int], list[Task], float | None]]:
        """(``visit``: with ``count`` 0, a pop of no task all the same: its timers run and it says
        when something is due, as an empty pop's; a sharded queue's visit of a shard with no ready work.)"""
        plan = self.proto.plan(worker_id)
        pops = count > 0 or visit
        with redis_errors("complete_and_pop"):
            if self._pop_syncs_due(plan):
                yield from self._sync_before_pop(plan)
            pop_args, token = self.proto.pop_args(plan, lease_seconds, count,
                                                  orphans=self._orphaned(plan), visit=visit)
            buffer = self.metrics_buffer if self.config.queue.metrics else None
            ack_args = self.proto.complete_args(((t.task_id, t.lease_token or "", d) for t, d, _ in done),
                                                buffered=buffer is not None) if done else []
            calls: list[ScriptCall] = []
            if done and pops:  # one script call for both (ack_pop.lua)
                calls.append((self.scripts.ack_pop, [len(ack_args), *ack_args, *pop_args]))
            elif done:
                calls.append((self.scripts.complete, ack_args))
            elif pops:  # nothing to acknowledge: the pop alone
                calls.append((self.scripts.pop, pop_args))
            flushed = buffer.take() if buffer is not None and buffer.due() else []
            if flushed:  # the metrics of the last tick go with this round trip
                calls.append((self.scripts.metrics_flush, self.proto.metrics_flush_args(flushed)))
            results = [self.proto.result_command(t, data) for t, _, data in done if data is not None]
            try:
                replies, retried = yield counted(run_scripts(calls, results))
            except BaseException:
                if buffer is not None and flushed:
                    buffer.restore(flushed)
                raise
        for task, _, _ in done:
            self._leases.pop(task.task_id, None)
        acks: Any = []
        popped: Any = None
        if done and pops:  # (the replies of the calls above, in their order)
            acks, popped = replies[0]
        elif done:
            acks = replies[0]
        elif pops:
            popped = replies[0]
        if buffer is not None:
            acks, waits = acks[:len(done)], acks[len(done):]
            self._buffer_done(buffer, done, acks, waits)
        if flushed:
            self._log_flush(replies[-1])
        codes = [acked(int(code), retried) for code in acks]
        if not pops:
            return codes, [], None
        step = yield from self._leased(PopReply.parse(popped), token, plan)
        if count <= 0:
            return codes, [], step.due
        if step.again:
            tasks, due = yield from self._pop_many(count, worker_id, lease_seconds)
            return codes, tasks, due
        return codes, step.tasks, step.due

    @staticmethod
    def _buffer_done(buffer: MetricsBuffer, done: Sequence[DoneTask],
                     acks: Sequence[Any], waits: Sequence[Any]) -> None:
        """Add the tasks acknowledged as done (code 1, wait known) to the metrics buffer."""
        at_ms = int(time.time() * 1000)
        for (task, duration, _), code, wait in zip(done, acks, waits, strict=True):
            if int(code) == 1 and int(wait) >= 0 and task.user_id is not None:
                buffer.add(task.user_id, int(wait), -1 if duration is None else int(duration * 1000), at_ms)

    @staticmethod
    def _log_flush(problems: Any) -> None:
        for problem in problems or ():
            logger.error("fairque: corrupt data found and set aside: %s", text(problem))

    def _flush_metrics(self) -> Op[int]:
        """Write what the metrics buffer gathered (one call); the number of increments written."""
        buffer = self.metrics_buffer
        taken = buffer.take() if buffer is not None else []
        if not taken:
            return 0
        assert buffer is not None
        try:
            with redis_errors("flush_metrics"):
                problems = yield run(self.scripts.metrics_flush, self.proto.metrics_flush_args(taken))
        except BaseException:
            buffer.restore(taken)
            raise
        self._log_flush(problems)
        return len(taken)

    def _wait_and_pop(self, worker_id: str | None, timeout: float, lease_seconds: float | None,
                      ) -> Op[tuple[Task | None, float | None]]:
        plan = self.proto.plan(worker_id)
        if self._orphans_unchecked(plan):
            with redis_errors("wait_and_pop"):
                yield from self._check_orphans(plan)
        keys = [self.keys.wake(p) for p in (*plan.wake_partitions, *self._orphaned(plan))]
        if not keys or timeout < PRECISE_WAIT_SECONDS:  # (a push meanwhile waits for the end of the sleep)
            yield "sleep", (max(timeout, 0.0),)
            return (yield from self._pop(worker_id, lease_seconds))
        with redis_errors("wait_and_pop"):
            if self._limits_unsynced():
                yield from self._sync_limits()
            if self._steal_set_unsynced(plan):
                yield from self._sync_steal_set(plan)
            step = yield from self._park_and_pop(plan, keys, max(timeout, 0.001), lease_seconds)
        if step is None or step.again:
            return (yield from self._pop(worker_id, lease_seconds))
        return (step.tasks[0] if step.tasks else None), step.due

    def _park_and_pop(self, plan: PopPlan, keys: list[str], wait: float, lease_seconds: float | None,
                      ) -> Op[PopStep | None]:
        """Pop, or park and wait on the slot's hand list and the wake lists (one round trip). A task
        handed over ends it; after a wake-up or a timeout the slot unparks and pops (a second round
        trip, off the hand-off's path). None: Redis had lost its scripts (nothing parked)."""
        park, token = self.proto.pop_args(plan, lease_seconds, park_ms=int(wait * 1000) + PARK_MARGIN_MS,
                                          orphans=self._orphaned(plan))
        hand = self.keys.hand(token)
        first, woke = yield round_trip([evalsha(self.scripts.pop, self.keys.stats, park),
                                        ["BLPOP", hand, *keys, f"{wait:.3f}"]])
        if isinstance(first, redis.exceptions.NoScriptError):
            return None
        for reply in (first, woke):
            if isinstance(reply, Exception):
                raise reply
        popped = PopReply.parse(first)
        if woke is not None and text(woke[0]) == hand:
            # '-': the first pop leased what was ready; anything else: a push handed a task over
            return (yield from self._leased(popped if text(woke[1]) == "-" else PopReply.handed(woke[1]),
                                            token, plan))
        yield from self._leased(popped, token, plan)  # nothing leased: logs what the first pop set aside
        step = yield from self._pop_step(plan.worker_id, 1, lease_seconds, 0, token)
        if not step.handed_over:
            return step
        handed = yield from self._take_handed(token, plan.worker_id)  # a push leased us a task as the wait ended
        return handed if handed.tasks or handed.corrupt else None

    def _wait_for_work(self, worker_id: str | None, timeout: float) -> Op[bool]:
        plan = self.proto.plan(worker_id)
        if self._orphans_unchecked(plan):
            with redis_errors("wait_for_work"):
                yield from self._check_orphans(plan)
        keys = [self.keys.wake(p) for p in (*plan.wake_partitions, *self._orphaned(plan))]
        if not keys or timeout <= 0:
            return False
        with redis_errors("wait_for_work"):
            return (yield call("blpop", keys, timeout=max(timeout, 0.001))) is not None

    # --- finishing ----------------------------------------------------------------------
    def _complete(self, task: Task, duration: float | None) -> Op[None]:
        if (yield from self._ack(task.task_id, task.lease_token or "", duration)) == 0:
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")

    def _complete_code(self, task: Task, duration: float | None) -> Op[int]:
        return (yield from self._ack(task.task_id, task.lease_token or "", duration))

    def _ack(self, task_id: str, token: str, duration: float | None) -> Op[int]:
        with redis_errors("complete"):
            args = self.proto.complete_args([(task_id, token, duration)])
            reply, retried = yield counted(run(self.scripts.complete, args))
        code = acked(int(reply[0]), retried)
        self._leases.pop(task_id, None)
        return code

    def _delete_task(self, task_id: str) -> Op[bool]:
        token = self._leases.get(task_id)
        if token is None:
            return bool((yield from self._delete([task_id])))
        code = yield from self._ack(task_id, token, None)
        if code == 0:
            logger.warning("fairque: late ack for task %s rejected: its lease was taken over", task_id)
        return code == 1

    def _fail(self, task: Task, error: BaseException | str, traceback: str, failure_type: str, retry: bool,
              ) -> Op[str]:
        message, etype = self.proto.error_fields(error)
        result = yield from self._fail_raw(task.task_id, task.lease_token or "", message, etype, traceback,
                                           failure_type, dead=not retry, retry_count=task.retry_count)
        if result == "lost":
            raise LeaseLostError(f"task {task.task_id}: lease lost (it expired and was taken over)")
        return result

    def _fail_raw(self, task_id: str, token: str, message: str, etype: str, tb: str, ftype: str, *,
                  dead: bool, retry_count: int = 0) -> Op[str]:
        with redis_errors("fail"):
            args = self.proto.fail_args(task_id, token, retry_count, dead, message, etype, tb, ftype)
            reply, retried = yield counted(run(self.scripts.fail, args))
            outcome = self.proto.fail_outcome(reply)
            if retried and outcome == "lost":  # the lost reply's attempt most likely did it: which?
                outcome = "dead" if (yield call("hget", self.keys.task(task_id), "st")) == b"dead" else "retry"
        self._leases.pop(task_id, None)
        return outcome

    def _release(self, tasks: Sequence[Task], count: bool) -> Op[int]:
        if not tasks:
            return 0
        for t in tasks:
            self._leases.pop(t.task_id, None)
        with redis_errors("release"):
            return int((yield run(self.scripts.release, self.proto.release_args(tasks, count))))

    def _extend_leases(self, tasks: Sequence[Task], lease_seconds: float | None,
                       ) -> Op[tuple[list[str], list[str]]]:
        """Renew leases (fenced by the lease tokens, so safe to retry): (ids whose lease was lost,
        ids renewed that were cancelled while they run)."""
        if not tasks:
            return [], []
        with redis_errors("extend"):
            lost, cancelling = yield run(self.scripts.extend, self.proto.extend_args(tasks, lease_seconds))
        return [text(x) for x in lost], [text(x) for x in cancelling]

    # --- cancelling -------------------------------------------------------------------------
    def _cancel(self, task_id: str, user_id: str | None) -> Op[CancelResult]:
        """Cancel one task (``cancel.lua``); idempotent: a retry whose first attempt removed the task
        answers ``cancelled`` (the lost reply's answer), and a running task is flagged once."""
        with redis_errors("cancel"):
            reply, retried = yield counted(run(self.scripts.cancel, self.proto.cancel_args([task_id], user_id)))
            answer = text(reply[0])
            if answer == "not_found" and user_id is not None:  # ended already? its record says how
                raw = yield call("get", self.keys.result(user_id, task_id))
                if raw is not None:
                    finished = ResultSnapshot.read(user_id, None, raw)
                    if finished.status is TaskStatus.CANCELLED:
                        return CancelResult.CANCELLED
                    return CancelResult.FINISHED
        if answer == "not_found" and retried:
            return CancelResult.CANCELLED
        return CancelResult(answer)

    def _cancel_tenant(self, user_id: str, running: bool, chunk: int) -> Op[dict[str, int]]:
        """Cancel every delayed and queued task of ``user_id`` (and flag its leased ones when
        ``running``), at most ``chunk`` tasks per script call. Safe to retry (each call cancels what
        is still there; counts may then miss what a call whose reply was lost did)."""
        chunk = max(1, chunk)
        counts = {"cancelled": 0, "cancelling": 0}

        def add(answers: Iterable[Any]) -> None:
            for answer in answers:
                word = text(answer)
                if word in counts:
                    counts[word] += 1

        args = self.proto.cancel_queued_args(user_id, chunk)  # checks the user id before anything runs
        with redis_errors("cancel_tenant"):
            # delayed tasks first: one promoted meanwhile is then found in its lane
            yield from self._cancel_scan(self.keys.delayed, user_id, running, chunk, add)
            calls_left: int | None = None  # bounded by what was queued at the start, not by later pushes
            while calls_left is None or calls_left > 0:
                done, left = yield run(self.scripts.cancel_queued, args)
                counts["cancelled"] += int(done)
                if int(left) <= 0:
                    break
                calls_left = (int(left) // chunk + 1) if calls_left is None else calls_left - 1
            if running:
                yield from self._cancel_scan(self.keys.leases, user_id, running, chunk, add)
        return counts

    def _cancel_scan(self, key: str, user_id: str, running: bool, chunk: int,
                     add: Callable[[Iterable[Any]], None]) -> Op[None]:
        """Cancel the tasks of ``user_id`` among the members of the sorted set ``key`` (ZSCAN: every
        member there from start to end is seen), ``chunk`` ids per script call."""
        cursor = 0
        while True:
            cursor, members = yield call("zscan", key, cursor, count=chunk)
            ids = [text(m) for m, _ in members]
            for group in chunks(ids, chunk):
                add((yield run(self.scripts.cancel, self.proto.cancel_args(group, user_id, running))))
            if int(cursor) == 0:
                return

    def _set_progress(self, task: Task, fraction: float, message: str) -> Op[bool]:
        """``progress.lua``: safe to retry, it is fenced by the lease token (a write under a token
        that no longer holds the lease stores nothing) and writing the same value twice is harmless."""
        fraction, message = check_progress(fraction, message)
        if not task.lease_token:
            return False
        with redis_errors("set_progress"):
            stored = yield run(self.scripts.progress, [self.keys.base, task.task_id, task.lease_token,
                                                       repr(fraction), message])
        return bool(int(stored))

    def _delete(self, task_ids: Sequence[str]) -> Op[list[str]]:
        if not task_ids:
            return []
        with redis_errors("delete"):
            reply = yield run(self.scripts.delete, self.proto.delete_args(task_ids, False))
        return [text(x) for x in reply]

    # --- dead-letter queue ----------------------------------------------------------------
    def _dlq_size(self) -> Op[int]:
        with redis_errors("dlq_size"):
            return int((yield call("zcard", self.keys.dlq)))

    def _get_dlq(self, offset: int, limit: int, newest_first: bool) -> Op[list[DLQEntry]]:
        with redis_errors("get_dlq"):
            page = yield execute([self.proto.dlq_range_command(offset, limit, newest_first)])
            ids = [text(i) for i in page[0]]
            rows = yield execute([["HGETALL", self.keys.task(i)] for i in ids], raise_on_error=False)
        return self.proto.decode_dlq(ids, rows)

    def _get_dead(self, task_id: str) -> Op[DLQEntry | None]:
        with redis_errors("get_dead"):
            score, row = yield execute([["ZSCORE", self.keys.dlq, task_id], ["HGETALL", self.keys.task(task_id)]])
        return self.proto.decode_dead(task_id, row) if score is not None and row else None

    def _requeue_dead(self, task_ids: Iterable[str] | None) -> Op[list[str]]:
        return (yield from self._dlq_script(self.scripts.requeue_dead, task_ids))

    def _delete_dead(self, task_ids: Iterable[str] | None) -> Op[list[str]]:
        return (yield from self._dlq_script(self.scripts.delete, task_ids))

    def _purge_dlq(self) -> Op[int]:
        return len((yield from self._dlq_script(self.scripts.delete, None)))

    def _dlq_script(self, script: Any, task_ids: Iterable[str] | None) -> Op[list[str]]:
        """``script`` (requeue_dead or delete, dead tasks only) on ``task_ids``, or on every task dead
        when the call starts (None)."""
        def args(ids: Sequence[str] | None, newest: Any = "+inf") -> list[Any]:
            if script is self.scripts.delete:
                return self.proto.delete_args(ids, True, newest)
            return self.proto.dlq_args(ids, newest)

        done: list[str] = []
        with redis_errors("dlq"):
            if task_ids is None:  # 1000 per call until none is left of those dead now
                last = yield call("zrange", self.keys.dlq, -1, -1, withscores=True)
                if not last:
                    return done
                newest = repr(float(last[0][1]))  # one that dies again meanwhile is not taken twice
                while True:
                    batch = [text(x) for x in (yield run(script, args(None, newest)))]
                    if not batch:
                        return done
                    done += batch
            ids = list(task_ids)
            # only dead tasks: never touch live ones through the DLQ API (the scripts check again)
            dead = dead_ids(ids, (yield call("zmscore", self.keys.dlq, ids))) if ids else []
            if dead:
                done = [text(x) for x in (yield run(script, args(dead)))]
        return done

    # --- inspection -----------------------------------------------------------------------
    def _get_stats(self) -> Op[dict[str, Any]]:
        with redis_errors("get_stats"):
            raw, active, delayed, dlq = yield execute(self.proto.stats_commands())
        return self.proto.parse_stats(raw, int(active), int(delayed), int(dlq))

    def _fold_idle_tenants(self, window_seconds: float | None, limit: int, max_calls: int) -> Op[FoldResult]:
        """The retention sweep: fold the tenants idle for longer than ``window_seconds`` (None:
        ``queue.tenant_retention_seconds``; 0 there: nothing is ever folded), ``limit`` per script
        call, up to ``max_calls`` calls while more are due. Safe to run from every worker at once."""
        window = self.config.queue.tenant_retention_seconds if window_seconds is None else window_seconds
        total = FoldResult()
        if window_seconds is None and window <= 0:
            return total
        with redis_errors("fold_idle_tenants"):
            for _ in range(max(1, max_calls)):
                step = parse_fold((yield run(self.scripts.fold_idle,
                                             self.proto.fold_idle_args(int(window * 1000), limit))))
                for problem in step.problems:
                    logger.warning("fairque: retention sweep: %s", problem)
                total += step
                if not step.more:
                    break
        return total

    def _mark_idle_tenants(self, cursor: int, pages: int | None) -> Op[tuple[int, int]]:
        """Mark idle (``{fq}:idle``, unstamped) every tenant with a push counter, no unfinished task
        and no idle mark: tenants that went idle before the retention sweep existed, or whose mark was
        lost, so that the sweep folds them a window later. A mark already there is kept. O(stats
        fields), in pages of about 1000 from ``cursor`` (at most ``pages``, None: to the end);
        returns (how many were marked, the cursor to go on from: 0 when the scan is complete)."""
        marked, done = 0, 0
        with redis_errors("mark_idle_tenants"):
            while pages is None or done < pages:
                cursor, users = yield from self._pushed_page(cursor)
                done += 1
                if users:
                    live = yield call("zmscore", self.keys.live, users)
                    idle = [u for u, n in zip(users, live, strict=True) if n is None]
                    if idle:  # (a tenant live meanwhile is found live by the sweep, which unmarks it)
                        marked += int((yield call("zadd", self.keys.idle, dict.fromkeys(idle, 0), nx=True)))
                if cursor == 0:
                    break
        return marked, cursor

    def _get_task_state(self, task_id: str) -> Op[dict[str, str] | None]:
        with redis_errors("get_task_state"):
            row = yield call("hgetall", self.keys.task(task_id))
        return task_fields(row) if row else None

    def _user_depth(self, user_id: str) -> Op[dict[str, int]]:
        with redis_errors("user_depth"):
            return read_depth((yield execute(self.proto.depth_commands(user_id))))

    # --- tenant limits ------------------------------------------------------------------------
    def _set_tenant_limits(self, user_id: str, concurrency: int | Unchanged | None, rate: str | Unchanged | None,
                           burst: int | Unchanged | None) -> Op[dict[str, Any]]:
        """Runtime limits (idempotent): they win over the settings until cleared."""
        def whole(value: int | Unchanged | None, what: str) -> int | bool | None:
            if value is UNCHANGED:
                return None
            if value is None:
                return False
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskValidationError(f"{what} must be an integer >= 1 or None, not {value!r}")
            return value
        if rate is not UNCHANGED and rate is not None:
            try:
                parse_rate(rate)
            except ValueError as exc:
                raise TaskValidationError(str(exc)) from None
        spec = LimitSpec(whole(concurrency, "concurrency"),
                         None if rate is UNCHANGED else (False if rate is None else rate),
                         None if burst is UNCHANGED or burst is None else whole(burst, "burst"))
        return (yield from self._tenant_op(user_id, "set", spec))

    def _tenant_op(self, user_id: str, op: str, spec: LimitSpec | None = None) -> Op[dict[str, Any]]:
        """Run ``tenant.lua`` (idempotent: the same call again changes nothing), then read the
        tenant's state."""
        args = self.proto.tenant_args(user_id, op, spec)
        with redis_errors(f"{op}_tenant"):
            if self._limits_unsynced():
                yield from self._sync_limits()
            yield run(self.scripts.tenant, args)
        return (yield from self._get_tenant_limits(user_id))

    def _get_tenant_limits(self, user_id: str) -> Op[dict[str, Any]]:
        commands = self.proto.tenant_commands(user_id)
        with redis_errors("get_tenant_limits"):
            replies = yield execute(commands)
        return self.proto.tenant_state(user_id, replies)

    def _is_paused(self, user_id: str) -> Op[bool]:
        commands = self.proto.tenant_commands(user_id)
        with redis_errors("is_paused"):
            return bool((yield call("hexists", self.keys.tenant_paused, commands[0][2])))

    # --- results ----------------------------------------------------------------------------
    def _store_result(self, task: Task, record: dict[str, Any]) -> Op[None]:
        yield from self._store_result_json(task, dumps(record, what=f"result of task {task.task_id}"))

    def _store_result_json(self, task: Task, data: str) -> Op[None]:
        with redis_errors("store_result"):
            yield execute([self.proto.result_command(task, data)])

    def _get_result(self, task_id: str, user_id: str) -> Op[dict[str, Any] | None]:
        validate_user_id(user_id, self.config.queue.max_user_id_length)
        with redis_errors("get_result"):
            raw = yield call("get", self.keys.result(user_id, task_id))
        return None if raw is None else dict(json.loads(raw))

    def _read_result(self, task_id: str, user_id: str) -> Op[ResultSnapshot]:
        task_key, result_key = self.proto.result_keys(task_id, user_id)
        with redis_errors("read_result"):
            row, raw = yield execute([["HGETALL", task_key], ["GET", result_key]])
        return ResultSnapshot.read(user_id, task_fields(row) if row else None, raw)

    def _next_delayed_seconds(self) -> Op[float | None]:
        with redis_errors("next_delayed_seconds"):
            first = yield call("zrange", self.keys.delayed, 0, 0, withscores=True)
            if not first:
                return None
            sec, usec = yield call("time")  # the server's clock (a cluster pipeline cannot send TIME)
        return max(0.0, float(first[0][1]) / 1000.0 - (float(sec) + float(usec) / 1e6))

    # --- schedules (core/scheduler.py) ---------------------------------------------------------
    def _schedule_tick(self, name: str, tick: int | None, token: str, stale_ms: int,
                       skip: bool) -> Op[tuple[str, int, list[str]]]:
        """Claim ``tick`` of schedule ``name`` (``schedule_tick.lua``): (status, last tick, stale claims
        now ours). Safe to retry: a claim is idempotent by ``token`` (a retry answers 'claimed'
        again); a stale claim handed over by an attempt whose reply was lost goes stale again."""
        return (yield from self._schedule_ticks([(name, tick, skip)], token, stale_ms))[0]

    def _schedule_ticks(self, requests: Sequence[tuple[str, int | None, bool]], token: str,
                        stale_ms: int) -> Op[list[tuple[str, int, list[str]]]]:
        """:meth:`_schedule_tick` for several (name, tick or None, skip) in one round trip."""
        calls = [(self.scripts.schedule_tick, [self.keys.home, name, "" if tick is None else str(tick), token,
                                               stale_ms, "1" if skip else "0"]) for name, tick, skip in requests]
        with redis_errors("schedule_tick"):
            replies = yield run_scripts(calls)
        return [(text(r[0]), int(text(r[1]) or 0), [text(t) for t in r[2:]]) for r in replies]

    def _schedule_stale(self, names: Sequence[str], token: str, stale_ms: int) -> Op[dict[str, list[str]]]:
        """The claims of ``names`` not confirmed for ``stale_ms``, now ``token``'s: name -> ticks."""
        replies = yield from self._schedule_ticks([(n, None, False) for n in names], token, stale_ms)
        return {n: r[2] for n, r in zip(names, replies, strict=True)}

    def _schedule_done(self, name: str, ticks: Sequence[str]) -> Op[None]:
        """Confirm that the tasks of ``ticks`` are pushed (their claims end). Idempotent (HDEL)."""
        if ticks:
            with redis_errors("schedule_done"):
                yield call("hdel", self.keys.schedule(name), *(f"c:{t}" for t in ticks))

    def _schedule_states(self, names: Sequence[str]) -> Op[dict[str, dict[str, str]]]:
        """The state hash of each schedule (a key of the wrong type reads as empty). A read."""
        if not names:
            return {}
        with redis_errors("schedule_states"):
            rows = yield execute([["HGETALL", self.keys.schedule(n)] for n in names], raise_on_error=False)
        return {n: ({text(k): text(v) for k, v in row.items()} if isinstance(row, dict) else {})
                for n, row in zip(names, rows, strict=True)}

    def _schedule_set(self, name: str, fields: dict[str, str], delete: Sequence[str]) -> Op[None]:
        """Set and delete fields of a schedule's state (pause, resume, run-now time). Idempotent."""
        commands: list[list[Any]] = []
        if fields:
            commands.append(["HSET", self.keys.schedule(name), *(x for kv in fields.items() for x in kv)])
        if delete:
            commands.append(["HDEL", self.keys.schedule(name), *delete])
        if commands:
            with redis_errors("schedule_set"):
                yield execute(commands)

    def _pushed_tenants(self) -> Op[list[str]]:
        """Tenants that have a push counter in the stats hash (``u:<user>:pushed``): the tenants the
        queue has seen. O(stats fields), in pages. A read."""
        found: set[str] = set()
        cursor = 0
        with redis_errors("pushed_tenants"):
            while True:
                cursor, users = yield from self._pushed_page(cursor)
                found.update(users)
                if cursor == 0:
                    return sorted(found)

    def _pushed_page(self, cursor: int) -> Op[tuple[int, list[str]]]:
        """One page (about 1000 fields) of the push counters from ``cursor``: the cursor to go on
        from (0: done) and the tenants found."""
        cursor, page = yield call("hscan", self.keys.stats, cursor, match="u:*:pushed", count=1000)
        return int(cursor), sorted({text(f)[2:-7] for f in page})
