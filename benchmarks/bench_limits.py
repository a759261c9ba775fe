#!/usr/bin/env python3
"""Tenant limits: pop cost with 100,000 limited tenants vs 10, rate accuracy, no polling while a
tenant waits for a token,
a heavy tenant capped at 2 of 8 slots next to 20 light tenants.

The code: benchmarks/scenarios/limits.py (``--help`` for the options).
"""

from _entry import run

run("limits")
