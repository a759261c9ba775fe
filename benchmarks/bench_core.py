#!/usr/bin/env python
"""Core benchmark of fairque_django's TaskQueue against raw redis-py on the same Redis.

Every throughput figure is a ratio against a raw redis-py baseline measured in the same
process, against the same server, in the same run.  The machine is assumed to be noisy, so
baseline and fairque runs are interleaved -- in chunks (base, fq, fq, base, ...) where the
figure allows it -- each figure is repeated, and the median of the repetitions is reported.

    /work/venv/bin/python benchmarks/bench_core.py            # full run (~1 minute)
    /work/venv/bin/python benchmarks/bench_core.py --quick    # smoke run (a few seconds)
    /work/venv/bin/python benchmarks/bench_core.py --profile  # also cProfile push_batch / pop+ack

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
import cProfile
import datetime as _dt
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from fairque_django.core.config import FairQueueConfig  # noqa: E402
from fairque_django.core.connection import get_client, reset_clients  # noqa: E402
from fairque_django.core.models import Task  # noqa: E402
from fairque_django.core.queue import TaskQueue  # noqa: E402

PREFIX = "fqbench"
RAW = "rawbench"  # prefix of the baseline's keys
WORKER = "bench"
DEFAULT_URL = "redis://127.0.0.1:6379/14"
RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
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
TARGETS = {"push_batch": 0.40, "push": 0.70, "pop_complete": 0.40, "scale": 1.5}


# --------------------------------------------------------------------------- helpers

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def make_config(url: str, users: list[str], prefix: str = PREFIX) -> FairQueueConfig:
    return FairQueueConfig.from_dict(
        {"redis": {"url": url}, "workers": [{"id": WORKER, "assigned_users": users}],
         "queue": {"stats_prefix": prefix}},
        worker_id=WORKER,
    )


def make_tasks(n: int, users: list[str], tag: str = "") -> list[Task]:
    """n small function tasks spread round-robin over users (created outside any timing)."""
    return [
        Task.create(users[i % len(users)], payload={"n": i, "tag": tag or "bench"},
                    func_name="bench.noop", args=[i], kwargs={"size": "small"})
        for i in range(n)
    ]


class Server:
    """Snapshots of server-wide INFO sections, and the benchmark DB's own keys."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def commandstats(self) -> dict[str, dict[str, float]]:
        raw = self.client.info("commandstats")
        out: dict[str, dict[str, float]] = {}
        for key, value in raw.items():
            name = key.removeprefix("cmdstat_")
            if isinstance(value, dict):
                out[name] = {"calls": float(value.get("calls", 0)), "usec": float(value.get("usec", 0))}
        return out

    def cpu_seconds(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def keys_memory(self) -> tuple[int, int]:
        """(sum of MEMORY USAGE over every key of the benchmark DB, number of keys)."""
        total = count = 0
        batch: list[bytes] = []

        def flush() -> int:
            pipe = self.client.pipeline(transaction=False)
            for k in batch:
                pipe.memory_usage(k, samples=0)
            return sum(int(x or 0) for x in pipe.execute())

        for key in self.client.scan_iter(count=1000):
            batch.append(key)
            count += 1
            if len(batch) >= 1000:
                total += flush()
                batch.clear()
        if batch:
            total += flush()
        return total, count


def stats_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
                ) -> dict[str, dict[str, float]]:
    out = {}
    for name, v in after.items():
        b = before.get(name, {"calls": 0.0, "usec": 0.0})
        calls, usec = v["calls"] - b["calls"], v["usec"] - b["usec"]
        if calls > 0 and not name.startswith(("info", "memory", "scan", "flushdb", "dbsize", "ping")):
            out[name] = {"calls": calls, "usec": usec}
    return out


SCRIPT_CMDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "script|load", "script|exists")


def server_exec_usec(delta: dict[str, dict[str, float]], scripted: bool) -> float:
    """Time the server spent executing the client's top-level commands.

    A script's usec already contains the commands it runs (which commandstats also counts
    under their own names), so for scripted runs only the script commands are summed.
    """
    if scripted:
        return sum(v["usec"] for k, v in delta.items() if k in SCRIPT_CMDS)
    return sum(v["usec"] for v in delta.values())


