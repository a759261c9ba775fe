#!/usr/bin/env python3
"""Keyspace shards: an idle worker's Redis commands per second and the wake-up latency of a push
into any shard, for queue.shards = 1, 4, 12.

The code: benchmarks/scenarios/shards.py (``--help`` for the options).
"""

from _entry import run

run("shards")
