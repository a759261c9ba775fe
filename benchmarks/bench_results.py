#!/usr/bin/env python3
"""What keeping results costs: ``python3 benchmarks/bench_results.py [N] [REDIS_URL]``.

The code: benchmarks/scenarios/results.py (``--help`` for the options).
"""

from _entry import run

run("results")