@contextmanager
def counting_round_trips(client: redis.Redis) -> Iterator[list[int]]:
    """Count client round trips made through ``client``: every round trip, a plain command, a
    pipeline or fairque's hand-packed one, sends its commands with one ``send_packed_command``
    on a connection of the client's pool (fairque's held one included)."""
    counter = [0]
    pool = client.connection_pool
    cls = redis.connection.AbstractConnection
    original = cls.send_packed_command

    def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
        if conn in pool._in_use_connections:  # type: ignore[attr-defined]
            counter[0] += 1
        return original(conn, *args, **kwargs)

    cls.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        cls.send_packed_command = original  # type: ignore[method-assign]


class Measured:
    """A timed run (or the sum of its chunks): wall time, client CPU, server exec time, server CPU."""

    __slots__ = ("client_cpu", "commands", "round_trips", "server_cpu", "server_usec", "wall")

    def __init__(self) -> None:
        self.wall = self.client_cpu = self.server_usec = self.server_cpu = 0.0
        self.commands: dict[str, dict[str, float]] = {}
        self.round_trips = 0

    def add(self, other: Measured) -> None:
        self.wall += other.wall
        self.client_cpu += other.client_cpu
        self.server_usec += other.server_usec
        self.server_cpu += other.server_cpu
        self.round_trips += other.round_trips
        for name, v in other.commands.items():
            mine = self.commands.setdefault(name, {"calls": 0.0, "usec": 0.0})
            mine["calls"] += v["calls"]
            mine["usec"] += v["usec"]

    def calls(self, *names: str) -> float:
        if not names:
            return sum(v["calls"] for v in self.commands.values())
        return sum(self.commands.get(n, {"calls": 0.0})["calls"] for n in names)


