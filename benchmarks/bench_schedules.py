#!/usr/bin/env python3
"""Schedule tick cost: Redis round trips per worker per second with nothing due, and with a
1-second schedule.

The code: benchmarks/scenarios/schedules.py (``--help`` for the options).
"""

from _entry import run

run("schedules")
