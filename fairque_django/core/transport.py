"""The one place that talks to redis-py for the queues: round trips (several commands in one
write, replies read in order), script calls with their reload after NOSCRIPT, and the
translation of redis-py errors into fairque's (:func:`redis_errors`).

Only redis-py's public API is used. Two things exist for speed, both measured (see
docs/benchmarks.md, "Command layer"): commands are packed by :func:`pack` (about 3x cheaper
than ``Connection.pack_commands``), and each connection pool keeps one connection out for the
hot paths (:class:`HeldConnection`: taking one from the pool and giving it back costs about
as much client time as a small command).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from .errors import FairQueueError, RedisUnavailableError
from .retry import Attempts, RetryPolicy

__all__ = ["AnyPending", "AsyncTransport", "HeldConnection", "NodesPending", "Pending", "Transport", "pack",
           "redis_errors"]

# A script call: the registered script (redis-py Script or AsyncScript) and its ARGV.
ScriptCall = tuple[Any, list[Any]]


# The replies of a Redis Cluster in a failover or resharding: the slot's master is down and no
# replica has taken over yet (CLUSTERDOWN, MASTERDOWN), or its keys are moving (TRYAGAIN). A
# command refused so did not run; redis-py's cluster client retries them, and what is left after
# its retries is an outage like a refused connection.
CLUSTER_OUTAGE: tuple[type[Exception], ...] = (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Turn redis-py errors into typed fairque errors."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailableError(f"{action} failed: Redis is unreachable ({exc})") from exc
    except redis.exceptions.RedisClusterException as exc:  # e.g. no node of the cluster answers
        raise RedisUnavailableError(f"{action} failed: the Redis cluster is unusable ({exc})") from exc
    except CLUSTER_OUTAGE as exc:
        raise RedisUnavailableError(f"{action} failed: the Redis cluster is failing over ({exc})") from exc
    except redis.ResponseError as exc:
        raise FairQueueError(f"{action} failed: Redis answered {exc}") from exc


def _bulk(args: Iterable[Any]) -> bytes:
    """Arguments (str, bytes, ints and floats) as RESP bulk strings."""
    parts: list[bytes] = []
    append = parts.append
    for value in args:
        kind = type(value)
        if kind is str:
            value = value.encode("utf-8")
        elif kind is int:  # (not bool: its type is bool) what str(value) would give, in one step
            value = b"%d" % value
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


def pack(command: list[Any]) -> bytes:
    """One command in the Redis wire format (RESP). A script call's first four arguments
    (EVALSHA, sha, 1, key) are packed once and reused."""
    if command[0] == "EVALSHA" and len(command) >= 4:
        head_key = tuple(command[:4])
        head = _SCRIPT_HEADS.get(head_key)
        if head is None:
            head = _SCRIPT_HEADS[head_key] = _bulk(head_key)
        return b"*%d\r\n" % len(command) + head + _bulk(command[4:])
    return b"*%d\r\n" % len(command) + _bulk(command)


def evalsha(script: Any, key: str, args: list[Any]) -> list[Any]:
    """The command that runs a registered ``script`` routed by ``key`` with ``args``."""
    return ["EVALSHA", script.sha, 1, key, *args]


# ... and what a cluster client raises when no node answers, or no node serves a slot (not its
# other RedisClusterExceptions: a command it cannot route is a bug, not an outage)
_CLUSTER_UNREACHABLE: tuple[type[Exception], ...] = (
    *CLUSTER_OUTAGE, redis.exceptions.SlotNotCoveredError,
    *[e for e in [getattr(redis.exceptions, "RedisClusterUnreachableError", None)] if e is not None])  # redis 6+


@contextmanager
def cluster_outage_as_connection_error() -> Iterator[None]:
    """A cluster client's outage errors (:data:`CLUSTER_OUTAGE`, a cluster no node of which answers)
    raised as ``redis.ConnectionError``: the retry policy retries them as it retries a single
    Redis's refused connections, and callers see a ``RedisUnavailableError`` in the end."""
    try:
        yield
    except _CLUSTER_UNREACHABLE as exc:
        raise redis.ConnectionError(f"Redis Cluster: {type(exc).__name__}: {exc}") from exc


