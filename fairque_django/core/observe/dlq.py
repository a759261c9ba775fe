"""Browsing the dead-letter queue: pages (filtered by user and error type, searched by id),
facets for the filters, and dead tasks by id. Read-only, with bounded cost: a filter or facet
examines at most ``scan_limit`` of the newest dead tasks and says so (``exact`` / ``truncated``).

With several keyspace shards (``queue.shards``) every shard has its own dead-letter queue (a sorted
set by death time): a page merges them by death time, newest first (ties: task id, descending, as
``ZREVRANGE`` orders them), so that paging with ``offset`` / ``limit`` lists every dead task exactly
once. A page at ``offset`` reads ``offset + limit`` ids (with their death times) of each shard, from
the end of the merged order nearer to the page (the newest or the oldest), so the deepest page reads
at most half of each shard's set; its entries are then read in the shard that holds each. A user
filter scans that user's shard only; the other filters and the facets scan the newest
``scan_limit`` of each shard and keep the newest ``scan_limit`` of the merge. One shard reads as
before shards existed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..codec import chunks, text
from ..models import DLQEntry
from ..queue import TaskQueue, redis_errors
from .fanout import QueueShards, Trip, shard_index_of

_PIPE_CHUNK = 1000

_Located = tuple[str, int]  # a dead task's id and the index of its shard


def _merged(per_shard: Sequence[Sequence[tuple[Any, Any]]], *, newest_first: bool) -> list[tuple[float, str, int]]:
    """``(death time, id, shard)`` of every shard's ``(id, death time)`` replies, merged in the DLQ's
    order: newest first (ties: id descending), else oldest first (ties: id ascending)."""
    rows = [(float(score), text(member), shard) for shard, pairs in enumerate(per_shard) for member, score in pairs]
    rows.sort(key=lambda r: (r[0], r[1]), reverse=newest_first)
    return rows


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

    def __init__(self, queue: QueueShards, *, scan_limit: int = 10_000) -> None:
        if scan_limit < 1:
            raise ValueError("scan_limit must be >= 1")
        self.queue = queue
        self.shards: tuple[TaskQueue, ...] = queue.shard_queues
        self.sharded = len(self.shards) > 1
        first = self.shards[0]
        self.client = queue.home_queue.client
        self.keys = first.keys  # (one shard: the queue's keys; several: see the _sharded methods)
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
        if self.sharded:
            return self._page_sharded(offset, limit, user, error_type, search)
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
        return [self.shards[0].proto.decode_dead(task_id, row) for task_id, row in zip(ids, rows, strict=True)
                if isinstance(row, dict) and row]

    def facets(self, scan: int | None = None) -> DLQFacets:
        """Users and error types among the newest ``scan`` (default ``scan_limit``) dead tasks."""
        n = max(1, min(int(scan or self.scan_limit), self.scan_limit))
        users: Counter[str] = Counter()
        types: Counter[str] = Counter()
        if self.sharded:
            with redis_errors("dlq_facets"):
                sizes, window = self._newest(range(len(self.shards)), n)
                for _, u, et in self._user_and_type_sharded(window):
                    if u is not None:
                        users[u] += 1
                        types[et] += 1
            return DLQFacets(users=users.most_common(), error_types=types.most_common(), scanned=len(window),
                             dlq_size=sum(sizes))
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
        if self.sharded:
            return self._dead_tasks_sharded(ids)
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
                found.append(self.shards[0].proto.decode_dead(task_id, row))
        return found, missing

    def dead_task(self, task_id: str) -> DLQEntry | None:
        if self.sharded:
            found, _ = self._dead_tasks_sharded([task_id])
            return found[0] if found else None
        return self.shards[0].get_dead(task_id)

    # --- several shards ---------------------------------------------------------------------------
    def _ranges(self, shards: Iterable[int], stop: int, *, newest_first: bool,
                sizes: bool = False) -> tuple[list[int], list[list[tuple[Any, Any]]]]:
        """Each of ``shards``' first ``stop`` dead tasks ``(id, death time)``, newest or oldest first,
        and (``sizes``) the size of every shard's dead-letter queue, in one round trip."""
        per_shard: list[list[tuple[Any, Any]]] = [[] for _ in self.shards]
        trip = Trip()
        counted = [trip.one(q, 0, "zcard", q.keys.dlq) for q in self.shards] if sizes else []
        command = "zrevrange" if newest_first else "zrange"
        sections = {shard: trip.one(self.shards[shard], [], command, self.shards[shard].keys.dlq, 0, stop - 1,
                                    withscores=True) for shard in shards} if stop > 0 else {}
        out = trip.execute()
        for shard, i in sections.items():
            per_shard[shard] = list(out[i][0])
        return [int(out[i][0]) for i in counted], per_shard

    def _newest(self, shards: Iterable[int], n: int) -> tuple[list[int], list[_Located]]:
        """The sizes of the shards' dead-letter queues and the newest ``n`` dead tasks of ``shards``."""
        sizes, per_shard = self._ranges(shards, n, newest_first=True, sizes=True)
        rows = _merged(per_shard, newest_first=True)[:n]
        return sizes, [(task_id, shard) for _, task_id, shard in rows]

    def _page_sharded(self, offset: int, limit: int, user: str | None, error_type: str | None,
                      search: str | None) -> DLQPage:
        everyone = range(len(self.shards))
        with redis_errors("dlq_page"):
            if user is None and error_type is None and search is None:
                sizes, _ = self._ranges((), 0, newest_first=True, sizes=True)
                size = sum(sizes)
                end = min(offset + limit, size)
                if offset >= size:
                    located: list[_Located] = []
                elif offset <= size - end:  # nearer the newest end
                    rows = _merged(self._ranges(everyone, end, newest_first=True)[1], newest_first=True)
                    located = [(task_id, shard) for _, task_id, shard in rows[offset:end]]
                else:  # nearer the oldest end: positions size - end .. size - offset - 1 from it
                    rows = _merged(self._ranges(everyone, size - offset, newest_first=False)[1], newest_first=False)
                    located = [(task_id, shard) for _, task_id, shard in reversed(rows[size - end:size - offset])]
                return DLQPage(entries=self._entries_sharded(located), offset=offset, limit=limit, total=size,
                               exact=True, dlq_size=size, scanned=0, filtered=False)
            shards = [shard_index_of(self.queue, user)] if user is not None else list(everyone)
            exact_hit = self._exact_hit(search, shards) if search is not None and user is None \
                and error_type is None else None
            sizes, window = self._newest(shards, 1 if exact_hit is not None else self.scan_limit)
            size = sum(sizes)
            if exact_hit is not None:
                matches, scanned, exact = [exact_hit], 1, True
            else:
                ids = window
                if search is not None:
                    ids = [x for x in window if x[0] == search] or [x for x in window if x[0].startswith(search)]
                if user is not None or error_type is not None:
                    ids = [(task_id, shard) for (task_id, u, et), (_, shard) in
                           zip(self._user_and_type_sharded(ids), ids, strict=True)
                           if (user is None or u == user) and (error_type is None or et == error_type)]
                matches, scanned, exact = ids, len(window), len(window) >= sum(sizes[i] for i in shards)
            entries = self._entries_sharded(matches[offset:offset + limit])
        return DLQPage(entries=entries, offset=offset, limit=limit, total=len(matches), exact=exact,
                       dlq_size=size, scanned=scanned, filtered=True)

    def _exact_hit(self, task_id: str, shards: Sequence[int]) -> _Located | None:
        """``task_id`` and its shard when it is dead in one of ``shards``."""
        trip = Trip()
        sections = {shard: trip.one(self.shards[shard], None, "zscore", self.shards[shard].keys.dlq, task_id)
                    for shard in shards}
        out = trip.execute()
        for shard, i in sections.items():
            if out[i][0] is not None:
                return task_id, shard
        return None

    def _user_and_type_sharded(self, located: Sequence[_Located]) -> list[tuple[str, str | None, str]]:
        """``(task id, user or None, error type or "?")`` of dead tasks, each read in its shard."""
        out: list[tuple[str, str | None, str]] = []
        for group in chunks(list(located), _PIPE_CHUNK):
            trip = Trip()
            sections = [trip.one(self.shards[shard], [None, None], "hmget", self.shards[shard].keys.task(task_id),
                                 "u", "et") for task_id, shard in group]
            replies = trip.execute()
            for (task_id, _), section in zip(group, sections, strict=True):
                u, et = replies[section][0]
                out.append((task_id, None if u is None else text(u), text(et or b"") or "?"))
        return out

    def _entries_sharded(self, located: Sequence[_Located]) -> list[DLQEntry]:
        if not located:
            return []
        trip = Trip()
        sections = [trip.one(self.shards[shard], {}, "hgetall", self.shards[shard].keys.task(task_id))
                    for task_id, shard in located]
        replies = trip.execute()
        out = []
        for (task_id, shard), section in zip(located, sections, strict=True):
            row = replies[section][0]
            if isinstance(row, dict) and row:
                out.append(self.shards[shard].proto.decode_dead(task_id, row))
        return out

    def _dead_tasks_sharded(self, ids: Sequence[str]) -> tuple[list[DLQEntry], list[str]]:
        """:meth:`dead_tasks` over the shards: ``ZMSCORE`` in each, then each found task in its shard."""
        with redis_errors("dead_tasks"):
            trip = Trip()
            sections = [trip.one(q, [None] * len(ids), "zmscore", q.keys.dlq, list(ids)) for q in self.shards]
            out = trip.execute()
            where: dict[str, int] = {}
            for shard, section in enumerate(sections):
                for task_id, score in zip(ids, out[section][0], strict=True):
                    if score is not None:
                        where.setdefault(task_id, shard)
            entries = {e.task_id: e for e in self._entries_sharded([(i, where[i]) for i in ids if i in where])}
        return [entries[i] for i in ids if i in entries], [i for i in ids if i not in entries]
