#!/usr/bin/env python3
"""Where the Redis CPU of a batched task lifecycle goes, script by script.

The code: benchmarks/scenarios/scripts.py (``--help`` for the options).
"""

from _entry import run

run("scripts")
