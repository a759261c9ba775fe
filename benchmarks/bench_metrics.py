#!/usr/bin/env python3
"""Cost of the built-in metrics: one core ``Worker`` draining N no-op tasks with ``queue.metrics`` on
(wait/run histograms per tenant and for everyone, completions per minute) versus off.

The code: benchmarks/scenarios/metrics.py (``--help`` for the options).
"""

from _entry import run

run("metrics")