def outage_reply(replies: Sequence[Any]) -> None:
    """Raise a pipeline's first outage reply (returned in place, as ``raise_on_error=False`` does) as
    ``redis.ConnectionError``: its command did not run, the round trip is tried again."""
    for reply in replies:
        if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
            raise reply
        if isinstance(reply, CLUSTER_OUTAGE):
            raise redis.ConnectionError(f"Redis Cluster: {type(reply).__name__}: {reply}") from reply


def unloaded(replies: Sequence[Any]) -> list[int]:
    """The positions of script replies that are NOSCRIPT errors; raises any other error reply."""
    missing: list[int] = []
    for i, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError):
            missing.append(i)
        elif isinstance(reply, Exception):
            raise reply
    return missing


class HeldConnection:
    """One connection taken from a redis-py pool (``get_connection``) and kept, instead of taken
    and given back around every command.

    Whichever thread finds it free uses it; any other thread meanwhile takes one from the pool as
    usual (and gives it back), so nothing ever waits on it. Before each use it gets the check the
    pool would make (``can_read``): a connection the server closed, or that has unread data, is
    connected anew. There is one per pool (:meth:`of`), so it costs the pool one connection
    however many queues share the client; a forked child takes its own.
    """

    _all: weakref.WeakKeyDictionary[Any, HeldConnection] = weakref.WeakKeyDictionary()
    _all_lock = threading.Lock()

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0

    @classmethod
    def of(cls, pool: Any) -> HeldConnection:
        """The held connection of ``pool`` (made on first use; it goes when the pool goes)."""
        with cls._all_lock:
            held = cls._all.get(pool)
            if held is None:
                held = cls._all[pool] = cls(pool)
            return held

    def take(self) -> tuple[Any, bool]:
        """A ready connection: the held one when free, else one of the pool; and whether it is the
        held one. Hand both to :meth:`give` (plain calls, not a context manager: this is the hot
        path, and a generator-based one costs as much as the rest of it)."""
        if not self._lock.acquire(blocking=False):
            return self.pool.get_connection(), False
        try:
            return self._ready(), True
        except BaseException:
            self._lock.release()
            raise

    def give(self, conn: Any, held: bool, failed: bool = False) -> None:
        """Hand back what :meth:`take` returned; ``failed``: an error left its replies half-read, so
        it is disconnected (it connects again on its next use)."""
        if failed:
            conn.disconnect()
        if held:
            self._lock.release()
        else:
            self.pool.release(conn)

    def close(self) -> None:
        """Give the kept connection back to the pool (a later :meth:`take` takes one again)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                self.pool.release(conn)

    def _ready(self) -> Any:
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            conn = self.pool.get_connection()  # the pool's own checks on a fresh take; it stays "in use"
            self._conn, self._pid = conn, os.getpid()
            return conn
        try:
            stale = conn.can_read()  # unread data (or EOF: raises): never reuse it as it is
        except redis.ConnectionError:
            stale = True
        if stale:
            conn.disconnect()  # it connects again when it sends
        return conn


def read_replies(conn: Any, count: int) -> list[Any]:
    """Read ``count`` replies from ``conn``; error replies are returned, not raised."""
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:  # the reply was read in full: go on
            replies.append(exc)
    return replies


class Pending:
    """Commands sent (:meth:`Transport.send`) whose replies are not read yet. :meth:`read` reads
    them, once, from whichever thread calls it first, and gives the connection back."""

    __slots__ = ("_conn", "_count", "_held", "_holder", "_replies")

    def __init__(self, holder: HeldConnection | None, conn: Any, held: bool, count: int,
                 replies: list[Any] | None = None) -> None:
        self._holder, self._conn, self._held, self._count = holder, conn, held, count
        self._replies = replies  # already read (a client without a connection to hold)

    def read(self) -> list[Any]:
        """The replies in order (error replies returned, not raised); a broken connection raises."""
        if self._replies is not None:
            return self._replies
        holder, conn = self._holder, self._conn
        if holder is None:
            raise redis.ConnectionError("the replies were lost: reading them failed before")
        try:
            self._replies = read_replies(conn, self._count)
        except BaseException:
            self._holder = None
            holder.give(conn, self._held, failed=True)
            raise
        holder.give(conn, self._held)
        return self._replies


class NodesPending:
    """Commands sent to a cluster's masters without reading their replies (:meth:`Transport.send` on a
    cluster client): each master's in one write on a connection taken from its pool, kept until
    :meth:`read` reads the replies. A command a master refused because its slot is elsewhere or
    unavailable (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: it did not run) is sent again by the cluster
    client itself, which follows the cluster's changes."""

    __slots__ = ("_commands", "_sent", "_transport")

    def __init__(self, transport: Transport, sent: list[tuple[Any, Any, list[int]]],
                 commands: Sequence[list[Any]]) -> None:
        self._transport, self._sent, self._commands = transport, sent, commands

    @classmethod
    def send(cls, transport: Transport, commands: Sequence[list[Any]]) -> NodesPending | Pending:
        """Send ``commands`` (their replies are read by :meth:`read`); a command whose key is not known
        here makes it one round trip of the cluster client now (a :class:`Pending` read already)."""
        client = transport.client
        groups: dict[str, tuple[Any, list[int]]] = {}
        try:
            for i, command in enumerate(commands):
                node = client.get_node_from_key(_command_key(command))
                group = groups.get(node.name)
                if group is None:
                    group = groups[node.name] = (client.get_redis_connection(node).connection_pool, [])
                group[1].append(i)
        except (LookupError, redis.RedisError):  # no key to route by, or no master known for its slot
            return Pending(None, None, False, len(commands), transport.round_trip(commands))
        sent: list[tuple[Any, Any, list[int]]] = []
        try:
            for pool, index in groups.values():
                conn = pool.get_connection()
                sent.append((pool, conn, index))
                conn.send_packed_command([b"".join([pack(commands[i]) for i in index])])
        except BaseException:
            for pool, conn, _ in sent:
                conn.disconnect()
                pool.release(conn)
            raise
        return cls(transport, sent, commands)

    def read(self) -> list[Any]:
        """The replies in order (error replies returned, not raised); a broken connection raises
        (after every connection was read or dropped)."""
        replies: list[Any] = [None] * len(self._commands)
        failed: BaseException | None = None
        for pool, conn, index in self._sent:
            if failed is None:
                try:
                    for i, reply in zip(index, read_replies(conn, len(index)), strict=True):
                        replies[i] = reply
                except BaseException as exc:
                    failed = exc
            if failed is not None:  # (this one failed, or was not read: its replies are still on it)
                conn.disconnect()
            pool.release(conn)
        self._sent = []
        if failed is not None:
            raise failed
        for i, reply in enumerate(replies):  # refused unrun: the cluster client sends it where it goes now
            if isinstance(reply, _REFUSED):
                replies[i] = self._transport.round_trip([self._commands[i]])[0]
        return replies


