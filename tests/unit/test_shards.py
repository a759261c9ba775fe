"""Keyspace shards: the shard of a user id, pins, and the key names of each shard."""

from __future__ import annotations

import binascii
import hashlib
import re
from collections import Counter

import pytest

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.errors import ConfigurationError
from fairque_django.core.keys import CLUSTER_SLOTS, Keys, shard_tags, tag_slot
from fairque_django.core.shards import ShardMap, hashed_shard, jump_hash

FIXED = [2, 0, 8, 0, 0, 4, 1, 8]


def test_one_shard_keeps_the_single_redis_layout() -> None:
    shards = ShardMap("fq")
    assert shards.keys == (Keys("fq"),)
    assert shards.of("anyone") == 0
    keys = shards.keys_of("anyone")
    assert keys.base == keys.home == "{fq}"
    assert keys.task("x") == "{fq}:t:x" and keys.workers == "{fq}:workers"


def test_a_tenant_s_keys_live_under_its_shard_tag_and_the_home_keys_under_the_prefix() -> None:
    keys = Keys("fq", 3)
    assert keys.base == "{fq:3}" and keys.home == "{fq}"
    assert keys.task("t1") == "{fq:3}:t:t1"
    assert keys.normal("org") == "{fq:3}:queue:user:org:normal"
    assert keys.lanes("org")[0] == keys.critical("org") == "{fq:3}:queue:user:org:critical"
    assert keys.lane("org", 2) == "{fq:3}:queue:user:org:p2" and keys.gone("org") == "{fq:3}:queue:user:org:gone"
    assert keys.result("org", "t1") == "{fq:3}:result:3:org:t1"
    assert keys.dlq == "{fq:3}:dlq" and keys.stats == "{fq:3}:queue:stats"
    # shared by every shard: the worker registry, heartbeats, schedules, the admin's samples and alerts
    assert keys.workers == "{fq}:workers" and keys.beat("w1") == "{fq}:beat:w1"
    assert keys.worker("w1") == "{fq}:worker:w1" and keys.schedule("s") == "{fq}:sched:s"
    assert keys.samples == "{fq}:admin:samples" and keys.alerts == "{fq}:alerts"


def test_the_shard_of_a_user_is_the_jump_hash_of_its_blake2b_digest() -> None:
    shards = ShardMap("fq", 12)
    for user in ("org:1", "acme", "ünïcode", "x" * 200):
        key = int.from_bytes(hashlib.blake2b(user.encode(), digest_size=8).digest(), "big")
        assert shards.of(user) == jump_hash(key, 12) == hashed_shard(user, 12)
    assert [k.base for k in shards.keys] == ["{" + tag + "}" for tag in shard_tags("fq", 12)]
    assert all(re.fullmatch(rf"fq:{n}(\.\d+)?", tag) for n, tag in enumerate(shard_tags("fq", 12)) if n)
    assert Keys("fq", 0).base == "{fq}"  # a single shard's layout is shard 0 of any sharded one
    # fixed values: the mapping is part of the stored layout and must never change between releases
    assert [hashed_shard(f"org:{n}", 12) for n in range(8)] == FIXED


def test_jump_hash_keeps_every_key_when_buckets_are_added_unless_it_jumps_to_a_new_one() -> None:
    # the defining property of Lamping and Veach's jump consistent hash, over many keys and sizes
    for key in range(0, 1 << 64, (1 << 64) // 997):
        last = 0
        for buckets in range(1, 40):
            now = jump_hash(key, buckets)
            assert now == last or now == buckets - 1
            last = now


def test_growing_the_shards_moves_only_tenants_into_the_new_shards() -> None:
    users = [f"org:{n}" for n in range(6000)]
    before = {u: hashed_shard(u, 12) for u in users}
    after = {u: hashed_shard(u, 16) for u in users}
    moved = [u for u in users if before[u] != after[u]]
    assert all(after[u] >= 12 for u in moved)  # nobody moves between two old shards
    assert 0.2 < len(moved) / len(users) < 0.3  # about (16 - 12) / 16


def test_tenants_spread_evenly_over_the_shards() -> None:
    counts = Counter(hashed_shard(f"org:{n}", 12) for n in range(12_000))
    assert set(counts) == set(range(12))
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000


def test_pins_win_exact_first_then_the_first_matching_pattern() -> None:
    shards = ShardMap("fq", 8, {"big": 5, "eu:*": 2, "eu:special": 7, "*:x": 1})
    assert shards.of("big") == 5
    assert shards.of("eu:special") == 7  # exact wins over the earlier pattern
    assert shards.of("eu:1") == 2
    assert shards.of("eu:x") == 2  # the first matching pattern
    assert shards.of("us:x") == 1
    assert shards.of("other") == hashed_shard("other", 8)


def test_shard_settings_are_checked() -> None:
    config = FairQueueConfig.from_dict({"queue": {"shards": 4, "shard_pins": {"big": 3}}})
    assert config.queue.shards == 4 and dict(config.queue.shard_pins) == {"big": 3}
    with pytest.raises(ConfigurationError, match=r"shard 4 does not exist: queue.shards is 4"):
        FairQueueConfig.from_dict({"queue": {"shards": 4, "shard_pins": {"big": 4}}})
    with pytest.raises(ConfigurationError, match=r"shard number must be an integer >= 0"):
        FairQueueConfig.from_dict({"queue": {"shards": 4, "shard_pins": {"big": "1"}}})
    with pytest.raises(ConfigurationError, match="shards"):
        FairQueueConfig.from_dict({"queue": {"shards": 0}})
    with pytest.raises(ConfigurationError, match="shards"):
        FairQueueConfig.from_dict({"queue": {"shards": 2000}})
    with pytest.raises(ConfigurationError, match="braces"):
        FairQueueConfig.from_dict({"queue": {"shards": 2, "shard_pins": {"a{b}": 1}}})


def test_tag_slot_is_redis_cluster_keyslot() -> None:
    # CLUSTER KEYSLOT values of a real Redis (the hash of a key is the hash of its tag)
    assert tag_slot("fq") == binascii.crc_hqx(b"fq", 0) % 16384
    assert tag_slot("123456789") == 0x31C3 % 16384  # CRC16/XMODEM's check value


@pytest.mark.parametrize("shards", [2, 3, 4, 6, 12, 24, 64, 100])
@pytest.mark.parametrize("prefix", ["fq", "app", "ct12345"])
def test_shard_tags_spread_evenly_over_masters_that_own_equal_runs_of_slots(prefix: str, shards: int) -> None:
    tags = shard_tags(prefix, shards)
    assert tags[0] == prefix and len(set(tags)) == shards
    lanes = [tag_slot(tag) * shards // CLUSTER_SLOTS for tag in tags]
    assert sorted(lanes) == list(range(shards))  # one shard in each of the equal slot ranges
    for masters in (2, 3, 4, 6):
        if shards >= masters:
            per_master = [0] * masters
            for tag in tags:
                per_master[tag_slot(tag) * masters // CLUSTER_SLOTS] += 1
            # equal counts when the masters divide the shards; else a range may straddle two masters
            assert max(per_master) - min(per_master) <= (0 if shards % masters == 0 else 2), (masters, per_master)


def test_the_keys_of_a_sharded_queue_use_the_spread_tags() -> None:
    from fairque_django.core.config import FairQueueConfig
    from fairque_django.core.scripts.commands import Commands

    config = FairQueueConfig.from_dict({"queue": {"shards": 12}})
    for shard in range(12):
        assert Commands(config, None, shard).keys.base == ShardMap("fq", 12).keys[shard].base
