"""Browsing the dead-letter queue: pages (filtered by user and error type, searched by id),
facets for the filters, and dead tasks by id. Read-only, with bounded cost: a filter or facet
examines at most ``scan_limit`` of the newest dead tasks and says so (``exact`` / ``truncated``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..codec import chunks, text
from ..models import DLQEntry
from ..queue import TaskQueue, redis_errors

_PIPE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DLQPage:
    """One page of the dead-letter queue, newest first.

    Without filters ``total`` is exact. With filters only the newest ``scanned`` entries were
    examined; when ``exact`` is False older matches may exist beyond them.
    """

    entries: list[DLQEntry]
    offset: int
    limit: int
    total: int
    exact: bool
    dlq_size: int
    scanned: int
    filtered: bool

    @property
    def truncated(self) -> bool:
        return not self.exact


@dataclass(frozen=True, slots=True)
class DLQFacets:
    """Users and error types among the newest ``scanned`` dead tasks, most frequent first."""

    users: list[tuple[str, int]]
    error_types: list[tuple[str, int]]
    scanned: int
    dlq_size: int

    @property
    def truncated(self) -> bool:
        return self.scanned < self.dlq_size


class DeadLetters:
    """Read-only views of one queue's dead-letter queue (see the module docstring)."""

    def __init__(self, queue: TaskQueue, *, scan_limit: int = 10_000) -> None:
        if scan_limit < 1:
            raise ValueError("scan_limit must be >= 1")
        self.queue = queue
        self.client = queue.client
        self.keys = queue.keys
        self.scan_limit = scan_limit

    def redis_time(self) -> float:
        """The Redis server's clock (task times such as ``dt`` and ``e`` come from it)."""
        with redis_errors("redis_time"):
            sec, usec = self.client.time()
        return float(sec) + usec / 1e6

    def page(self, offset: int = 0, limit: int = 50, *, user: str | None = None,
             error_type: str | None = None, search: str | None = None) -> DLQPage:
        """Dead tasks, newest first, optionally filtered by user and error type and searched
        by task id (exact, else prefix). Filtering examines at most ``scan_limit`` entries."""
        offset, limit = max(0, int(offset)), max(1, int(limit))
        user = user or None
        error_type = error_type or None
        search = (search or "").strip() or None
        with redis_errors("dlq_page"):
            size = int(self.client.zcard(self.keys.dlq))
            if user is None and error_type is None and search is None:
                ids = [text(i) for i in self.client.zrevrange(self.keys.dlq, offset, offset + limit - 1)]
                return DLQPage(entries=self._entries(ids), offset=offset, limit=limit, total=size,
                               exact=True, dlq_size=size, scanned=0, filtered=False)
            if search is not None and user is None and error_type is None \
                    and self.client.zscore(self.keys.dlq, search) is not None:
                matches, scanned, exact = [search], 1, True
            else:
                matches, scanned = self._filter(user, error_type, search)
                exact = scanned >= size
        page = matches[offset:offset + limit]
        with redis_errors("dlq_page"):
            entries = self._entries(page)
        return DLQPage(entries=entries, offset=offset, limit=limit, total=len(matches), exact=exact,
                       dlq_size=size, scanned=scanned, filtered=True)

    def _user_and_type(self, ids: Sequence[str]) -> list[tuple[str, str | None, str]]:
        """``(task id, user or None, error type or "?")`` of dead tasks, read in chunks."""
        out: list[tuple[str, str | None, str]] = []
        for group in chunks(list(ids), _PIPE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for task_id in group:
                pipe.hmget(self.keys.task(task_id), "u", "et")
            for task_id, (u, et) in zip(group, pipe.execute(), strict=True):
                out.append((task_id, None if u is None else text(u), text(et or b"") or "?"))
        return out

    def _filter(self, user: str | None, error_type: str | None, search: str | None) -> tuple[list[str], int]:
        """Matching ids among the newest ``scan_limit`` dead tasks, and how many were examined."""
        window = [text(i) for i in self.client.zrevrange(self.keys.dlq, 0, self.scan_limit - 1)]
        ids = window
        if search is not None:
            ids = [i for i in window if i == search] or [i for i in window if i.startswith(search)]
        if user is None and error_type is None:
            return ids, len(window)
        matches = [task_id for task_id, u, et in self._user_and_type(ids)
                   if (user is None or u == user) and (error_type is None or et == error_type)]
        return matches, len(window)

    def _entries(self, ids: Sequence[str]) -> list[DLQEntry]:
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.keys.task(task_id))
        rows = pipe.execute(raise_on_error=False)
        return [self.queue.proto.decode_dead(task_id, row) for task_id, row in zip(ids, rows, strict=True)
                if isinstance(row, dict) and row]

    def facets(self, scan: int | None = None) -> DLQFacets:
        """Users and error types among the newest ``scan`` (default ``scan_limit``) dead tasks."""
        n = max(1, min(int(scan or self.scan_limit), self.scan_limit))
        users: Counter[str] = Counter()
        types: Counter[str] = Counter()
        with redis_errors("dlq_facets"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(self.keys.dlq)
            pipe.zrevrange(self.keys.dlq, 0, n - 1)
            size, ids = pipe.execute()
            for _, u, et in self._user_and_type([text(i) for i in ids]):
                if u is not None:
                    users[u] += 1
                    types[et] += 1
        return DLQFacets(users=users.most_common(), error_types=types.most_common(),
                         scanned=len(ids), dlq_size=int(size))

    def dead_tasks(self, task_ids: Iterable[str]) -> tuple[list[DLQEntry], list[str]]:
        """The dead tasks among ``task_ids`` (in the given order, duplicates dropped) and the
        ids that are not (or no longer) in the dead-letter queue."""
        ids = list(dict.fromkeys(str(i) for i in task_ids))
        if not ids:
            return [], []
        with redis_errors("dead_tasks"):
            pipe = self.client.pipeline(transaction=False)
            for task_id in ids:
                pipe.zscore(self.keys.dlq, task_id)
                pipe.hgetall(self.keys.task(task_id))
            replies = pipe.execute(raise_on_error=False)
        found: list[DLQEntry] = []
        missing: list[str] = []
        for i, task_id in enumerate(ids):
            score, row = replies[2 * i], replies[2 * i + 1]
            if score is None or not isinstance(row, dict) or not row:
                missing.append(task_id)
            else:
                found.append(self.queue.proto.decode_dead(task_id, row))
        return found, missing

    def dead_task(self, task_id: str) -> DLQEntry | None:
        return self.queue.get_dead(task_id)
