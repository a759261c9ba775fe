"""Who serves whom: glob patterns, partitions and the rules between workers.

An entry of ``assigned_users``/``steal_targets`` containing ``*`` or ``?`` is a glob pattern
(only those two wildcards; ``[`` is literal).  A user that no worker is assigned to lives in
the shared :data:`POOL_PARTITION`.  Exact entries win over patterns; among patterns the first
match in worker order wins.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..ids import GLOB_CHARS, is_pattern
from .kinds import Problem, item, join

__all__ = ["GLOB_CHARS", "POOL_PARTITION", "Assignment", "OwnerIndex", "assignment_problems", "glob_match",
           "glob_to_lua_pattern", "is_pattern", "partition_servers", "steal_partitions"]

POOL_PARTITION: Final = "~pool"
"""Partition of users that no worker is assigned to (worker ids may not start with ``~``)."""

_LUA_MAGIC: Final = "^$()%.[]*+-?"
_OWNER_CACHE_SIZE: Final = 16_384


# --------------------------------------------------------------------------- patterns


@functools.lru_cache(maxsize=1024)
def compile_glob(glob: str) -> re.Pattern[bytes]:
    """The regex of *glob*, on UTF-8 bytes (so that ``?`` means what ``.`` means in the Lua
    pattern of :func:`glob_to_lua_pattern`: Lua strings are byte strings)."""
    parts: list[bytes] = []
    for byte in glob.encode("utf-8", "surrogatepass"):
        if byte == 0x2A:  # "*"
            parts.append(b".*")
        elif byte == 0x3F:  # "?"
            parts.append(b".")
        else:
            parts.append(re.escape(bytes((byte,))))
    return re.compile(b"".join(parts), re.DOTALL)


def glob_match(glob: str, user_id: str) -> bool:
    """Whether *user_id* matches *glob* (``*`` any run, ``?`` one byte, rest literal)."""
    return compile_glob(glob).fullmatch(user_id.encode("utf-8", "surrogatepass")) is not None


def glob_to_lua_pattern(glob: str) -> str:
    """Convert a glob such as ``tenant:*`` into the anchored Lua pattern ``^tenant:.*$``."""
    out: list[str] = ["^"]
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in _LUA_MAGIC:
            out.append("%" + ch)
        else:
            out.append(ch)
    out.append("$")
    return "".join(out)


# --------------------------------------------------------------------------- rules between workers


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the cross-worker rules need of one ``workers[i]`` entry (built or still raw)."""

    index: int
    worker_id: object
    assigned_users: Sequence[object]


def assignment_problems(entries: Iterable[Assignment]) -> list[Problem]:
    """Every duplicate worker id and every exact user assigned to more than one worker, in the
    order a reader meets them (each problem is keyed at its second occurrence)."""
    ids: dict[str, list[int]] = {}
    owners: dict[str, list[tuple[str, int, int]]] = {}
    for entry in entries:
        wid = entry.worker_id
        label = wid if isinstance(wid, str) else item("workers", entry.index)
        if isinstance(wid, str):
            ids.setdefault(wid, []).append(entry.index)
        for pos, user in enumerate(entry.assigned_users):
            if isinstance(user, str) and not is_pattern(user):
                holders = owners.setdefault(user, [])
                if not holders or holders[-1][1] != entry.index:
                    holders.append((label, entry.index, pos))
    found: list[tuple[tuple[int, int, int], Problem]] = []
    for wid, indexes in ids.items():
        if len(indexes) > 1:
            found.append(((indexes[1], 0, 0), Problem(
                join(item("workers", indexes[1]), "id"),
                f"duplicate worker id {wid!r} (also workers[{indexes[0]}].id)",
                "duplicate_worker_id", wid, tuple(item("workers", i) for i in indexes))))
    for user, holders in owners.items():
        labels = list(dict.fromkeys(h[0] for h in holders))
        if len(labels) > 1:
            first, first_index, _ = holders[0]
            second, index, pos = next(h for h in holders if h[0] != first)
            found.append(((index, 1, pos), Problem(
                item(join(item("workers", index), "assigned_users"), pos),
                f"user {user!r} is assigned to both worker {first!r} (workers[{first_index}]) "
                f"and worker {second!r} (workers[{index}])",
                "double_assignment", user, tuple(labels))))
    return [problem for _, problem in sorted(found, key=lambda pair: pair[0])]


