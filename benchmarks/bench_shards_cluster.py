#!/usr/bin/env python3
"""Keyspace shards on a 3-master Redis Cluster: the Redis commands of a run split across the masters.

The code: benchmarks/scenarios/shards_cluster.py (``--help`` for the options).
"""

from _entry import run

run("shards_cluster")
