"""The pooled connection the queues of one client keep for their hot paths (push, pop, ack)."""

from __future__ import annotations

import os
import select
import threading
import weakref
from typing import Any


class HeldConnection:
    """One connection taken from a redis-py connection pool and kept, instead of taken and given
    back around every command.

    Taking a connection from redis-py's pool and giving it back costs about as much client time
    as a small command itself. Whichever thread finds the held connection free uses it; any
    other thread meanwhile takes one from the pool as usual, so nothing ever waits on it. Before
    each use it gets the check the pool would make: a connection the server closed (or that has
    unread data) is connected anew. There is one per pool (see :func:`held_connection`), so it
    costs the pool one connection however many queues share the client; a forked child takes
    its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0

    def take(self, pool: Any) -> tuple[Any, bool]:
        """A ready connection of ``pool``, and whether it is the held one (hand both to :meth:`give`)."""
        if not self._lock.acquire(blocking=False):
            return pool.get_connection(), False
        try:
            return self._ready(pool), True
        except BaseException:
            self._lock.release()
            raise

    def give(self, pool: Any, conn: Any, held: bool) -> None:
        """Hand back what :meth:`take` returned."""
        if held:
            self._lock.release()
        else:
            pool.release(conn)

    def _ready(self, pool: Any) -> Any:
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            conn = pool.get_connection()  # the pool's own checks on a fresh take; it stays "in use"
            self._conn, self._pid = conn, os.getpid()
            return conn
        sock = getattr(conn, "_sock", None)
        # closed by the server (EOF is readable) or left with data: start afresh; a connection
        # without a socket connects itself when it sends
        if sock is not None and _readable(sock):
            conn.disconnect()
        return conn


def _readable(sock: Any) -> bool:
    """Whether ``sock`` has something to read (data or EOF) right now, without blocking."""
    if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


_held: weakref.WeakKeyDictionary[Any, HeldConnection] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def held_connection(pool: Any) -> HeldConnection:
    """The held connection of ``pool`` (made on first use; it goes when the pool goes)."""
    with _lock:
        held = _held.get(pool)
        if held is None:
            held = _held[pool] = HeldConnection()
        return held
