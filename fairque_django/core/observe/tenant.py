"""One tenant up close (the admin's tenant page): depth per priority, its leased tasks with their
workers and progress, its queued and delayed tasks (paged, searched by task id or function name),
its limits and state. Every read is in the tenant's keyspace shard (``TenantView.shard``; see
:mod:`..shards`). Read-only, with bounded cost, like :mod:`.dlq`:

* depth: ``LLEN`` of the critical lane and one ``ZCOUNT`` per priority of the normal lane;
* queued tasks: a ``LRANGE`` / ``ZRANGE`` window of the tenant's own lanes (in the order they are
  served), never a whole lane; a search by function name looks at the first ``search_scan``;
* delayed tasks: the delayed set holds every tenant's, so the first ``delayed_scan`` of it (the
  soonest due) are examined for the tenant's (``exact`` says whether that was all of them);
* leased tasks: the first ``lease_scan`` leases (soonest deadline) are examined for the tenant's;
* limits: :meth:`~fairque_django.core.queue.TaskQueue.get_tenant_limits`.

No Django imports; the admin renders what these return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.cluster import RedisCluster

from ..codec import chunks, count, text
from ..errors import CorruptTaskError
from ..ids import user_id_problem
from ..keys import LANE_PRIORITIES
from ..lanes import COUNT_READS, add_count_reads, counts_from
from ..models import Priority, Task
from ..queue import redis_errors
from ..results import PROGRESS_FIELD, progress_of
from ..scripts.commands import task_fields
from .fanout import QueueShards, shard_index_of

__all__ = ["PRIORITY_LANES", "TenantDetail", "TenantTask", "TenantTasks", "TenantView"]

PRIORITY_LANES: Final = ("critical", "5", "4", "3", "2", "1")
"""The depth keys of :attr:`TenantDetail.depth`: the critical lane, then the normal lane's priorities."""
_FIELDS: Final = ("b", "u", "st", "h", "e", "a", "wk", "lt", "tok", PROGRESS_FIELD)
_PIPE_CHUNK: Final = 1000


@dataclass(frozen=True, slots=True)
class TenantTask:
    """A task as the tenant page lists it. ``lane``: critical, normal, delayed or leased; ``since``:
    when it became ready (queued), is due (delayed) or was leased (leased), epoch seconds."""

    task_id: str
    state: str
    lane: str
    priority: int | None
    func: str | None
    created_at: float | None
    since: float | None
    attempts: int
    worker: str | None = None
    deadline: float | None = None
    progress: dict[str, Any] | None = None
    corrupt: bool = False

    @property
    def priority_name(self) -> str:
        return Priority(self.priority).name if self.priority is not None and 1 <= self.priority <= 6 else "?"

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "state": self.state, "lane": self.lane, "priority": self.priority,
                "func": self.func, "created_at": self.created_at, "since": self.since, "attempts": self.attempts,
                "worker": self.worker, "deadline": self.deadline, "progress": self.progress}


@dataclass(frozen=True, slots=True)
class TenantTasks:
    """A page of a tenant's tasks. Without a search ``total`` is exact for queued tasks; for
    delayed tasks, and with a search, only ``scanned`` entries were examined and ``exact`` says
    whether they were all there is."""

    tasks: list[TenantTask]
    offset: int
    limit: int
    total: int
    exact: bool
    scanned: int
    search: str | None = None


@dataclass(frozen=True, slots=True)
class TenantDetail:
    """A tenant's figures at one moment: ``depth`` ready tasks per lane (:data:`PRIORITY_LANES`),
    ``unfinished`` (queued, delayed or leased), ``leased`` (``P:tleased``, fleet-wide), ``delayed``
    (the rest; it includes tasks waiting for their dependencies), ``limits`` as
    :meth:`~fairque_django.core.queue.TaskQueue.get_tenant_limits` answers them."""

    tenant: str
    timestamp: float
    depth: dict[str, int]
    unfinished: int
    leased: int
    limits: dict[str, Any]

    @property
    def ready(self) -> int:
        return sum(self.depth.values())

    @property
    def delayed(self) -> int:
        return max(0, self.unfinished - self.ready - self.leased)

    @property
    def cap(self) -> int | None:
        cap = self.limits.get("concurrency")
        return cap if isinstance(cap, int) else None

    @property
    def at_cap(self) -> bool:
        return self.cap is not None and self.leased >= self.cap


