#!/usr/bin/env python3
"""Scale-out benchmark (issue 18): a 3-master Redis Cluster vs one Redis -- the command split
across the masters, Redis CPU per task, the noisy neighbour's light-tenant p99 on each.

The code: benchmarks/scenarios/cluster.py (``--help`` for the options).
"""

from _entry import run

run("cluster")
