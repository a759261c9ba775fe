#!/usr/bin/env python3
"""Stealing cost: a stealer's pop with 10 vs 100,000 ready tenants it may not take, and push cost
per stealer covering a partition.

The code: benchmarks/scenarios/steal.py (``--help`` for the options).
"""

from _entry import run

run("steal")
