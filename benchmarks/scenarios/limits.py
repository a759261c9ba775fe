"""Tenant limits: ``python3 benchmarks/bench_limits.py [--quick] [--private-server]``.

1. Pop cost with limited tenants: a worker's pop + ack with 10 tenants and with 100,000 tenants
   (every ``t:*`` tenant capped at 1 by the settings and given runtime limits; 1 % of them ready,
   a tenth of those held: half paused, half at their cap with a task leased elsewhere). Each case
   has its own key prefix, pops interleaved in chunks, median of the repetitions; the figure is
   the ratio (issue 15: at most 1.5x). Also the pop of 10 tenants without any limit, for the
   overhead of the limit bookkeeping.
2. Rate accuracy: one tenant limited to 50/s with 1,000 tasks queued, an in-process worker of 8
   slots running no-op tasks: tasks started in the 10 s after the first (target 500 +- 2 %).
3. Waiting costs no polling: Redis commands per second (INFO total_commands_processed, exact with
   ``--private-server``) while a tenant with work queued waits for its next token (rate 6/m, its
   first token used), against the same worker on an idle queue (target at most 2x).
4. A heavy tenant (500 ms tasks) capped at 2 of 8 slots next to 20 light tenants (5 ms tasks),
   with and without the cap, on ``runfairworker --concurrency 8``: light p99 wait (target at most
   5 % of the run without the cap), slot utilisation while light work is ready (target at least
   95 %), heavy throughput; the plot docs/images/limits_caps.png. The code and the exact
   definitions: benchmarks/scenarios/limits_caps.py.

``--only caps`` (or ``pop,rate,waiting,caps``) runs some of them.

The database (default DB 12, or $FAIRQUE_BENCH_REDIS_URL) is flushed before and after. The exit code
is 0 whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
from typing import Any

import redis

from benchmarks.harness import default_url
from benchmarks.harness.procs import Processes, install_signal_handlers
from benchmarks.harness.server import bench_redis
from benchmarks.harness.stats import median
from benchmarks.scenarios.limits_caps import bench_caps
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task
from fairque_django.core.worker import Worker

perf = time.perf_counter
RATIO_TARGET = 1.5
PARTS = ("pop", "rate", "waiting", "caps")
STARTS: list[float] = []


@task()
def noop() -> None:
    STARTS.append(time.time())


def config(url: str, prefix: str, limits: dict[str, Any] | None, slots: int = 8,
           poll: float = 1.0) -> FairQueueConfig:
    return FairQueueConfig.from_dict({
        "redis": {"url": url},
        "workers": [{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": slots,
                     "poll_interval_seconds": poll},
                    {"id": "w2", "assigned_users": [], "steal_targets": ["*"]}],
        "queue": {"stats_prefix": prefix, "tenant_limits": limits or {}, "metrics": False}})


def fill(raw: redis.Redis, q: TaskQueue, tenants: int, limited: bool, pops: int) -> None:
    """1 % of ``tenants`` ready (at least 10), with enough tasks for ``pops``; a tenth of those held (half paused,
    half at their cap, a task leased by w2); every tenant with runtime limits when ``limited``."""
    ready = max(10, tenants // 100)
    per = max(3, (pops + 500) // ready + 1)  # tasks per ready tenant: more than the pops need
    if limited:
        for lo in range(0, tenants, 5000):
            spec = {f"t:{i:06d}": "1\t\t\t" for i in range(lo, min(tenants, lo + 5000))}
            raw.hset(q.keys.tenant_limits, mapping=spec)
    for lo in range(0, ready, 200):
        q.push_batch([Task.create(f"t:{i:06d}", payload={})
                      for i in range(lo, min(ready, lo + 200)) for _ in range(per)])
    if limited and tenants > 10:
        held = ready // 10
        for i in range(held // 2):
            q.pause_tenant(f"t:{i:06d}")
        capped = {f"t:{i:06d}" for i in range(held // 2, held)}
        got = q.pop_many(ready, "w2")  # one task of every tenant that is not paused: all at their cap
        q.release([t for t in got if t.user_id not in capped], count=False)
        assert sum(1 for t in got if t.user_id in capped) == len(capped)


def bench_pop(url: str, raw: redis.Redis, pops: int, reps: int) -> dict[str, Any]:
    cases = [("10 tenants, no limits", 10, False), ("10 tenants, capped", 10, True),
             ("100,000 tenants, capped", 100_000, True)]
    chunk = 50
    lat: dict[str, list[float]] = {c[0]: [] for c in cases}
    for rep in range(reps):
        raw.flushdb()
        queues = {}
        for name, tenants, limited in cases:
            q = queues[name] = TaskQueue(config(url, f"fqlim-{tenants}-{int(limited)}",
                                                {"t:*": {"concurrency": 1}} if limited else None))
            assert q.pop("w1") is None  # limits mirrored, steal copies built
            fill(raw, q, tenants, limited, pops)
        times: dict[str, list[float]] = {c[0]: [] for c in cases}
        gc.collect()
        names = [c[0] for c in cases]
        for r in range(pops // chunk + 1):
            order = names[(r + rep) % len(names):] + names[:(r + rep) % len(names)]
            for name in order:
                q = queues[name]
                sink = times[name]
                for _ in range(chunk):
                    t0 = perf()
                    got = q.pop("w1")
                    sink.append(perf() - t0)
                    assert got is not None
                    q.complete(got)
            if r == 0:
                times = {c[0]: [] for c in cases}
        for name in names:
            lat[name].append(statistics.fmean(times[name]))
    raw.flushdb()
    out: dict[str, Any] = {name: {"mean_us": median(v) * 1e6} for name, v in lat.items()}
    ref = out["10 tenants, capped"]["mean_us"]
    for name in out:
        out[name]["ratio_to_10_capped"] = out[name]["mean_us"] / ref
    big = out["100,000 tenants, capped"]["ratio_to_10_capped"]
    for name, row in out.items():
        print(f"pop + (untimed) ack, {name}: {row['mean_us']:.1f} us/pop", flush=True)
    print(f"pop with 100,000 limited tenants / 10: {big:.2f}x (target <= {RATIO_TARGET}x) "
          + ("PASS" if big <= RATIO_TARGET else "MISS"), flush=True)
    return out


def run_worker(cfg: FairQueueConfig) -> tuple[Worker, threading.Thread]:
    worker = Worker(cfg, worker_id="w1", install_signal_handlers=False)
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    return worker, thread


def total_commands(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_commands_processed"])


def bench_rate(url: str, raw: redis.Redis, seconds: float) -> dict[str, Any]:
    raw.flushdb()
    cfg = config(url, "fqlimrate", {"t:rated": {"rate": "50/s"}})
    q = TaskQueue(cfg)
    q.push_batch([noop.create_task(user_id="t:rated") for _ in range(int(seconds * 50 * 2))])
    STARTS.clear()
    worker, thread = run_worker(cfg)
    while not STARTS:
        time.sleep(0.01)
    c0, t0 = total_commands(raw), time.monotonic()
    time.sleep(seconds + 0.5)
    cmds = (total_commands(raw) - c0) / (time.monotonic() - t0)
    worker.stop()
    thread.join(30)
    first = STARTS[0]
    started = sum(1 for t in STARTS if first < t <= first + seconds)
    expected = seconds * 50
    err = (started - expected) / expected
    print(f"rate 50/s for {seconds:.0f} s: {started} tasks started after the first (expected {expected:.0f}, "
          f"{err * 100:+.1f} %, target +-2 %) " + ("PASS" if abs(err) <= 0.02 else "MISS")
          + f"; {cmds:.0f} Redis commands/s ({cmds / 50:.0f} per task)", flush=True)
    raw.flushdb()
    return {"started": started, "expected": expected, "error": err, "commands_per_second": cmds}


def bench_waiting(url: str, raw: redis.Redis, seconds: float) -> dict[str, Any]:
    def measure(prefix: str, waiting: bool) -> float:
        raw.flushdb()
        cfg = config(url, prefix, {"t:slow": {"rate": "6/m"}})
        q = TaskQueue(cfg)
        if waiting:
            q.push_batch([noop.create_task(user_id="t:slow") for _ in range(100)])
        STARTS.clear()
        worker, thread = run_worker(cfg)
        if waiting:
            while not STARTS:
                time.sleep(0.01)
        time.sleep(1.0)  # settled: the first token used, the next due in ~9 s
        c0, t0 = total_commands(raw), time.monotonic()
        time.sleep(seconds)
        rate = (total_commands(raw) - c0) / (time.monotonic() - t0)
        worker.stop()
        thread.join(30)
        if waiting:
            assert len(STARTS) == 1, STARTS
        return rate
    idle = measure("fqlimidle", False)
    waiting = measure("fqlimwait", True)
    ratio = waiting / idle
    print(f"Redis commands/s, 8 idle slots: idle queue {idle:.1f}, a tenant waiting for its next token "
          f"{waiting:.1f}: {ratio:.2f}x (target <= 2x) " + ("PASS" if ratio <= 2 else "MISS"), flush=True)
    raw.flushdb()
    return {"idle": idle, "waiting": waiting, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=default_url(12), help="Redis URL with its DB (flushed; default DB 12)")
    ap.add_argument("--quick", action="store_true", help="fewer pops and repetitions, shorter runs (smoke run)")
    ap.add_argument("--private-server", action="store_true", help="start a throw-away redis-server")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS} (default all)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the caps scenario (default 3; 1 quick)")
    ap.add_argument("--no-plots", action="store_true", help="do not write docs/images/limits_caps.png")
    ap.add_argument("--plots", action="store_true", help="write the plot in --quick mode too")
    args = ap.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    if set(only) - set(PARTS):
        ap.error(f"--only: choose from {PARTS}")
    procs = Processes()
    url = bench_redis(procs, args.redis_url, args.private_server)
    if url is None:
        return 0
    raw = redis.Redis.from_url(url)
    pops, reps = (500, 1) if args.quick else (2000, 3)
    install_signal_handlers()
    try:
        if "pop" in only:
            bench_pop(url, raw, pops, reps)
        if "rate" in only:
            bench_rate(url, raw, 3.0 if args.quick else 10.0)
        if "waiting" in only:
            bench_waiting(url, raw, 3.0 if args.quick else 7.0)
        if "caps" in only:
            plot = not args.no_plots and (args.plots or not args.quick)
            bench_caps(url, raw, procs, args.quick, args.rounds, plot=plot)
    finally:
        raw.flushdb()
        procs.close()
    return 0
