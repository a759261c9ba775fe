"""Cost of the built-in metrics: one core ``Worker`` draining N no-op tasks with ``queue.metrics`` on
(wait/run histograms per tenant and for everyone, completions per minute) versus off.

    python3 benchmarks/bench_metrics.py                 # 3,000 tasks x 11 rounds
    python3 benchmarks/bench_metrics.py -n 1000 --rounds 3 --concurrency 4

Runs are interleaved (on, off, off, on, ...) on the same Redis database (DB 5 by default, or
$FAIRQUE_BENCH_REDIS_URL; flushed before each run -- never another database), and the medians of the
rounds are compared. The worker runs in burst mode in this process: the figure is the wall time from
its start until it has acknowledged the last task; CPU time per task of this process and of redis-
server is shown too (the server's only means something with --private-server: a shared server also
works for other clients). Target: metrics on at most 10% slower. Results are printed and written to
benchmarks/results/metrics.json; the exit code is 0 whatever they are.
"""

from __future__ import annotations

import argparse
import logging
import time

from benchmarks.harness import RESULTS_DIR, default_url
from benchmarks.harness.procs import Processes, install_signal_handlers
from benchmarks.harness.report import out, run_meta, table, verdict, write_json
from benchmarks.harness.server import connect, flush_db, redact, require_redis, start_private_redis
from benchmarks.harness.stats import median
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.handler import TaskHandler
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import Worker


class NoOp(TaskHandler):
    """Payload tasks that do nothing: only the queue's own work is measured."""

    def _process_task(self, task: Task) -> bool:
        return True


def config(url: str, metrics: bool, concurrency: int) -> FairQueueConfig:
    return FairQueueConfig.from_dict({
        "redis": {"url": url},
        "workers": [{"id": "bench", "assigned_users": ["*"], "max_concurrent_tasks": concurrency,
                     "poll_interval_seconds": 0.05, "heartbeat_interval_seconds": 1.0}],
        "queue": {"metrics": metrics, "lease_timeout_seconds": 60},
    })


def server_cpu(url: str) -> float:
    info = connect(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def one_run(url: str, metrics: bool, n: int, tenants: int, concurrency: int) -> dict[str, float]:
    """One burst drain of ``n`` tasks spread over ``tenants`` tenants: tasks per second (wall),
    and microseconds of CPU per task in this process (the worker) and in redis-server."""
    flush_db(url)
    cfg = config(url, metrics, concurrency)
    queue = TaskQueue(cfg)
    batch = [Task.create(user_id=f"tenant:{i % tenants}", payload={"i": i}) for i in range(n)]
    for start in range(0, n, 1000):
        queue.push_batch(batch[start:start + 1000])
    worker = Worker(cfg, NoOp(), worker_id="bench", queue=TaskQueue(cfg, worker_id="bench"), burst=True,
                    install_signal_handlers=False)
    cpu0, server0, began = time.process_time(), server_cpu(url), time.perf_counter()
    worker.start()
    elapsed = time.perf_counter() - began
    cpu, server = time.process_time() - cpu0, server_cpu(url) - server0
    done = int(connect(url).hget(queue.keys.stats, "completed") or 0)
    if done != n or worker.processed != n:
        raise RuntimeError(f"drained {done} of {n} tasks (worker processed {worker.processed})")
    has_hist = bool(connect(url).exists(f"{queue.keys.base}:m:~all"))
    if has_hist != metrics:
        raise RuntimeError(f"metrics={metrics} but histograms present={has_hist}")
    queue.close()
    return {"rate": n / elapsed, "client_cpu_us": cpu / n * 1e6, "server_cpu_us": server / n * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", "--redis-url", default=default_url(5), help="Redis URL with its DB (default DB 5)")
    parser.add_argument("-n", "--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1, help="worker slots (default 1)")
    parser.add_argument("--private-server", action="store_true",
                        help="run against a throw-away redis-server of our own (DB 5 there), so that its CPU "
                             "time is the benchmark's alone")
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 3 rounds (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds = 1000, 3
    install_signal_handlers()
    with Processes() as procs:
        url = start_private_redis(procs, db=5) if args.private_server else args.url
        problem = require_redis(url)
        if problem:
            out(f"no Redis at {redact(url)}: {problem}")
            return 0
        return run(url, args)


def run(url: str, args: argparse.Namespace) -> int:
    logging.getLogger("fairque_django").setLevel(logging.WARNING)
    one_run(url, True, min(args.tasks, 300), args.tenants, args.concurrency)  # warm-up
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        for metrics in order:
            runs[metrics].append(one_run(url, metrics, args.tasks, args.tenants, args.concurrency))
        out(f"round {r + 1}/{args.rounds}: on {runs[True][-1]['rate']:,.0f}/s, off {runs[False][-1]['rate']:,.0f}/s")
    flush_db(url)

    def med(metrics: bool, key: str) -> float:
        return median(x[key] for x in runs[metrics])

    on, off = med(True, "rate"), med(False, "rate")
    slower = (off / on - 1.0) * 100.0
    paired = median(a["rate"] / b["rate"] for a, b in zip(runs[True], runs[False], strict=True))
    out()
    rows = [["on" if m else "off", med(m, "rate"), min(x["rate"] for x in runs[m]), max(x["rate"] for x in runs[m]),
             med(m, "client_cpu_us"), med(m, "server_cpu_us")] for m in (True, False)]
    table(["queue.metrics", "median tasks/s", "min", "max", "worker CPU us/task", "redis CPU us/task"], rows,
          title=f"Single Worker draining {args.tasks:,} no-op tasks of {args.tenants} tenants "
                f"(concurrency {args.concurrency}), {args.rounds} interleaved rounds"
                + (" (private redis-server)" if args.private_server else " (shared redis-server: its CPU "
                   "includes other clients)"))
    out(f"ratio on/off of the medians: {on / off:.3f}; median of the per-round ratios: {paired:.3f}")
    cpu_on = med(True, "client_cpu_us") + med(True, "server_cpu_us")
    cpu_off = med(False, "client_cpu_us") + med(False, "server_cpu_us")
    out(f"CPU per task (worker + redis): on {cpu_on:.0f} us, off {cpu_off:.0f} us "
        f"({(cpu_on / cpu_off - 1) * 100:+.1f}%)")
    result = verdict("metrics overhead (time per task, on vs off)", slower, 10.0, "<=", "%")
    path = write_json(RESULTS_DIR / "metrics.json", {
        "meta": run_meta(url, tasks=args.tasks, rounds=args.rounds, tenants=args.tenants,
                         concurrency=args.concurrency, private_server=args.private_server),
        "runs": {"on": runs[True], "off": runs[False]},
        "median": {"on": on, "off": off}, "ratio_on_off": on / off, "paired_ratio_median": paired,
        "slower_percent": slower, "cpu_us_per_task": {"on": cpu_on, "off": cpu_off}, "verdict": result,
    })
    out(f"written to {path}")
    return 0