class Bench:
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
        with counting_round_trips(count) if count is not None else nullcontext([0]) as trips:
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
        tasks = make_tasks(n, users)
        bodies = [t.to_json() for t in tasks]
        keys = [f"{RAW}:q:{t.user_id}" for t in tasks]
        raw = self.raw

        def baseline() -> None:
            pipe = raw.pipeline(transaction=False)
            for k, b in zip(keys, bodies, strict=True):
                pipe.lpush(k, b)
            pipe.execute()

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
        tasks = make_tasks(n, users)
        bodies = [t.to_json() for t in tasks]
        keys = [f"{RAW}:q:{t.user_id}" for t in tasks]
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

    # ---- 4. tenant scale ----------------------------------------------------------------
    def bench_scale(self) -> None:
        """pop+complete latency vs the number of users assigned to the worker.

        Every case (mode x size) gets its own key prefix, so all cases are queued side by side
        and their pops run in small chunks, round-robin over the cases (rotating the order each
        round): a noisy moment hits every case alike.  One untimed warm-up round runs first.
        """
        n = self.sizes["scale_pops"]
        scales: list[int] = self.sizes["scales"]
        chunk = 50
        rounds = n // chunk
        cases: dict[tuple[str, int], tuple[FairQueueConfig, list[str]]] = {}
        t0 = perf()
        for size in scales:
            users = [f"tenant:{i}" for i in range(size)]
            n_ready = max(1, size // 100)  # 1% of the users (at least one) have ready work
            ready = users[:: size // n_ready][:n_ready]  # spread over the id range
            for mode, assigned in (("exact", users), ("pattern", ["tenant:*"])):
                cases[(mode, size)] = (make_config(self.url, assigned, f"{PREFIX}-{mode}-{size}"), ready)
        build_s = perf() - t0
        keys = list(cases)
        lat: dict[tuple[str, int], list[list[float]]] = {k: [] for k in keys}
        push_us: dict[tuple[str, int], list[float]] = {k: [] for k in keys}
        for rep in range(self.reps):
            self.flush()
            queues = {}
            for key in keys:
                config, ready = cases[key]
                q = queues[key] = TaskQueue(config)
                tasks = make_tasks(n + chunk, ready, tag="scale")  # + one warm-up chunk
                t1 = perf()
                assert q.push_batch(tasks)["pushed"] == n + chunk
                push_us[key].append((perf() - t1) / (n + chunk) * 1e6)
            times: dict[tuple[str, int], list[float]] = {k: [] for k in keys}
            gc.collect()
            for r in range(rounds + 1):
                shift = (r + rep) % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    q = queues[key]
                    pop, complete = q.pop, q.complete
                    sink = times[key]
                    for _ in range(chunk):
                        t1 = perf()
                        complete(pop())
                        sink.append(perf() - t1)
                if r == 0:  # warm-up round: connections, plans, first-touch of the keys
                    times = {k: [] for k in keys}
            for key in keys:
                assert queues[key].pop() is None
                lat[key].append(times[key])
        self.flush()
        ref_size = scales[0]
        self.results["scale_meta"] = {"config_build_s": build_s, "pops_per_case": rounds * chunk,
                                      "chunk": chunk, "ratio_of": "mean"}
        for mode in ("exact", "pattern"):
            ref = lat[(mode, ref_size)]
            ref_mean = median([statistics.fmean(r) for r in ref]) * 1e6
            ref_p50 = median([statistics.median(r) for r in ref]) * 1e6
            for size in scales:
                runs = lat[(mode, size)]
                mean = median([statistics.fmean(r) for r in runs]) * 1e6
                p50 = median([statistics.median(r) for r in runs]) * 1e6
                p99 = median([sorted(r)[int(len(r) * 0.99)] for r in runs]) * 1e6
                ratio, ratio50 = mean / ref_mean, p50 / ref_p50
                ok = ratio <= TARGETS["scale"]
                ready_n = len(cases[(mode, size)][1])
                push = median(push_us[(mode, size)])
                label = f"pop+complete latency, {mode:7} assignment, {size:>7,} users ({ready_n:,} ready)"
                if size == ref_size:
                    self.out(f"{label}: mean {mean:.1f} us, p50 {p50:.1f} us, p99 {p99:.1f} us "
                             f"(reference) | push_batch {push:.1f} us/task")
                else:
                    self.out(f"{label}: fairque {mean:.1f} us, baseline({ref_size} users) {ref_mean:.1f} us, "
                             f"ratio {ratio:.2f}x (target <= {TARGETS['scale']}x) {'PASS' if ok else 'MISS'}"
                             f" | p50 {p50:.1f} vs {ref_p50:.1f} us ({ratio50:.2f}x), p99 {p99:.1f} us"
                             f" | push_batch {push:.1f} us/task")
                self.results["scale"].append({
                    "mode": mode, "assigned_users": size, "ready_users": ready_n, "pops": rounds * chunk,
                    "mean_us": mean, "p50_us": p50, "p99_us": p99,
                    "ref_mean_us": ref_mean, "ref_p50_us": ref_p50,
                    "ratio_mean": ratio, "ratio_p50": ratio50,
                    "target": TARGETS["scale"], "target_op": "<=", "pass": ok,
                    "push_batch_us_per_task": push,
                    "runs_mean_us": [statistics.fmean(r) * 1e6 for r in runs],
                })

    # ---- 5. lifecycle cost and memory -----------------------------------------------------
    def bench_lifecycle(self, q: TaskQueue, users: list[str]) -> None:
        """push, pop and ack of one task at a time, in chunks of ``step`` tasks; server-wide
        counters are judged per chunk, and only chunks no other client disturbed are used."""
        n = self.sizes["lifecycle"]
        step = min(250, n)
        tasks = make_tasks(n, users)
        raw = self.raw
        qkey = f"{RAW}:queue"
        prefix = f"{RAW}:t:".encode()

        def fq_chunk(lo: int) -> Callable[[], None]:
            def run() -> None:
                for t in tasks[lo:lo + step]:
                    q.push(t)
                for _ in range(step):
                    q.complete(q.pop())
            return run

        def base_chunk(lo: int) -> Callable[[], None]:
            # a minimal queue: push = SET body + LPUSH id (one pipelined round trip),
            # pop = RPOP, ack = DEL body
            def run() -> None:
                for t in tasks[lo:lo + step]:
                    pipe = raw.pipeline(transaction=False)
                    pipe.set(f"{RAW}:t:{t.task_id}", t.to_json())
                    pipe.lpush(qkey, t.task_id)
                    pipe.execute()
                for _ in range(step):
                    raw.delete(prefix + raw.rpop(qkey))
            return run

        starts = range(0, n - step + 1, step)
        n_run = len(starts) * step
        fq, base, pairs = self.interleave([base_chunk(s) for s in starts], [fq_chunk(s) for s in starts],
                                          count_fq=q.client)
        # a chunk is clean when the server saw exactly our top-level commands: fairque makes
        # only EVALSHA round trips (3 per task); the baseline runs exactly 4 plain commands per task
        fq_clean = [f for f, _ in pairs if f.calls("evalsha", "eval") == f.round_trips]
        base_clean = [b for _, b in pairs if b.calls() == 4 * step]
        result: dict[str, Any] = {"tasks": n_run, "chunk": step,
                                  "baseline_model": "SET+LPUSH (one pipelined round trip), RPOP, DEL"}

        def summary(chunks: list[Measured], runs: list[Measured], scripted: bool) -> dict[str, Any]:
            use = chunks or [min(runs, key=lambda m: m.calls())]
            size = step if chunks else n_run
            cmds = median([m.calls() / size for m in use])
            typical = min(use, key=lambda m: m.calls())  # the least disturbed chunk
            return {
                "clean_chunks": len(chunks),
                "commands_per_task": cmds,
                "commands": {k: round(v["calls"] / size, 3) for k, v in
                             sorted(typical.commands.items(), key=lambda kv: -kv[1]["calls"])},
                "server_cpu_us_per_task": median([m.server_cpu / size * 1e6 for m in use]),
                "server_exec_us_per_task": median([server_exec_usec(m.commands, scripted) / size
                                                   for m in use]),
                "wall_us_per_task": median([m.wall / n_run * 1e6 for m in runs]),
                "client_cpu_us_per_task": median([m.client_cpu / n_run * 1e6 for m in runs]),
            }

        f, b = summary(fq_clean, fq, True), summary(base_clean, base, False)
        f["round_trips_per_task"] = min(m.round_trips for m in fq) / n_run
        b["round_trips_per_task"] = 3.0  # by construction: 1 pipeline + RPOP + DEL
        result.update(fairque=f, baseline=b)
        self.results["lifecycle"] = result
        total = len(pairs)
        self.out(f"lifecycle (push+pop+ack, unbatched, {n_run:,} tasks; server counters from "
                 f"{f['clean_chunks']}/{total} fairque and {b['clean_chunks']}/{total} baseline chunks "
                 f"of {step} that no other client disturbed)")
        self.out(f"lifecycle Redis commands per task: fairque {f['commands_per_task']:.1f}, baseline "
                 f"{b['commands_per_task']:.1f}, "
                 f"ratio {f['commands_per_task'] / b['commands_per_task']:.1f}x")
        self.out(f"lifecycle client round trips per task: fairque {f['round_trips_per_task']:.2f}, "
                 f"baseline {b['round_trips_per_task']:.2f}")
        self.out(f"lifecycle Redis CPU per task: fairque {f['server_cpu_us_per_task']:.1f} us, "
                 f"baseline {b['server_cpu_us_per_task']:.1f} us, ratio "
                 f"{f['server_cpu_us_per_task'] / max(b['server_cpu_us_per_task'], 1e-9):.1f}x")
        self.out(f"lifecycle Redis exec time per task (commandstats usec): fairque "
                 f"{f['server_exec_us_per_task']:.1f} us, baseline {b['server_exec_us_per_task']:.1f} us")
        self.out(f"lifecycle wall per task: fairque {f['wall_us_per_task']:.1f} us (client CPU "
                 f"{f['client_cpu_us_per_task']:.1f} us), baseline {b['wall_us_per_task']:.1f} us "
                 f"(client CPU {b['client_cpu_us_per_task']:.1f} us)")
        top = ", ".join(f"{k} {v:g}" for k, v in f["commands"].items())
        self.out(f"    fairque commands per task: {top}")

    def bench_memory(self, q: TaskQueue, users: list[str]) -> None:
        n = self.sizes["memory"]
        tasks = make_tasks(n, users)
        bodies = [t.to_json() for t in tasks]
        keys = [f"{RAW}:q:{t.user_id}" for t in tasks]
        raw = self.raw
        res: dict[str, list[tuple[int, int, int]]] = {"fq": [], "base": []}

        def fill_base() -> None:
            pipe = raw.pipeline(transaction=False)
            for k, b in zip(keys, bodies, strict=True):
                pipe.lpush(k, b)
            pipe.execute()

        def fill_fq() -> None:
            assert q.push_batch(tasks)["pushed"] == n

        for rep in range(self.reps):
            for which in (("base", "fq") if rep % 2 == 0 else ("fq", "base")):
                self.flush()
                gc.collect()
                time.sleep(0.05)
                m0 = self.server.used_memory()
                (fill_base if which == "base" else fill_fq)()
                m1 = self.server.used_memory()
                usage, nkeys = self.server.keys_memory()
                res[which].append((m1 - m0, usage, nkeys))
        self.flush()
        out = {}
        for which in ("fq", "base"):
            out[which] = {
                "used_memory_per_task": median([r[0] / n for r in res[which]]),
                "memory_usage_per_task": median([r[1] / n for r in res[which]]),
                "keys": res[which][0][2],
            }
        body_len = statistics.fmean(len(b.encode()) for b in bodies)
        self.results["memory"] = {"tasks": n, "body_bytes": body_len, "fairque": out["fq"],
                                  "baseline": out["base"], "baseline_model": "LPUSH body into per-user lists"}
        f, b = out["fq"], out["base"]
        self.out(f"memory per queued task ({n:,} queued, body {body_len:.0f} B): fairque "
                 f"{f['used_memory_per_task']:.0f} B, baseline {b['used_memory_per_task']:.0f} B, ratio "
                 f"{f['used_memory_per_task'] / b['used_memory_per_task']:.1f}x (INFO used_memory delta)")
        self.out(f"    MEMORY USAGE sum of the DB's keys: fairque {f['memory_usage_per_task']:.0f} B/task "
                 f"({f['keys']:,} keys), baseline {b['memory_usage_per_task']:.0f} B/task "
                 f"({b['keys']:,} keys)")

    # ---- profiling ----------------------------------------------------------------------
    def profile(self, q: TaskQueue, users: list[str]) -> None:
        """cProfile one push_batch, a loop of single pushes and the pop+complete loop; print
        where the client's time goes, by area, and the top functions by own time."""
        n_batch, n_single, n_pop = self.sizes["batch"], self.sizes["single"], self.sizes["pop"]

        def single(ts: list[Task]) -> None:
            for t in ts:
                q.push(t)

        def pops(_: Any) -> None:
            for _ in range(n_pop):
                q.complete(q.pop())

        for label, setup, run in (
            (f"push_batch x{n_batch:,}", lambda: make_tasks(n_batch, users), q.push_batch),
            (f"push x{n_single:,}", lambda: make_tasks(n_single, users), single),
            (f"pop+complete x{n_pop:,}", lambda: q.push_batch(make_tasks(n_pop, users)), pops),
        ):
            self.flush()
            arg = setup()
            gc.collect()
            prof = cProfile.Profile()
            s0 = self.server.commandstats()
            t0 = perf()
            prof.enable()
            run(arg)
            prof.disable()
            wall = perf() - t0
            redis_exec = server_exec_usec(stats_delta(s0, self.server.commandstats()), True) / 1e6
            st = pstats.Stats(prof)
            areas: dict[str, float] = {}
            for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
                areas[profile_area(file, func)] = areas.get(profile_area(file, func), 0.0) + tt
            total = st.total_tt  # type: ignore[attr-defined]
            self.out(f"\n--- cProfile {label}: {wall:.3f} s under the profiler; Redis executed the "
                     f"scripts for {redis_exec:.3f} s of it (commandstats)")
            self.out("    own time by area: " + ", ".join(
                f"{k} {v:.3f} s ({v / total:.0%})" for k, v in sorted(areas.items(), key=lambda kv: -kv[1])))
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
            text = buf.getvalue()
            start = text.find("   ncalls")
            for line in text[start:].rstrip().splitlines():
                for long, short in ((str(ROOT) + "/", ""), (os.path.dirname(redis.__path__[0]) + "/", ""),
                                    (os.path.dirname(os.__file__) + "/", "stdlib/")):
                    line = line.replace(long, short)
                self.out("    " + line)
            self.results.setdefault("profile", {})[label] = {
                "wall_s": wall, "profiled_s": total, "redis_exec_s": redis_exec, "areas_s": areas}
        self.flush()


def profile_area(file: str, func: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if file == "~":
        if any(s in func for s in ("recv", "send", "poll", "select", "_socket")):
            return "socket I/O (incl. waiting for Redis)"
        return "C builtins"
    if "fairque_django" in file:
        return "fairque"
    if "/redis/" in file:
        return "redis-py"
    if "/json/" in file:
        return "json"
    if file.endswith(("uuid.py", "random.py")):
        return "uuid/random"
    return "other Python"


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
    args = ap.parse_args(argv)
    started = perf()

    from fairque_django.embedded_redis import _started, ensure_redis, start_server

    if args.private_server:
        proc, port, _ = start_server()
        _started.append(proc)  # stopped at exit by embedded_redis
        db = (urlparse(args.redis_url).path or "/0").lstrip("/") or "0"
        url = f"redis://127.0.0.1:{port}/{db}"
    else:
        url = ensure_redis(args.redis_url)
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
        bench.bench_push_batch(q, users)
        bench.bench_push(q, users)
        bench.bench_pop_complete(q, users)
        bench.bench_client_options(q)
        bench.out("")
        bench.bench_scale()
        bench.out("")
        bench.bench_lifecycle(q, users)
        bench.bench_memory(q, users)
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
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report, never fail the build
        import traceback

        traceback.print_exc()
        print(f"benchmark aborted: {exc}", file=sys.stderr)
    sys.exit(0)
