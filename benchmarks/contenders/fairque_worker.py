"""One fairque_django worker process: ``python -m benchmarks.contenders.fairque_worker [--config FILE |
--users N] ...``.

Runs the core :class:`~fairque_django.core.worker.Worker` exactly as ``runfairworker`` would (no
Django settings): the configuration comes from a JSON file the producer wrote (fairness scenarios)
or from :func:`.fairque_app.make_config`, the same function the producer uses (throughput
scenarios), so both sides agree on prefix, worker id and assigned users; the tasks are
:mod:`.fairque_app`'s. SIGTERM/SIGINT stop it gracefully. ``--profile PATH`` runs every slot thread
under cProfile and writes ``PATH`` (pstats format, all slots merged) when the worker stops.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import sys
import threading
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.contenders import bodies
from benchmarks.contenders.fairque_app import PREFIX, TASK_MODULES, WORKER_ID, make_config, users
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.worker import Worker
from fairque_django.core.worker.slot import Slot


def parse_users(spec: str) -> list[str]:
    """``100`` -> user:0..user:99; ``tenant:*`` -> that pattern; ``a,b`` -> those users."""
    if spec.isdigit():
        return users(int(spec))
    return [u for u in spec.split(",") if u]


def install_profiler(path: str) -> None:
    """Profile each slot thread (cProfile only sees the thread it is enabled in)."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def profiled(loop: Callable[[Slot], None]) -> Callable[[Slot], None]:
        def run(self: Slot) -> None:
            prof = cProfile.Profile()
            with lock:
                profiles.append(prof)
            prof.enable()
            try:
                loop(self)
            finally:
                prof.disable()

        return run

    # every slot thread runs Slot.run (the watchdog and heartbeat threads are not profiled)
    Slot.run = profiled(Slot.run)  # type: ignore[method-assign]
    original_start = Worker.start

    def start(self: Worker) -> int:
        try:
            return original_start(self)
        finally:
            with lock:
                done = list(profiles)
            if done:
                stats = pstats.Stats(done[0])
                for p in done[1:]:
                    stats.add(p)
                stats.dump_stats(path)

    Worker.start = start  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one fairque_django worker process for the benchmarks.")
    ap.add_argument("--redis-url", default=bodies.url())
    ap.add_argument("--config", default=None, help="JSON configuration (FairQueueConfig.from_dict); "
                    "else built from --users, --prefix, --concurrency, --poll-interval")
    ap.add_argument("--prefix", default=PREFIX, help="queue.stats_prefix (key prefix)")
    ap.add_argument("--worker-id", default=WORKER_ID)
    ap.add_argument("--users", default="100", help="assigned users: a count, a pattern or a comma list")
    ap.add_argument("--concurrency", type=int, default=1, help="slot threads")
    ap.add_argument("--poll-interval", type=float, default=1.0)
    ap.add_argument("--burst", action="store_true", help="exit when nothing is left to do")
    ap.add_argument("--no-prefetch", action="store_true", help="slots without prefetching")
    ap.add_argument("--ready", action="store_true", help="add this worker to the ready set once started")
    ap.add_argument("--profile", default=None, help="write a cProfile of the slot threads here")
    ap.add_argument("--log-level", default=os.environ.get("BENCH_LOG_LEVEL", "WARNING"))
    args = ap.parse_args(argv)
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.profile:
        install_profiler(args.profile)
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            config = FairQueueConfig.from_dict(json.load(handle), worker_id=args.worker_id)
        concurrency = None
    else:
        config = make_config(args.redis_url, parse_users(args.users), prefix=args.prefix, worker_id=args.worker_id,
                             concurrency=args.concurrency, poll_interval=args.poll_interval)
        concurrency = args.concurrency
    worker = Worker(config, worker_id=args.worker_id, concurrency=concurrency, burst=args.burst,
                    task_modules=TASK_MODULES, prefetch=not args.no_prefetch)
    if args.ready:
        bodies.mark_ready(args.worker_id)
    return worker.start()


if __name__ == "__main__":
    sys.exit(main())
