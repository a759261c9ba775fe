#!/usr/bin/env python3
"""Run the whole benchmark suite: ``python3 benchmarks/run_benchmarks.py [--quick] [--only NAMES]``.

Creates the benchmarks' own virtualenv on first use (``benchmarks/.venv-peers``: fairque_django
plus RQ, Huey, Celery and matplotlib -- never project dependencies), then runs each benchmark in
it, one after the other, against the local Redis (each on its own database, flushed before and
after; ``--redis-url`` or $FAIRQUE_BENCH_REDIS_URL puts them all on one database). Results go
to ``benchmarks/results/*.json``, plots to ``docs/images/``. Benchmarks print
numbers; they never fail on a missed figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers_env import ensure_peers_env  # noqa: E402

SUITE = {
    "core": "bench_core.py",              # issue figures for push, push_batch, pop+ack, tenant scale
    "throughput": "bench_throughput.py",  # drain, latency, push vs peers, scale + Redis cost per task
    "fairness": "bench_fairness.py",      # noisy / expensive neighbour, critical flood, stealing, plots
    "metrics": "bench_metrics.py",        # metrics on vs off
    "results": "bench_results.py",        # a default-mode worker with and without kept results
    "as_users": "bench_as_users.py",      # each system as users run it: default worker modes, Redis cost per task
    "retention": "bench_retention.py",    # per-tenant state left after the work is done; get_stats vs tenants
    "cluster": "bench_cluster.py",        # a 3-master Redis Cluster vs one Redis: command split, CPU per task, fairness
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--only", default=",".join(SUITE), help=f"comma-separated subset of {', '.join(SUITE)}")
    ap.add_argument("--redis-url", default=None,
                    help="one Redis URL (with its database, flushed) for every benchmark; default: each its own "
                         "database on 127.0.0.1:6379")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.redis_url:
        env["FAIRQUE_BENCH_REDIS_URL"] = args.redis_url
    python = ensure_peers_env()
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in SUITE:
            print(f"unknown benchmark {name!r}; choose from {', '.join(SUITE)}")
            return 2
        cmd = [str(python), str(HERE / SUITE[name])] + (["--quick"] if args.quick else [])
        print(f"\n##### {name}: {' '.join(cmd)}", flush=True)
        start = time.monotonic()
        subprocess.run(cmd, check=False, env=env)
        print(f"##### {name} took {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
