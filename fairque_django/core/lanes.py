"""Reading a user's lanes (see :mod:`.keys`): exact counts of its queued tasks per priority, and the
ids at the heads of its lanes.

A lane is a LIST per priority; a cancelled or deleted queued task leaves its id in its lane (lazy
removal) and is counted in the user's gone hash until a pop takes it out, so a lane's count is its
length less its stale entries. A user whose lanes are still in the former layout (one ZSET for
priorities 1-5, converted by the first script that touches them) is counted from that too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .keys import LANE_PRIORITIES, Keys

__all__ = ["COUNT_READS", "CRITICAL_READS", "HEAD_READS", "TOTAL_READS", "add_count_reads", "add_critical_reads",
           "add_head_reads", "add_total_reads", "count_commands", "count_defaults", "counts_from", "critical_from",
           "heads_from", "total_from"]

_SPAN: Final = 2 ** 40  # the former zset lane's score: (6 - priority) * 2^40 + seq
_GONE_FIELDS: Final = tuple(f"\t{p}" for p in LANE_PRIORITIES)

COUNT_READS: Final = 12  # replies :func:`add_count_reads` adds per user
HEAD_READS: Final = 7  # replies :func:`add_head_reads` adds per user
TOTAL_READS: Final = 8  # replies :func:`add_total_reads` adds per user
CRITICAL_READS: Final = 2  # replies :func:`add_critical_reads` adds per user


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def count_commands(keys: Keys, user: str) -> list[list[Any]]:
    """The reads of :func:`counts_from` for ``user`` (:data:`COUNT_READS` commands)."""
    commands: list[list[Any]] = [["LLEN", lane] for lane in keys.lanes(user)]
    for p in range(5, 0, -1):
        low = (6 - p) * _SPAN
        commands.append(["ZCOUNT", keys.normal(user), low, f"({low + _SPAN}"])
    commands.append(["HMGET", keys.gone(user), *_GONE_FIELDS])
    return commands


def add_count_reads(pipe: Any, keys: Keys, user: str) -> list[Any]:
    """Add the reads of :func:`counts_from` for ``user`` to ``pipe``; returns their defaults."""
    for command in count_commands(keys, user):
        pipe.execute_command(*command)
    return count_defaults()


def count_defaults() -> list[Any]:
    """What :func:`add_count_reads` reads when nothing is there."""
    return [0] * 11 + [[None] * len(_GONE_FIELDS)]


def counts_from(replies: Sequence[Any]) -> dict[int, int]:
    """Priority (6 .. 1) -> tasks queued in that lane, from the replies of :func:`add_count_reads`."""
    lengths, former, stale = replies[:6], [0, *replies[6:11]], replies[11] or []
    stale = list(stale) + [None] * (6 - len(stale))
    return {p: max(0, _int(lengths[i]) + _int(former[i]) - max(0, _int(stale[i])))
            for i, p in enumerate(LANE_PRIORITIES)}


def add_total_reads(pipe: Any, keys: Keys, user: str) -> list[Any]:
    """Add the reads of :func:`total_from` (fewer than :func:`add_count_reads`) to ``pipe``; returns
    their defaults."""
    for lane in keys.lanes(user):
        pipe.execute_command("LLEN", lane)
    pipe.execute_command("ZCARD", keys.normal(user))
    pipe.execute_command("HMGET", keys.gone(user), *_GONE_FIELDS)
    return [0] * 7 + [[None] * len(_GONE_FIELDS)]


def total_from(replies: Sequence[Any]) -> int:
    """The tasks queued in a user's lanes, from the replies of :func:`add_total_reads`."""
    stale = list(replies[7] or []) + [None] * len(_GONE_FIELDS)
    return max(0, sum(_int(n) for n in replies[:7]) - sum(max(0, _int(stale[i])) for i in range(len(_GONE_FIELDS))))


def add_critical_reads(pipe: Any, keys: Keys, user: str) -> list[Any]:
    """Add the reads of :func:`critical_from` to ``pipe``; returns their defaults."""
    pipe.execute_command("LLEN", keys.critical(user))
    pipe.execute_command("HGET", keys.gone(user), _GONE_FIELDS[0])
    return [0, None]


def critical_from(replies: Sequence[Any]) -> int:
    """The tasks queued in a user's critical lane, from the replies of :func:`add_critical_reads`."""
    return max(0, _int(replies[0]) - max(0, _int(replies[1])))


def add_head_reads(pipe: Any, keys: Keys, user: str) -> list[Any]:
    """Add the reads of :func:`heads_from` for ``user`` to ``pipe``; returns their defaults."""
    for lane in keys.lanes(user):
        pipe.execute_command("LINDEX", lane, -1)  # the RPOP end: the one served next
    pipe.execute_command("ZRANGE", keys.normal(user), 0, 0)
    return [None] * 6 + [[]]


def heads_from(replies: Sequence[Any]) -> tuple[Any, Any]:
    """The id at the head of the critical lane and the one at the head of the first other lane that
    has one (either None), from the replies of :func:`add_head_reads` (a head may be a stale entry)."""
    crit, others, former = replies[0], replies[1:6], replies[6]
    normal = next((h for h in others if h is not None), None)
    if normal is None and former:
        normal = former[0]
    return crit, normal
