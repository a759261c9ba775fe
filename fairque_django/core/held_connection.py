"""The pooled connection a queue keeps for its hot paths (push, pop, ack)."""

from __future__ import annotations

import os
import select
import threading
import weakref
from typing import Any


class HeldConnection:
    """One connection taken from a redis-py ``pool`` and kept, instead of taken and given back
    around every command.

    Taking a connection from redis-py's pool and giving it back costs about as much client time
    as a small command itself. Whichever thread finds the held connection free uses it; any
    other thread meanwhile takes one from the pool as usual, so nothing ever waits on it.
    Before each use it gets the check the pool would make: a connection the server closed (or
    that has unread data) is connected anew. It goes back to the pool on :meth:`release` or
    when its owner is garbage collected; a forked child leaves its parent's connection alone.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def take(self) -> tuple[Any, bool]:
        """A ready connection, and whether it is the held one (hand both to :meth:`give`)."""
        if not self._lock.acquire(blocking=False):
            return self._pool.get_connection(), False
        try:
            return self._ready(), True
        except BaseException:
            self._lock.release()
            raise

    def give(self, conn: Any, held: bool) -> None:
        """Hand back what :meth:`take` returned."""
        if held:
            self._lock.release()
        else:
            self._pool.release(conn)

    def release(self) -> None:
        """Give the held connection back to the pool (a later :meth:`take` holds a new one)."""
        with self._lock:
            self._drop(give_back=True)

    def _ready(self) -> Any:
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            self._drop(give_back=self._pid == os.getpid())
            conn = self._pool.get_connection()  # the pool's own checks on a fresh take
            self._conn, self._pid = conn, os.getpid()
            self._finalizer = weakref.finalize(self, self._pool.release, conn)
            return conn
        sock = getattr(conn, "_sock", None)
        # closed by the server (EOF is readable) or left with data: start afresh; a connection
        # without a socket connects itself when it sends
        if sock is not None and select.select([sock], [], [], 0)[0]:
            conn.disconnect()
        return conn

    def _drop(self, *, give_back: bool) -> None:
        finalizer, self._finalizer, self._conn = self._finalizer, None, None
        if finalizer is not None:
            if give_back:
                finalizer()  # pool.release(conn), once
            else:
                finalizer.detach()  # a forked child: the parent's connection is not ours
