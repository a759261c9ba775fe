#!/usr/bin/env python3
"""Tenant limits: pop cost with 100,000 limited tenants vs 10, rate accuracy, no polling while a
tenant waits for a token.

The code: benchmarks/scenarios/limits.py (``--help`` for the options).
"""

from _entry import run

run("limits")
