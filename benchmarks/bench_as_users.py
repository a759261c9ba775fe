#!/usr/bin/env python3
"""fairque_django against its peers as users run each system (issue 17): default worker modes,
Redis CPU, commands and memory per task.

The code: benchmarks/scenarios/as_users.py (``--help`` for the options).
"""

from _entry import run

run("as_users")