class TenantView:
    """Read-only views of one tenant of ``queue`` (see the module docstring for the bounds)."""

    def __init__(self, queue: QueueShards, tenant: str, *, lease_scan: int = 10_000, delayed_scan: int = 10_000,
                 search_scan: int = 2000) -> None:
        problem = user_id_problem(tenant, queue.config.queue.max_user_id_length)
        if problem is not None:
            raise ValueError(problem)
        self.shard = shard_index_of(queue, tenant)  # the keyspace shard holding the tenant's keys
        self.shards = len(queue.shard_queues)
        queue = self.queue = queue.shard_queues[self.shard]  # every read below is in the tenant's shard
        self.client = queue.client
        self.keys = queue.keys
        self.tenant = tenant
        self.lease_scan = max(1, lease_scan)
        self.delayed_scan = max(1, delayed_scan)
        self.search_scan = max(1, search_scan)

    # --- figures ------------------------------------------------------------------------------
    def detail(self) -> TenantDetail:
        """Depth per priority, unfinished and leased counts (one round trip), and the limits."""
        k, user = self.keys, self.tenant
        with redis_errors("tenant_detail"):
            pipe = self.client.pipeline(transaction=True)
            add_count_reads(pipe, k, user)
            pipe.zscore(k.live, user)
            pipe.hget(k.tenant_leased, user)
            cluster = isinstance(self.client, RedisCluster)
            if not cluster:  # (a cluster pipeline refuses TIME: one more round trip there)
                pipe.time()
            reply = pipe.execute()
            lanes, (live, leased) = counts_from(reply[:COUNT_READS]), reply[COUNT_READS:COUNT_READS + 2]
            sec, usec = self.client.time() if cluster else reply[COUNT_READS + 2]
        limits = self.queue.get_tenant_limits(user)
        depth = dict(zip(PRIORITY_LANES, [lanes[p] for p in LANE_PRIORITIES], strict=True))
        return TenantDetail(tenant=user, timestamp=int(sec) + int(usec) / 1e6, depth=depth,
                            unfinished=count(live) or 0, leased=count(leased) or 0, limits=limits)

    # --- task lists ---------------------------------------------------------------------------
    def queued(self, offset: int = 0, limit: int = 50, search: str | None = None) -> TenantTasks:
        """Ready tasks in the order they are served (critical lane first); ``search``: a task id of
        this tenant, else a part of a function name (among the first ``search_scan``)."""
        offset, limit, search = max(0, int(offset)), max(1, int(limit)), (search or "").strip() or None
        k, user = self.keys, self.tenant
        with redis_errors("tenant_queued"):
            pipe = self.client.pipeline(transaction=True)
            add_count_reads(pipe, k, user)
            reply = pipe.execute()
            total = sum(counts_from(reply).values())
            sizes = [int(n) for n in reply[:6]] + [sum(int(n) for n in reply[6:11])]  # (stale entries too)
            if search is None:
                ids = self._queued_window(sizes, offset, limit)
                return TenantTasks(self._queued_tasks(ids), offset, limit, total, exact=True, scanned=0)
            found = self._by_id(search, ("queued",))
            if found is not None:
                return TenantTasks([found], 0, limit, 1, exact=True, scanned=1, search=search)
            window = self._queued_window(sizes, 0, self.search_scan)
            matches = self._matching(self._queued_tasks(window), search)
        return TenantTasks(matches[offset:offset + limit], offset, limit, len(matches),
                           exact=len(window) >= total, scanned=len(window), search=search)

    def delayed(self, offset: int = 0, limit: int = 50, search: str | None = None) -> TenantTasks:
        """Delayed tasks (scheduled, or a retry's back-off), soonest due first, among the first
        ``delayed_scan`` of the delayed set; ``search`` as for :meth:`queued`."""
        offset, limit, search = max(0, int(offset)), max(1, int(limit)), (search or "").strip() or None
        with redis_errors("tenant_delayed"):
            if search is not None and (found := self._by_id(search, ("delayed",))) is not None:
                return TenantTasks([found], 0, limit, 1, exact=True, scanned=1, search=search)
            size, window = self._window(self.keys.delayed, self.delayed_scan)
            ids = [task_id for task_id, _ in window]
            mine = [task_id for task_id, user in zip(ids, self._users(ids), strict=True) if user == self.tenant]
            if search is None:
                return TenantTasks(self._tasks(mine[offset:offset + limit]), offset, limit, len(mine),
                                   exact=len(window) >= size, scanned=len(window))
            matches = self._matching(self._tasks(mine), search)
        return TenantTasks(matches[offset:offset + limit], offset, limit, len(matches),
                           exact=len(window) >= size, scanned=len(window), search=search)

    def leased(self, limit: int = 200) -> TenantTasks:
        """The tenant's leased tasks (at most ``limit``) among the first ``lease_scan`` leases, with
        their workers, lease deadlines and progress."""
        limit = max(1, int(limit))
        with redis_errors("tenant_leased"):
            size, window = self._window(self.keys.leases, self.lease_scan)
            ids = [task_id for task_id, _ in window]
            mine = [task_id for task_id, user in zip(ids, self._users(ids), strict=True) if user == self.tenant]
            tasks = self._tasks(mine[:limit])
        return TenantTasks(tasks, 0, limit, len(mine), exact=len(window) >= size, scanned=len(window))

    def task(self, task_id: str) -> TenantTask | None:
        """The tenant's task ``task_id`` in any unfinished state, or None (not found, or another
        tenant's)."""
        with redis_errors("tenant_task"):
            return self._by_id(task_id, None)

    def tasks(self, task_ids: Sequence[str]) -> tuple[list[TenantTask], list[str]]:
        """The tenant's unfinished tasks among ``task_ids`` (order kept, duplicates dropped) and
        the ids that are not (anymore, or another tenant's)."""
        ids = list(dict.fromkeys(task_ids))
        with redis_errors("tenant_tasks"):
            found = {t.task_id: t for t in self._tasks(ids)}
        return [found[i] for i in ids if i in found], [i for i in ids if i not in found]

    # --- reads --------------------------------------------------------------------------------
    def _queued_window(self, sizes: Sequence[int], offset: int, limit: int) -> list[str]:
        """Ids at positions ``offset`` .. ``offset + limit - 1`` in serving order: each lane from its RPOP
        end, critical first, then a lane of the former layout (``sizes``: their lengths); stale entries
        (cancelled tasks, see core/lanes.py) are among them, for :meth:`_tasks` to leave out."""
        k, user = self.keys, self.tenant
        pipe = self.client.pipeline(transaction=False)
        reads: list[bool] = []  # per read: whether it is a lane (a list)
        pos, end = 0, offset + limit
        for i, (key, size) in enumerate(zip([*k.lanes(user), k.normal(user)], sizes, strict=True)):
            low, high = max(offset, pos) - pos, min(end, pos + size) - pos
            if low < high:
                if i < 6:
                    pipe.lrange(key, -high, -(low + 1))
                else:
                    pipe.zrange(key, low, high - 1)
                reads.append(i < 6)
            pos += size
        replies = pipe.execute() if reads else []
        ids: list[str] = []
        for is_list, reply in zip(reads, replies, strict=True):
            ids += [text(i) for i in (reversed(reply) if is_list else reply)]
        return ids

    def _window(self, key: str, n: int) -> tuple[int, list[tuple[str, float]]]:
        pipe = self.client.pipeline(transaction=True)
        pipe.zcard(key)
        pipe.zrange(key, 0, n - 1, withscores=True)
        size, window = pipe.execute()
        return int(size), [(text(m), float(s)) for m, s in window]

    def _users(self, ids: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for group in chunks(list(ids), _PIPE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for task_id in group:
                pipe.hget(self.keys.task(task_id), "u")
            out += [None if u is None or isinstance(u, Exception) else text(u)
                    for u in pipe.execute(raise_on_error=False)]
        return out

    def _by_id(self, task_id: str, states: tuple[str, ...] | None) -> TenantTask | None:
        found = self._tasks([task_id])
        if not found or (states is not None and found[0].state not in states):
            return None
        return found[0]

    def _queued_tasks(self, ids: Sequence[str]) -> list[TenantTask]:
        """The tenant's queued tasks among lane entries ``ids`` (a stale entry's id may name a task
        pushed again since, served from its own entry)."""
        return [t for t in self._tasks(ids) if t.state == "queued"]

    def _tasks(self, ids: Sequence[str]) -> list[TenantTask]:
        """The tenant's tasks among ``ids`` (in order); finished, missing and other tenants' ids are left out."""
        out: list[TenantTask] = []
        for group in chunks(list(ids), _PIPE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for task_id in group:
                pipe.hmget(self.keys.task(task_id), *_FIELDS)
                pipe.zscore(self.keys.leases, task_id)
                pipe.zscore(self.keys.delayed, task_id)
            replies = pipe.execute(raise_on_error=False)
            for i, task_id in enumerate(group):
                values, deadline, due = replies[3 * i:3 * i + 3]
                if not isinstance(values, list):
                    continue
                row = {f: v for f, v in zip(_FIELDS, values, strict=True) if v is not None}
                task = self._decode(task_id, row, _number(deadline), _number(due))
                if task is not None:
                    out.append(task)
        return out

    def _decode(self, task_id: str, row: dict[str, Any], deadline_ms: float | None,
                due_ms: float | None) -> TenantTask | None:
        f = task_fields(row)
        state = f.get("st", "")
        if f.get("u") != self.tenant or state not in ("queued", "delayed", "leased", "waiting"):
            return None
        corrupt = False
        priority: int | None
        try:
            body = Task.from_json(f.get("b", ""), task_id, self.tenant)
            func, created, priority = body.func_name, body.created_at or None, int(body.priority)
        except CorruptTaskError:
            corrupt, func, created = True, None, None
            priority = int(p) if (p := f.get("p", "")).isdigit() else None
        if state == "queued":
            lane = "critical" if priority == int(Priority.CRITICAL) else "normal"
            since = _seconds(f.get("e"))
        elif state == "leased":
            lane, since = "leased", _seconds(f.get("lt"))
        else:
            lane, since = "delayed", due_ms / 1000.0 if due_ms is not None else None
        progress = progress_of(f)
        return TenantTask(task_id=task_id, state=state, lane=lane, priority=priority, func=func, created_at=created,
                          since=since, attempts=count(f.get("a")) or 0,
                          worker=f.get("wk") if state == "leased" else None,
                          deadline=deadline_ms / 1000.0 if deadline_ms is not None and state == "leased" else None,
                          progress=progress.to_dict() if progress is not None else None, corrupt=corrupt)

    @staticmethod
    def _matching(tasks: Sequence[TenantTask], search: str) -> list[TenantTask]:
        needle = search.lower()
        return [t for t in tasks if t.func is not None and needle in t.func.lower()]


def _seconds(ms: str | None) -> float | None:
    n = count(ms) if ms else None
    return n / 1000.0 if n else None


def _number(reply: Any) -> float | None:
    return float(reply) if isinstance(reply, (int, float)) else None
