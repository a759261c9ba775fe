"""Keyspace shards: which of ``queue.shards`` hash tags holds a tenant's keys.

With ``queue.shards = 1`` (the default) every key lives under ``{prefix}``, a single Redis's layout.
With more, a tenant's keys (its queues, task hashes, leases, DLQ entries, counters, results, XCom)
live under its shard's hash tag (``{prefix:N}``, salted: ``keys.shard_tags``); shard 0 is
``{prefix}`` itself, so a single shard's layout is shard 0 of any sharded one and going from 1 to
N shards leaves shard 0's tenants where they are.

N is the jump consistent hash (Lamping and Veach, 2014) of the first 8 bytes (big-endian) of the
BLAKE2b digest of the id's UTF-8 bytes, over ``shards`` buckets, unless ``queue.shard_pins`` names
its shard (an exact id wins, then the first matching glob pattern). The consistent hash keeps a
tenant's shard *number* when the number of shards grows (from N to M only the tenants that land in
the new shards change number, about (M - N) / M of them), but shards 1 to N-1 change hash tags with
N (each tag is salted to its share of the cluster's slots, see ``keys.shard_tags``): after a change
of ``queue.shards`` every tenant outside shard 0 has a new keyspace, and ``manage.py fairque_shards
--from-shards N --move`` moves its tasks there (:mod:`.reshard`).

The worker registry, heartbeats, schedules and the admin's samples stay under ``{prefix}`` (the
*home* keys, in the slot of shard 0).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .config.topology import glob_match, is_pattern
from .keys import Keys

if TYPE_CHECKING:
    from .config import QueueConfig

__all__ = ["ShardMap", "hashed_shard", "jump_hash", "shard_map"]


_MASK64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket (0 to buckets - 1) of a 64-bit *key* (Lamping and Veach)."""
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * 2862933555777941757 + 1) & _MASK64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def hashed_shard(user_id: str, shards: int) -> int:
    """The shard a stable hash of *user_id* picks (see the module's docstring)."""
    if shards <= 1:
        return 0
    digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), shards)


class ShardMap:
    """The shards of one prefix: their keys, and the shard of any user id (pins first)."""

    __slots__ = ("count", "home", "keys", "of")

    def __init__(self, prefix: str, shards: int = 1, pins: Mapping[str, int] | None = None) -> None:
        self.count = shards
        self.home = Keys(prefix)
        self.keys: tuple[Keys, ...] = (self.home, *(Keys.of_shard(prefix, shard, shards) for shard in range(1, shards)))
        exact = {user: shard for user, shard in (pins or {}).items() if not is_pattern(user)}
        patterns = tuple((glob, shard) for glob, shard in (pins or {}).items() if is_pattern(glob))

        def of(user_id: str) -> int:
            pinned = exact.get(user_id)
            if pinned is not None:
                return pinned
            for glob, shard in patterns:
                if glob_match(glob, user_id):
                    return shard
            return hashed_shard(user_id, shards)

        self.of: Callable[[str], int] = functools.lru_cache(maxsize=16_384)(of) if shards > 1 else _zero

    def keys_of(self, user_id: str) -> Keys:
        """The keys of *user_id*'s shard."""
        return self.keys[self.of(user_id)]


@functools.lru_cache(maxsize=64)
def shard_map(queue: QueueConfig) -> ShardMap:
    """The shard map of a ``queue`` configuration (its prefix, ``shards`` and ``shard_pins``), built once."""
    return ShardMap(queue.stats_prefix, queue.shards, queue.shard_pins)


def _zero(user_id: str) -> int:
    return 0