# The error replies of a cluster master that did not run the command: the slot is another master's
# (MOVED, ASK: a resharding or failover the client has not seen yet) or not served now.
_REFUSED: tuple[type[Exception], ...] = (redis.exceptions.MovedError, redis.exceptions.AskError, *CLUSTER_OUTAGE)


def _command_key(command: Sequence[Any]) -> Any:
    """The key a command is routed by: a script call's first key, else its first argument."""
    if command[0] in ("EVALSHA", "EVAL"):
        if int(command[2]) < 1:
            raise LookupError("a script call without keys")
        return command[3]
    if len(command) < 2:
        raise LookupError("a command without a key")
    return command[1]


# What Transport.send returns: replies to read.
AnyPending: TypeAlias = "Pending | NodesPending"


class Transport:
    """Runs commands and scripts on a synchronous redis-py client (or cluster client)."""

    def __init__(self, client: Any, route_key: str, policy: RetryPolicy | None = None) -> None:
        self.client = client
        self.route_key = route_key  # the key every script call is routed by (its KEYS[1])
        self.policy = policy or RetryPolicy()  # how :func:`~.ops.drive` retries each request
        pool = getattr(client, "connection_pool", None)
        # a cluster client has no single pool: it uses pipelines
        self._held = HeldConnection.of(pool) if pool is not None and isinstance(client, redis.Redis) else None

    def round_trip(self, commands: Iterable[list[Any]], *, stream: bool = False) -> list[Any]:
        """Send commands in one round trip and read their replies in order; error replies are
        returned, not raised. With ``stream`` each command is sent as soon as it is made (Redis runs
        it while the next one is built: large batches)."""
        if self._held is None:  # a cluster client: its pipeline sends each node its commands
            commands = list(commands)
            with cluster_outage_as_connection_error():
                if len(commands) == 1:  # one command: the client's own call (a pipeline costs twice its CPU)
                    try:
                        replies = [self.client.execute_command(*commands[0])]
                    except redis.ResponseError as exc:  # returned, as a pipeline returns it (an outage's
                        replies = [exc]                 # reply too: outage_reply raises it)
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for command in commands:
                        pipe.execute_command(*command)
                    replies = list(pipe.execute(raise_on_error=False))
            outage_reply(replies)
            return replies
        conn, held = self._held.take()
        try:
            if stream:
                sent = len([conn.send_packed_command([pack(command)]) for command in commands])
            else:
                packed = [pack(c) for c in commands]
                conn.send_packed_command([b"".join(packed)])
                sent = len(packed)
            replies = read_replies(conn, sent)
        except BaseException:
            self._held.give(conn, held, failed=True)
            raise
        self._held.give(conn, held)
        return replies

    def hold(self) -> HeldConnection | None:
        """A connection of this client's pool for one caller to keep (for :meth:`send`: a slot's
        own); None for a cluster client. :meth:`HeldConnection.close` gives it back."""
        return None if self._held is None else HeldConnection(self._held.pool)

    def send(self, commands: Sequence[list[Any]], via: HeldConnection | None = None) -> AnyPending:
        """Send commands in one write on ``via`` (else the shared held connection) without reading
        their replies: :meth:`Pending.read` reads them later, meanwhile the connection stays taken.
        On a cluster client, each master's commands go in one write on a connection of its pool
        (:class:`NodesPending`; ``via`` is not used)."""
        holder = via if via is not None else self._held
        if holder is None:
            if isinstance(self.client, RedisCluster):
                return NodesPending.send(self, commands)
            return Pending(None, None, False, len(commands), self.round_trip(commands))
        conn, held = holder.take()
        try:
            conn.send_packed_command([b"".join([pack(c) for c in commands])])
        except BaseException:
            holder.give(conn, held, failed=True)
            raise
        return Pending(holder, conn, held, len(commands))

    def execute(self, commands: Sequence[list[Any]], transaction: bool = False,
                raise_on_error: bool = True) -> list[Any]:
        """Plain commands in one redis-py pipeline (a MULTI/EXEC one with ``transaction``), their
        replies decoded as redis-py's own commands decode them; the first error reply is raised
        (with ``raise_on_error``, else returned)."""
        if not commands:
            return []
        with cluster_outage_as_connection_error():
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)
            replies = list(pipe.execute(raise_on_error=raise_on_error))
        if self._held is None:
            outage_reply(replies)
        return replies

    def run_scripts(self, calls: Sequence[ScriptCall], before: Sequence[list[Any]] = ()) -> list[Any]:
        """Run scripts (each with its ARGV) after plain ``before`` commands, in one round trip;
        returns the scripts' replies (see :meth:`checked`)."""
        commands = [*before, *(evalsha(script, self.route_key, args) for script, args in calls)]
        return self.checked(calls, self.round_trip(commands)[len(before):])

    def run(self, script: Any, args: list[Any]) -> Any:
        """Run one script; its reply."""
        reply = self.round_trip([["EVALSHA", script.sha, 1, self.route_key, *args]])[0]
        return self.checked([(script, args)], [reply])[0] if isinstance(reply, Exception) else reply

    def stream_scripts(self, calls: Iterator[ScriptCall]) -> tuple[list[Any], FairQueueError | None]:
        """Send each script call as soon as ``calls`` yields it, then read every reply (checked).
        Should making a call fail with a FairQueueError, the replies of those sent are read all the
        same and returned with that error."""
        error: FairQueueError | None = None
        made: list[ScriptCall] = []

        def commands() -> Iterator[list[Any]]:
            nonlocal error
            try:
                for script, args in calls:
                    made.append((script, args))
                    yield evalsha(script, self.route_key, args)
            except FairQueueError as exc:
                error = exc

        replies = self.round_trip(commands(), stream=True)
        return self.checked(made, replies), error

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The client's command ``name`` (its reply decoded as redis-py decodes it)."""
        if self._held is None:
            with cluster_outage_as_connection_error():
                return getattr(self.client, name)(*args, **kwargs)
        return getattr(self.client, name)(*args, **kwargs)

    def attempt(self, method: str, args: tuple[Any, ...], attempts: Attempts) -> tuple[Any, bool]:
        """Request ``method`` with ``args``, counting its attempts; (its reply, whether it was
        retried: an earlier attempt may have run and only its reply was lost)."""
        attempts.n += 1
        return getattr(self, method)(*args), attempts.n > 1

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    def checked(self, calls: Sequence[ScriptCall], replies: list[Any]) -> list[Any]:
        """The replies of script ``calls``, with a call Redis refused for lack of its script
        (NOSCRIPT: a restart or failover) loaded and run now; any other error reply is raised."""
        for i in unloaded(replies):
            script, args = calls[i]
            replies[i] = script(keys=[self.route_key], args=args)  # loads it, runs it once
        return replies


