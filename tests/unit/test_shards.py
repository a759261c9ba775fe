"""Keyspace shards: the shard of a user id, pins, and the key names of each shard."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.errors import ConfigurationError
from fairque_django.core.keys import Keys
from fairque_django.core.shards import ShardMap, hashed_shard


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
    assert keys.result("org", "t1") == "{fq:3}:result:3:org:t1"
    assert keys.dlq == "{fq:3}:dlq" and keys.stats == "{fq:3}:queue:stats"
    # shared by every shard: the worker registry, heartbeats, schedules, the admin's samples and alerts
    assert keys.workers == "{fq}:workers" and keys.beat("w1") == "{fq}:beat:w1"
    assert keys.worker("w1") == "{fq}:worker:w1" and keys.schedule("s") == "{fq}:sched:s"
    assert keys.samples == "{fq}:admin:samples" and keys.alerts == "{fq}:alerts"


def test_the_shard_of_a_user_is_crc32_of_its_utf8_bytes_mod_shards() -> None:
    shards = ShardMap("fq", 12)
    for user in ("org:1", "acme", "ünïcode", "x" * 200):
        assert shards.of(user) == zlib.crc32(user.encode()) % 12 == hashed_shard(user, 12)
    assert len(shards.keys) == 12 and {k.base for k in shards.keys} == {f"{{fq:{n}}}" for n in range(12)}


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
