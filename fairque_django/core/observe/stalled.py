"""Stalled tenants: ready tasks in a tenant's lanes while the tenant is in no partition's rotation
(the ready sets pop serves from), so no worker will ever pop them -- a silent stall that corrupt
data (e.g. garbage in a virtual clock before the scripts repaired it) or a lost write can cause.

The scripts keep "lanes not empty => in its partition's ready set, or held out of it by its
limits (paused, at its cap, waiting for a rate token: ``P:theld``)" in every call, so a tenant
seen breaking it in one consistent read (a transaction) is stalled, not in a race. Checked for
the ``STALL_SCAN`` tenants with the most unfinished work (and the snapshot's top ``n``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..config import POOL_PARTITION, FairQueueConfig
from ..keys import Keys
from ..lanes import COUNT_READS, add_count_reads, counts_from

STALL_SCAN: Final = 50  # tenants (most unfinished work first) checked for a stall by every snapshot


@dataclass(frozen=True, slots=True)
class StalledTenant:
    """A tenant with ``ready`` tasks in its lanes that is in no partition's rotation."""

    tenant: str
    partition: str  # where its tasks should be served from (the current configuration)
    ready: int

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "partition": self.partition, "ready": self.ready}


def describe_stalled(stalled: Sequence[StalledTenant], *, names: int = 5) -> str:
    """One sentence: who is stalled and what to do."""
    shown = ", ".join(f"{s.tenant} ({s.ready} ready, partition {s.partition})" for s in stalled[:names])
    more = f" and {len(stalled) - names} more" if len(stalled) > names else ""
    return (f"{len(stalled)} tenant(s) have ready tasks but are in no partition's rotation, so no worker pops "
            f"them: {shown}{more}; a new push for the tenant puts it back (see docs/reliability.md)")


def partition_for(config: FairQueueConfig, user: str) -> str:
    return config.partition_of(user) if config.workers else POOL_PARTITION


def queue_rotation_reads(pipe: Any, keys: Keys, config: FairQueueConfig, users: Sequence[str]) -> list[Any]:
    """Add, per user, the read of its score in its partition's ready set; returns the defaults."""
    for user in users:
        pipe.zscore(keys.ready(partition_for(config, user)), user)
    return [None] * len(users)


def suspects(users: Sequence[str], lanes: Sequence[int], scores: Sequence[Any]) -> list[str]:
    """The users with ready tasks in their lanes (``lanes``) and no score in their partition."""
    return [u for u, n, s in zip(users, lanes, scores, strict=True) if n > 0 and s is None]


def queue_recheck_reads(pipe: Any, keys: Keys, config: FairQueueConfig, users: Sequence[str]) -> list[Any]:
    """Add (to a transaction) a consistent re-read of each suspect: its lanes and its score in every
    partition (its tasks may sit in another one, e.g. after a reassignment); returns the defaults."""
    parts = [*config.worker_ids, POOL_PARTITION]
    defaults: list[Any] = []
    for user in users:
        defaults += add_count_reads(pipe, keys, user)
        for part in parts:
            pipe.zscore(keys.ready(part), user)
        pipe.hexists(keys.tenant_held, user)
        defaults += [*([None] * len(parts)), False]
    return defaults


def stalled_from(config: FairQueueConfig, users: Sequence[str], replies: Sequence[Any]) -> list[StalledTenant]:
    """The stalled tenants among ``users`` from the replies of :func:`queue_recheck_reads`."""
    width = COUNT_READS + len(config.worker_ids) + 1 + 1
    out: list[StalledTenant] = []
    for i, user in enumerate(users):
        row = replies[i * width:(i + 1) * width]
        ready = sum(counts_from(row[:COUNT_READS]).values())
        if ready > 0 and all(s is None for s in row[COUNT_READS:-1]) and not row[-1]:  # (a held tenant waits by design)
            out.append(StalledTenant(user, partition_for(config, user), ready))
    return out
