#!/usr/bin/env python3
"""Throughput, latency, push and tenant-scale benchmarks of fairque_django against its peers.

The code: benchmarks/scenarios/throughput.py (``--help`` for the options).
"""

from _entry import run

run("throughput")
