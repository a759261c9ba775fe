#!/usr/bin/env python3
"""Fairness benchmark: how long light tenants wait next to a noisy one, on four queues.

The code: benchmarks/scenarios/fairness.py (``--help`` for the options).
"""

from _entry import run

run("fairness")
