#!/usr/bin/env python3
"""Core benchmark of fairque_django's TaskQueue against raw redis-py on the same Redis.

The code: benchmarks/scenarios/core.py (``--help`` for the options).
"""

from _entry import run

run("core")
