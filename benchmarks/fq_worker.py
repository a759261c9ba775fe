#!/usr/bin/env python
"""Run one fairque_django worker process for the benchmarks (the core Worker, no Django).

    python benchmarks/fq_worker.py --redis-url redis://127.0.0.1:6379/8 --users 100 --concurrency 1

The configuration is built by :func:`benchmarks.peer_workers.fq_app.make_config`, the same
function the producer uses, so both sides agree on prefix, worker id and assigned users.
Task bodies come from :mod:`benchmarks.peer_workers.fq_tasks` (``bench.noop``, ``bench.record``,
``bench.sleep``). SIGTERM/SIGINT stop the worker gracefully.

``--profile PATH`` runs every slot thread under cProfile and writes ``PATH`` (pstats format,
all slots merged) when the worker stops.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peer_workers import common, fq_app  # noqa: E402
from fairque_django.core.worker import Worker  # noqa: E402


def parse_users(spec: str) -> list[str]:
    """``100`` -> user:0..user:99; ``tenant:*`` -> that pattern; ``a,b`` -> those users."""
    if spec.isdigit():
        return fq_app.users(int(spec))
    return [u for u in spec.split(",") if u]


def install_profiler(path: str) -> None:
    """Profile each slot thread (cProfile only sees the thread it is enabled in)."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def profiled(loop: Callable[[Worker], None]) -> Callable[[Worker], None]:
        def run(self: Worker) -> None:
            prof = cProfile.Profile()
            with lock:
                profiles.append(prof)
            prof.enable()
            try:
                loop(self)
            finally:
                prof.disable()

        return run

    # a slot runs one of the two loops (prefetching slots unless in burst / max-tasks mode)
    Worker._slot_loop = profiled(Worker._slot_loop)  # type: ignore[method-assign]
    Worker._prefetch_loop = profiled(Worker._prefetch_loop)  # type: ignore[method-assign]

    original_start = Worker.start

    def start(self: Worker) -> int:
        try:
            return original_start(self)
        finally:
            import pstats

            with lock:
                done = [p for p in profiles]
            if done:
                stats = pstats.Stats(done[0])
                for p in done[1:]:
                    stats.add(p)
                stats.dump_stats(path)

    Worker.start = start  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", common.DEFAULT_URL))
    ap.add_argument("--prefix", default=fq_app.PREFIX, help="queue.stats_prefix (key prefix)")
    ap.add_argument("--worker-id", default=fq_app.WORKER_ID)
    ap.add_argument("--users", default="100", help="assigned users: a count, a pattern or a comma list")
    ap.add_argument("--concurrency", type=int, default=1, help="slot threads")
    ap.add_argument("--poll-interval", type=float, default=1.0)
    ap.add_argument("--burst", action="store_true", help="exit when nothing is left to do")
    ap.add_argument("--profile", default=None, help="write a cProfile of the slot threads here")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    os.environ["BENCH_REDIS_URL"] = args.redis_url

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.profile:
        install_profiler(args.profile)
    config = fq_app.make_config(args.redis_url, parse_users(args.users), prefix=args.prefix,
                                worker_id=args.worker_id, concurrency=args.concurrency,
                                poll_interval=args.poll_interval)
    worker = Worker(config, worker_id=args.worker_id, concurrency=args.concurrency, burst=args.burst,
                    task_modules=fq_app.TASK_MODULES)
    return worker.start()


if __name__ == "__main__":
    sys.exit(main())