# --------------------------------------------------------------------------- owner index


class OwnerIndex:
    """Lookup tables derived once from the workers: O(1) owner of an exact user id, a cached
    first-matching pattern otherwise, and each worker's steal partitions."""

    __slots__ = ("by_id", "exact", "match", "patterns", "servers", "steal_cache")

    def __init__(self, workers: Sequence[_Worker]) -> None:
        self.by_id: dict[str, Any] = {w.id: w for w in workers}  # the config's WorkerConfigs
        exact: dict[str, str] = {}
        patterns: list[tuple[str, str]] = []
        for worker in workers:
            for user in worker.assigned_users:
                if is_pattern(user):
                    patterns.append((user, worker.id))
                else:
                    exact.setdefault(user, worker.id)
        self.exact = exact
        self.patterns = tuple(patterns)
        compiled = tuple((compile_glob(glob), wid) for glob, wid in patterns)

        def match(user_id: str) -> str | None:
            data = user_id.encode("utf-8", "surrogatepass")
            for regex, wid in compiled:
                if regex.fullmatch(data) is not None:
                    return wid
            return None

        self.match: Callable[[str], str | None] = functools.lru_cache(maxsize=_OWNER_CACHE_SIZE)(match)
        self.steal_cache: dict[str, tuple[str, ...]] = {}
        self.servers: dict[str, tuple[str, ...]] | None = None

    def owner_of(self, user_id: str) -> str | None:
        owner = self.exact.get(user_id)
        if owner is not None or not self.patterns:
            return owner
        return self.match(user_id)

    def partition_of(self, user_id: str) -> str:
        owner = self.owner_of(user_id)
        return POOL_PARTITION if owner is None else owner

    def steal_partitions(self, worker: _Worker) -> tuple[str, ...]:
        cached = self.steal_cache.get(worker.id)
        if cached is None:
            cached = self.steal_cache[worker.id] = steal_partitions(self, worker)
        return cached


    def partition_servers(self) -> dict[str, tuple[str, ...]]:
        cached = self.servers
        if cached is None:
            cached = self.servers = partition_servers(self)
        return cached


class _Worker(Protocol):
    """The part of a WorkerConfig the index reads."""

    @property
    def id(self) -> str: ...

    @property
    def assigned_users(self) -> tuple[str, ...]: ...

    @property
    def steal_exact(self) -> frozenset[str]: ...

    @property
    def steal_patterns(self) -> tuple[str, ...]: ...


def steal_partitions(index: OwnerIndex, worker: _Worker) -> tuple[str, ...]:
    """Partitions where *worker*'s steal targets live: exact targets contribute their owner (or
    the pool); any steal pattern means every other worker plus the pool.  Never the worker's
    own; in worker order, then the pool."""
    if worker.steal_patterns:
        wanted = {*index.by_id, POOL_PARTITION}
    else:
        wanted = {index.partition_of(user) for user in worker.steal_exact}
    wanted.discard(worker.id)
    return tuple(w for w in (*index.by_id, POOL_PARTITION) if w in wanted)


def partition_servers(index: OwnerIndex) -> dict[str, tuple[str, ...]]:
    """The workers that serve each partition by configuration: a worker's own partition its owner;
    the pool the workers that may steal from it (absent when none may: nothing is queued there).
    A partition none of whose servers has a live heartbeat is orphaned (orphan takeover)."""
    out: dict[str, tuple[str, ...]] = {wid: (wid,) for wid in index.by_id}
    pool = tuple(w.id for w in index.by_id.values() if POOL_PARTITION in index.steal_partitions(w))
    if pool:
        out[POOL_PARTITION] = pool
    return out
