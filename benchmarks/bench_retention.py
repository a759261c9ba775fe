#!/usr/bin/env python3
"""Per-tenant state left in Redis after the tenants' work is done, and get_stats time with N
tenants vs 10 (issue 17).

The code: benchmarks/scenarios/retention.py (``--help`` for the options).
"""

from _entry import run

run("retention")
