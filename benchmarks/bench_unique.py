#!/usr/bin/env python3
"""Unique-key and dependency push cost against a plain push (issue 16: a unique-key push costs at
most 1.2x a plain push).

The code: benchmarks/scenarios/unique.py (``--help`` for the options).
"""

from _entry import run

run("unique")