class AsyncTransport:
    """The same for a ``redis.asyncio`` client (same method names: the operations of
    :mod:`.ops` run on either); a round trip is a pipeline."""

    def __init__(self, client: redis.asyncio.Redis, route_key: str, policy: RetryPolicy | None = None) -> None:
        self.client = client
        self.route_key = route_key
        self.policy = policy or RetryPolicy()
        self._cluster = not isinstance(client, redis.asyncio.Redis)  # a redis.asyncio.cluster.RedisCluster

    async def round_trip(self, commands: Iterable[list[Any]]) -> list[Any]:
        """Send commands in one round trip; error replies are returned, not raised."""
        return await self._pipeline(commands, False, False)

    async def execute(self, commands: Sequence[list[Any]], transaction: bool = False,
                      raise_on_error: bool = True) -> list[Any]:
        """As :meth:`Transport.execute`."""
        if not commands:
            return []
        return await self._pipeline(commands, transaction, raise_on_error)

    async def _pipeline(self, commands: Iterable[list[Any]], transaction: bool, raise_on_error: bool) -> list[Any]:
        if not self._cluster:
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=raise_on_error))
        with cluster_outage_as_connection_error():  # as Transport's
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)
            replies = list(await pipe.execute(raise_on_error=raise_on_error))
        outage_reply(replies)
        return replies

    async def run_scripts(self, calls: Sequence[ScriptCall], before: Sequence[list[Any]] = ()) -> list[Any]:
        """As :meth:`Transport.run_scripts`."""
        commands = [*before, *(evalsha(script, self.route_key, args) for script, args in calls)]
        return await self.checked(calls, (await self.round_trip(commands))[len(before):])

    async def run(self, script: Any, args: list[Any]) -> Any:
        """Run one script; its reply."""
        return (await self.run_scripts([(script, args)]))[0]

    async def stream_scripts(self, calls: Iterator[ScriptCall]) -> tuple[list[Any], FairQueueError | None]:
        """As :meth:`Transport.stream_scripts`, but a pipeline cannot stream: every call is made
        before any is sent, and none is sent when making one fails with a FairQueueError."""
        try:
            made = list(calls)
        except FairQueueError as exc:
            return [], exc
        return await self.run_scripts(made), None

    async def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """As :meth:`Transport.call`."""
        if self._cluster:
            with cluster_outage_as_connection_error():
                return await getattr(self.client, name)(*args, **kwargs)
        return await getattr(self.client, name)(*args, **kwargs)

    async def attempt(self, method: str, args: tuple[Any, ...], attempts: Attempts) -> tuple[Any, bool]:
        """As :meth:`Transport.attempt`."""
        attempts.n += 1
        return await getattr(self, method)(*args), attempts.n > 1

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def checked(self, calls: Sequence[ScriptCall], replies: list[Any]) -> list[Any]:
        """As :meth:`Transport.checked`."""
        for i in unloaded(replies):
            script, args = calls[i]
            replies[i] = await script(keys=[self.route_key], args=args)
        return replies
