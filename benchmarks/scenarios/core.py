"""Core benchmark of fairque_django's TaskQueue against raw redis-py on the same Redis.

(About 420 lines: figures 1-3 share the :class:`Bench` plumbing that interleaves and measures
them; figures 4-5 and the profile are in :mod:`.core_cost`.)

Every throughput figure is a ratio against a raw redis-py baseline measured in the same
process, against the same server, in the same run.  The machine is assumed to be noisy, so
baseline and fairque runs are interleaved -- in chunks (base, fq, fq, base, ...) where the
figure allows it -- each figure is repeated, and the median of the repetitions is reported.

    python3 benchmarks/bench_core.py            # full run (~1 minute)
    python3 benchmarks/bench_core.py --quick    # smoke run (a few seconds)
    python3 benchmarks/bench_core.py --profile  # also cProfile push_batch / pop+ack

Figures
  1. push_batch of 10,000 tasks (100 users)  vs  one pipeline of 10,000 raw LPUSH of the bodies
  2. push, one task per call (2,000 calls)     vs  one raw LPUSH round trip per task
  3. pop() + complete() over 5,000 tasks       vs  unpipelined raw RPOP + DEL pairs
  4. pop+complete latency when the worker is assigned 10 / 1,000 / 10,000 / 100,000 users
     (1% of them with ready work), exact lists and a "tenant:*" pattern; ratio to 10 users
  5. per task lifecycle (push + pop + ack, unbatched): Redis commands (INFO commandstats,
     commands run inside scripts included), client round trips, Redis server CPU; and memory
     per queued task with 10,000 tasks queued (INFO memory and MEMORY USAGE of the keys)

The database (DB 14 by default) is flushed before and after the run, and between runs; the
script refuses to flush a database that holds keys it did not write (see --force-flush).
Server-wide statistics (commandstats, cpu, used_memory) also see other clients of the same
server; counts are taken as the minimum over repetitions (other clients only add), times
and memory as the median.  Use --private-server for a throw-away server of our own.

Results are printed and written as JSON to benchmarks/results/core.json.  The exit code is 0
whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import redis

from benchmarks.harness import RESULTS_DIR, default_url
from benchmarks.harness.procs import Processes
from benchmarks.harness.server import (
    Server,
    bench_redis,
    count_round_trips,
    server_exec_usec,
    stats_delta,
)
from benchmarks.harness.stats import median
from benchmarks.scenarios.core_cost import (
    PREFIX,
    RAW,
    TARGETS,
    CostFigures,
    Measured,
    make_config,
    make_tasks,
    per_user_lists,
    pipelined_lpush,
)
from fairque_django.core.connection import get_client, reset_clients
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue

DEFAULT_URL = default_url(14)
RESULTS = RESULTS_DIR / "core.json"
perf = time.perf_counter
cpu = time.process_time


# --------------------------------------------------------------------------- sizes

FULL = {
    "reps": 3, "batch": 10_000, "batch_users": 100, "single": 2_000, "pop": 5_000,
    "scale_pops": 2_000, "scales": [10, 1_000, 10_000, 100_000], "lifecycle": 5_000,
    "memory": 10_000,
}
QUICK = {
    "reps": 1, "batch": 2_000, "batch_users": 100, "single": 300, "pop": 1_000,
    "scale_pops": 400, "scales": [10, 1_000, 100_000], "lifecycle": 500,
    "memory": 2_000,
}
class Bench(CostFigures):
    def __init__(self, url: str, sizes: dict[str, Any], *, server_stats: bool = True) -> None:
        self.url = url
        self.sizes = sizes
        self.reps: int = sizes["reps"]
        self.raw = redis.Redis.from_url(url)
        self.server = Server(self.raw)
        self.server_stats = server_stats
        self.results: dict[str, Any] = {"figures": [], "scale": [], "lifecycle": {}, "memory": {}}

    # ---- plumbing -----------------------------------------------------------------------
    def flush(self) -> None:
        self.raw.flushdb()

    def out(self, line: str = "") -> None:
        print(line, flush=True)

    def timed(self, fn: Callable[[], Any], *, scripted: bool, count: redis.Redis | None = None,
              ) -> Measured:
        """Run fn once, measuring wall time, client CPU and (server-wide) server time and CPU.
        With ``count``, the round trips made through that client are counted too."""
        m = Measured()
        if self.server_stats:
            s0, c0 = self.server.commandstats(), self.server.cpu_seconds()
        with count_round_trips(count) if count is not None else nullcontext([0]) as trips:
            t0, p0 = perf(), cpu()
            fn()
            m.wall, m.client_cpu = perf() - t0, cpu() - p0
        m.round_trips = trips[0]
        if self.server_stats:
            c1, s1 = self.server.cpu_seconds(), self.server.commandstats()
            m.commands = stats_delta(s0, s1)
            m.server_usec = server_exec_usec(m.commands, scripted)
            m.server_cpu = c1 - c0
        return m

    def interleave(self, base_chunks: list[Callable[[], Any]], fq_chunks: list[Callable[[], Any]], *,
                   setup: Callable[[], Any] | None = None, count_fq: redis.Redis | None = None,
                   count_base: redis.Redis | None = None,
                   ) -> tuple[list[Measured], list[Measured], list[tuple[Measured, Measured]]]:
        """Repeat ``reps`` times: flush, setup, then run the baseline's and fairque's chunks
        alternately (base, fq, fq, base, ...), so that a noisy moment hits both sides.

        Returns per-repetition sums for fairque and the baseline, and every (fq, base) chunk pair.
        """
        fq_runs: list[Measured] = []
        base_runs: list[Measured] = []
        pairs: list[tuple[Measured, Measured]] = []
        for rep in range(self.reps):
            self.flush()
            if setup is not None:
                setup()
            gc.collect()
            fq_sum, base_sum = Measured(), Measured()
            for i, (b, f) in enumerate(zip(base_chunks, fq_chunks, strict=True)):
                if (i + rep) % 2 == 0:
                    mb = self.timed(b, scripted=False, count=count_base)
                    mf = self.timed(f, scripted=True, count=count_fq)
                else:
                    mf = self.timed(f, scripted=True, count=count_fq)
                    mb = self.timed(b, scripted=False, count=count_base)
                fq_sum.add(mf)
                base_sum.add(mb)
                pairs.append((mf, mb))
            fq_runs.append(fq_sum)
            base_runs.append(base_sum)
        self.flush()
        return fq_runs, base_runs, pairs

    def rtt_usec(self, n: int = 500) -> float:
        """Median PING round trip of the raw client, in microseconds."""
        times = []
        for _ in range(n):
            t0 = perf()
            self.raw.ping()
            times.append(perf() - t0)
        return median(times) * 1e6

    # ---- reporting ----------------------------------------------------------------------
    def figure(self, key: str, name: str, n: int, fq: list[Measured], base: list[Measured],
               target: float, extra: dict[str, Any] | None = None) -> None:
        fq_rate = median([n / m.wall for m in fq])
        base_rate = median([n / m.wall for m in base])
        ratio = fq_rate / base_rate
        ok = ratio >= target
        self.out(f"{name}: fairque {fq_rate:,.0f} tasks/s, baseline {base_rate:,.0f} tasks/s, "
                 f"ratio {ratio:.2f} (target >= {target:.2f}) {'PASS' if ok else 'MISS'}")

        def per_op(ms: list[Measured]) -> dict[str, Any]:
            return {
                "wall_us": median([m.wall / n * 1e6 for m in ms]),
                "client_cpu_us": median([m.client_cpu / n * 1e6 for m in ms]),
                # other clients of the server only add: the minimum is the least polluted
                "server_exec_us": min(m.server_usec / n for m in ms) if self.server_stats else None,
                "server_cpu_us": median([m.server_cpu / n * 1e6 for m in ms]) if self.server_stats else None,
            }

        f_op, b_op = per_op(fq), per_op(base)
        for label, op in (("fairque ", f_op), ("baseline", b_op)):
            line = (f"    per task {label}: wall {op['wall_us']:6.1f} us"
                    f" | client CPU {op['client_cpu_us']:6.1f} us")
            if self.server_stats:
                line += (f" | Redis exec {op['server_exec_us']:6.1f} us (commandstats)"
                         f" | Redis CPU {op['server_cpu_us']:6.1f} us")
            self.out(line)
        self.results["figures"].append({
            "key": key, "name": name, "n": n, "unit": "tasks/s",
            "fairque": fq_rate, "baseline": base_rate, "ratio": ratio,
            "target": target, "target_op": ">=", "pass": ok,
            "fairque_runs": [n / m.wall for m in fq], "baseline_runs": [n / m.wall for m in base],
            "fairque_per_task": f_op, "baseline_per_task": b_op,
            **(extra or {}),
        })

    # ---- 1. push_batch ------------------------------------------------------------------
    def bench_push_batch(self, q: TaskQueue, users: list[str]) -> None:
        """One push_batch call vs one pipeline: a single chunk per side and repetition."""
        n = self.sizes["batch"]
        tasks, bodies, keys = per_user_lists(n, users)
        raw = self.raw

        def baseline() -> None:
            pipelined_lpush(raw, keys, bodies)

        def fairque() -> None:
            r = q.push_batch(tasks)
            assert r["pushed"] == n, {k: v for k, v in r.items() if k != "task_ids"}

        def run(which: str) -> Measured:
            self.flush()
            gc.collect()
            return self.timed(baseline if which == "base" else fairque, scripted=which == "fq")

        fq: list[Measured] = []
        base: list[Measured] = []
        for rep in range(self.reps):
            for which in (("base", "fq") if rep % 2 == 0 else ("fq", "base")):
                (base if which == "base" else fq).append(run(which))
        self.flush()
        self.figure("push_batch", f"push_batch {n:,} tasks ({len(users)} users)", n, fq, base,
                    TARGETS["push_batch"], {"batch_size": q.config.queue.batch_size,
                                            "fairque_evalsha_per_run": min(m.calls("evalsha") for m in fq)})

    # ---- 2. single push -----------------------------------------------------------------
    def bench_push(self, q: TaskQueue, users: list[str]) -> None:
        n = self.sizes["single"]
        tasks, bodies, keys = per_user_lists(n, users)
        raw = self.raw
        step = max(1, n // 10)

        def base_chunk(lo: int) -> Callable[[], None]:
            def run() -> None:
                lpush = raw.lpush
                for k, b in zip(keys[lo:lo + step], bodies[lo:lo + step], strict=True):
                    lpush(k, b)
            return run

        def fq_chunk(lo: int) -> Callable[[], None]:
            def run() -> None:
                push = q.push
                for t in tasks[lo:lo + step]:
                    push(t)
            return run

        starts = range(0, n, step)
        fq, base, _ = self.interleave([base_chunk(s) for s in starts], [fq_chunk(s) for s in starts])
        self.figure("push", f"push x{n:,} (one task per call)", n, fq, base, TARGETS["push"])

    # ---- 3. pop + complete --------------------------------------------------------------
    def bench_pop_complete(self, q: TaskQueue, users: list[str]) -> None:
        n = self.sizes["pop"]
        tasks = make_tasks(n, users)
        raw = self.raw
        qkey = f"{RAW}:queue"
        prefix = f"{RAW}:t:".encode()
        step = max(1, n // 10)

        def setup() -> None:
            pipe = raw.pipeline(transaction=False)
            for t in tasks:
                pipe.set(f"{RAW}:t:{t.task_id}", t.to_json())
                pipe.lpush(qkey, t.task_id)
            pipe.execute()
            assert q.push_batch(tasks)["pushed"] == n

        def baseline() -> None:
            rpop, delete = raw.rpop, raw.delete
            for _ in range(step):
                delete(prefix + rpop(qkey))

        def fairque() -> None:
            pop, complete = q.pop, q.complete
            for _ in range(step):
                complete(pop())

        chunks = n // step
        fq, base, _ = self.interleave([baseline] * chunks, [fairque] * chunks, setup=setup)
        self.figure("pop_complete", f"pop+complete x{chunks * step:,} (one client)", chunks * step, fq,
                    base, TARGETS["pop_complete"])

    # ---- info: the client fairque builds vs a plain redis-py client ----------------------
    def bench_client_options(self, q: TaskQueue) -> None:
        """The same raw LPUSH round trips through fairque's shared client (retry, socket timeouts,
        health checks: connection.build_client) and through a plain redis-py client."""
        n = self.sizes["single"]
        step = max(1, n // 10)
        key = f"{RAW}:client"
        plain, shared = self.raw, q.client

        def chunk(client: redis.Redis) -> Callable[[], None]:
            def run() -> None:
                lpush = client.lpush
                for _ in range(step):
                    lpush(key, "x")
            return run

        chunks = n // step
        fq, base, _ = self.interleave([chunk(plain)] * chunks, [chunk(shared)] * chunks)
        total = chunks * step
        f_rate, b_rate = median([total / m.wall for m in fq]), median([total / m.wall for m in base])
        f_cpu = median([m.client_cpu / total * 1e6 for m in fq])
        b_cpu = median([m.client_cpu / total * 1e6 for m in base])
        self.out(f"(info) raw LPUSH x{total:,} through fairque's shared client: {f_rate:,.0f}/s "
                 f"(client CPU {f_cpu:.1f} us), plain redis-py client {b_rate:,.0f}/s "
                 f"(client CPU {b_cpu:.1f} us), ratio {f_rate / b_rate:.2f}")
        self.results["client_options"] = {"n": total, "shared_client_per_s": f_rate,
                                          "plain_client_per_s": b_rate,
                                          "ratio": f_rate / b_rate, "shared_client_cpu_us": f_cpu,
                                          "plain_client_cpu_us": b_cpu}


def safe_to_flush(client: redis.Redis) -> tuple[bool, list[str]]:
    """True when the DB is empty or holds only keys this benchmark writes."""
    foreign = []
    for key in client.scan_iter(count=500):
        k = key.decode("utf-8", "replace")
        if not (k.startswith("{" + PREFIX) or k.startswith(RAW + ":")):
            foreign.append(k)
            if len(foreign) >= 5:
                break
    return not foreign, foreign


SECTIONS = ("push_batch", "push", "pop_complete", "client_options", "scale", "lifecycle", "memory")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=os.environ.get("FAIRQUE_BENCH_REDIS_URL", DEFAULT_URL),
                    help=f"Redis to use; its DB is flushed before and after (default {DEFAULT_URL})")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition (smoke run)")
    ap.add_argument("--profile", action="store_true", help="also cProfile push_batch and the pop+ack loop")
    ap.add_argument("--private-server", action="store_true",
                    help="start a throw-away redis-server (no other clients skew server-wide stats)")
    ap.add_argument("--no-server-stats", action="store_true",
                    help="skip INFO commandstats/cpu snapshots around timed runs")
    ap.add_argument("--force-flush", action="store_true",
                    help="flush the DB even if it holds keys this benchmark did not write")
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    ap.add_argument("--only", default=None,
                    help=f"comma list of sections to run (default all: {', '.join(SECTIONS)})")
    args = ap.parse_args(argv)
    only = set(SECTIONS if args.only is None else args.only.split(","))
    if only - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(only - set(SECTIONS)))}")
    started = perf()

    procs = Processes()
    url = bench_redis(procs, args.redis_url, args.private_server)
    if url is None:
        return 0
    sizes = QUICK if args.quick else FULL
    bench = Bench(url, sizes, server_stats=not args.no_server_stats)
    ok, foreign = safe_to_flush(bench.raw)
    if not ok and not args.force_flush:
        print(f"refusing to flush {url}: it holds keys this benchmark did not write, e.g. {foreign}; "
              "pick another DB with --redis-url or pass --force-flush", file=sys.stderr)
        return 0
    bench.flush()

    info = bench.raw.info("server")
    meta = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full", "sizes": sizes, "redis_url": url,
        "redis_version": info.get("redis_version"), "redis_py": redis.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "connected_clients_at_start": bench.raw.info("clients")["connected_clients"],
    }
    bench.results["meta"] = meta
    bench.out(f"fairque core benchmark ({meta['mode']}): Redis {meta['redis_version']} at {url}, "
              f"redis-py {meta['redis_py']}, Python {meta['python']}, {meta['cpus']} CPUs, "
              f"{sizes['reps']} interleaved repetition(s), medians")

    users = [f"user:{i}" for i in range(sizes["batch_users"])]
    config = make_config(url, users)
    reset_clients()
    q = TaskQueue(config, get_client(config.redis))
    # warm up: connections, script cache, first-call paths
    q.complete(q.pop()) if q.push(Task.create(users[0]))["success"] else None
    bench.raw.ping()
    meta["ping_rtt_us"] = bench.rtt_usec()
    bench.out(f"PING round trip (raw client): {meta['ping_rtt_us']:.1f} us")
    bench.flush()

    try:
        bench.out("")
        sections: dict[str, Callable[[], None]] = {
            "push_batch": lambda: bench.bench_push_batch(q, users), "push": lambda: bench.bench_push(q, users),
            "pop_complete": lambda: bench.bench_pop_complete(q, users),
            "client_options": lambda: bench.bench_client_options(q), "scale": bench.bench_scale,
            "lifecycle": lambda: bench.bench_lifecycle(q, users), "memory": lambda: bench.bench_memory(q, users),
        }
        for name in SECTIONS:
            if name in only:
                sections[name]()
        if args.profile:
            bench.profile(q, users)
    finally:
        bench.flush()
    meta["connected_clients_at_end"] = bench.raw.info("clients")["connected_clients"]
    meta["elapsed_s"] = perf() - started
    bench.out(f"\ntotal {meta['elapsed_s']:.1f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(bench.results, indent=2, default=str) + "\n", "utf-8")
    print(f"results written to {args.output}")
    procs.close()
    return 0


def cli() -> None:
    """The command line: report, never fail the build."""
    try:
        main()
    except Exception as exc:  # report, never fail the build
        import traceback

        traceback.print_exc()
        print(f"benchmark aborted: {exc}", file=sys.stderr)
