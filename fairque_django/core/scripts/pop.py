"""The values of a pop: what a worker passes to ``pop.lua`` (:class:`PopPlan`), what the script
answers (:class:`PopReply`, one shape) and what a driver returns of one pop (:class:`PopStep`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..codec import text
from ..models import Task

__all__ = ["PopPlan", "PopReply", "PopStep"]

RESYNC = "resync: steal copies out of date"  # pop.lua's problem entry when the worker's steal copies are stale


@dataclass(frozen=True, slots=True)
class PopPlan:
    """What a worker passes to ``pop.lua``: its partitions and who it may steal from."""

    worker_id: str
    own_partition: str
    steal_exact: tuple[str, ...]
    steal_patterns: tuple[str, ...]  # anchored Lua patterns
    steal_partitions: tuple[str, ...]
    steal_digest: str = field(init=False)  # names the definitions: the steal copies are rebuilt when it changes
    # orphan takeover: (partition, the workers that serve it) for each partition the worker takes
    # over while none of those has a live heartbeat (``{prefix}:beat:<id>``; see core/ops.py)
    orphan_watch: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def beat_owners(self) -> tuple[str, ...]:
        """The worker ids whose heartbeat keys tell which watched partitions are orphaned."""
        return tuple(dict.fromkeys(w for _, servers in self.orphan_watch for w in servers))

    def orphaned(self, alive: set[str]) -> tuple[str, ...]:
        """The watched partitions none of whose servers is in ``alive``."""
        return tuple(part for part, servers in self.orphan_watch if alive.isdisjoint(servers))

    def __post_init__(self) -> None:
        parts = ("v2", *self.steal_exact, "", *self.steal_patterns, "", *self.steal_partitions)
        object.__setattr__(self, "steal_digest", hashlib.sha1("\n".join(parts).encode()).hexdigest())

    @property
    def wake_partitions(self) -> tuple[str, ...]:
        own = (self.own_partition,) if self.own_partition else ()
        return own + self.steal_partitions


@dataclass(frozen=True, slots=True)
class PopReply:
    """``pop.lua``'s reply: ``{due, problems, then per task: id, body, "retries\tattempts\tdeadline
    ms\tstolen\tuser"}`` (due: -2 an unpark found the slot no longer parked, -1 none, else ms)."""

    served: bool  # False: an unpark found the slot no longer parked (a push may have handed it a task)
    due: float | None  # seconds until a delayed task or lease is due, when no task was leased
    problems: tuple[str, ...]  # keys moved aside / tasks dead-lettered by the script, to log
    rows: tuple[tuple[Any, ...], ...]  # per task: id, body, retries, attempts, deadline ms, user, stolen
    resync: bool = False  # the worker's steal copies were out of date (nothing stolen): sync them

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> PopReply:
        due = int(reply[0])
        rows = []
        for i in range(2, len(reply), 3):
            retries, attempts, deadline, stolen, user = text(reply[i + 2]).split("\t", 4)
            rows.append((reply[i], reply[i + 1], retries, attempts, deadline, user, stolen))
        problems = tuple(text(p) for p in reply[1] or ())
        resync = RESYNC in problems
        if resync:
            problems = tuple(p for p in problems if p != RESYNC)
        return cls(served=due != -2, due=due / 1000.0 if due >= 0 else None, problems=problems, rows=tuple(rows),
                   resync=resync)

    def then(self, later: PopReply) -> PopReply:
        """This reply followed by the reply of a later pop of the same slot (after a resync)."""
        return PopReply(served=self.served, due=later.due, problems=self.problems + later.problems,
                        rows=self.rows + later.rows, resync=later.resync)

    @classmethod
    def handed(cls, item: bytes | str) -> PopReply:
        """A task a push leased straight to a parked slot (``id\tuser\tdeadline_ms\tbody`` on the
        slot's hand list), as the reply a pop would have given."""
        task_id, user, deadline, body = text(item).split("\t", 3)
        return cls(served=True, due=None, problems=(), rows=((task_id, body, 0, 1, int(deadline), user, 0),))


@dataclass(slots=True)
class PopStep:
    """What one pop call (or the read of a slot's hand list) leased: the tasks, the seconds until
    something is due when none was ready, the lease token, whether an unpark found the slot no
    longer parked (``handed_over``: a push leased it a task, take it from its hand list), and how
    many leased tasks were corrupt and dead-lettered (pop again when that is all that came)."""

    tasks: list[Task]
    due: float | None
    token: str
    handed_over: bool = False
    corrupt: int = 0
    resync: bool = False  # the steal copies were out of date: nothing was stolen (they sync first)

    @property
    def again(self) -> bool:
        """Whether only corrupt tasks came, or nothing while the steal copies were out of date (the
        caller pops again)."""
        return (self.corrupt > 0 or self.resync) and not self.tasks
