"""The core benchmark's cost figures (see :mod:`.core`): pop cost against the number of tenants
assigned, Redis commands / round trips / CPU per task lifecycle, memory per queued task, and the
optional cProfile of the client paths."""

from __future__ import annotations

import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from benchmarks.harness.profiling import areas, print_top
from benchmarks.harness.server import server_exec_usec, stats_delta
from benchmarks.harness.stats import median
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue

perf = time.perf_counter
PREFIX = "fqbench"
RAW = "rawbench"  # prefix of the baseline's keys
WORKER = "bench"
TARGETS = {"push_batch": 0.40, "push": 0.70, "pop_complete": 0.40, "scale": 1.5}


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


def per_user_lists(n: int, users: list[str]) -> tuple[list[Task], list[str], list[str]]:
    """n tasks, their JSON bodies and the raw baseline's per-user list keys."""
    tasks = make_tasks(n, users)
    return tasks, [t.to_json() for t in tasks], [f"{RAW}:q:{t.user_id}" for t in tasks]


def pipelined_lpush(raw: redis.Redis, keys: list[str], bodies: list[str]) -> None:
    """The raw baseline of a batch: one pipeline of LPUSHes."""
    pipe = raw.pipeline(transaction=False)
    for k, b in zip(keys, bodies, strict=True):
        pipe.lpush(k, b)
    pipe.execute()


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


class CostFigures:
    """Figures 4 and 5 and the profile; mixed into :class:`.core.Bench`."""

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
        self.bench_worker_lifecycle(q, users)
        for tenants in (10, len(users)):
            self.bench_batched_lifecycle(q, users[:tenants])

    def bench_worker_lifecycle(self, q: TaskQueue, users: list[str]) -> None:
        """The default worker's path (issue 17): push the chunk's tasks in one ``push_batch`` (as
        ``enqueue_many`` does), then drain with
        ``complete_and_pop`` (ack and next lease in one round trip, run time given), with the
        worker's metrics buffer flushed at the end of each chunk; commands and Redis CPU per
        task, metrics on. A checkout without the buffer (before issue 17) writes metrics per ack,
        as its worker does."""
        def drain(wq: TaskQueue) -> None:
            task = wq.pop()
            while task is not None:
                task = wq.complete_and_pop(task, duration=0.0005)[1]

        result = self.lifecycle_chunks(q, users, "worker", drain)
        if result is None:
            return
        self.results["lifecycle"]["worker_path"] = result
        self.out(f"lifecycle, the worker's path (push_batch, complete_and_pop, {result['mode']}; {result['chunks']} "
                 f"chunks of {result['tasks_per_chunk']}): Redis commands per task {result['commands_per_task']:.1f} "
                 f"(median; server-wide counters: use --private-server), round trips "
                 f"{result['round_trips_per_task']:.2f}, Redis CPU {result['server_cpu_us_per_task']:.1f} us, "
                 f"exec {result['server_exec_us_per_task']:.1f} us")
        top = ", ".join(f"{k} {v:g}" for k, v in result["commands"].items())
        self.out(f"    worker path commands per task: {top}")

    def bench_batched_lifecycle(self, q: TaskQueue, users: list[str], batch: int = 16) -> None:
        """A worker leasing and acknowledging in batches (issue 17): push the chunk's tasks in one
        ``push_batch``, lease ``batch`` with ``pop_many``, then ``complete_and_pop_many`` (the batch's
        acks, run times given, and the next ``batch`` leases in one round trip) until nothing is
        left, the metrics buffer flushed at the end of each chunk; commands and Redis CPU per task,
        metrics on, over ``len(users)`` tenants (the fewer, the more tasks of one tenant a call
        has: per-tenant writes are once per call)."""
        def drain(wq: TaskQueue) -> None:
            got = wq.pop_many(batch)
            while got:
                got = wq.complete_and_pop_many([(t, 0.0005, None) for t in got], batch)[1]

        result = self.lifecycle_chunks(q, users, "batched", drain)
        if result is None:
            return
        result = {"batch": batch, "tenants": len(users), **result}
        self.results["lifecycle"].setdefault("batched_path", []).append(result)
        self.out(f"lifecycle, batched (push_batch, pop_many / complete_and_pop_many of {batch}, {result['mode']}, "
                 f"{len(users)} tenants; {result['chunks']} chunks of {result['tasks_per_chunk']}): Redis commands "
                 f"per task {result['commands_per_task']:.1f}, round trips {result['round_trips_per_task']:.2f}, "
                 f"Redis CPU {result['server_cpu_us_per_task']:.1f} us, "
                 f"exec {result['server_exec_us_per_task']:.1f} us")
        top = ", ".join(f"{k} {v:g}" for k, v in result["commands"].items())
        self.out(f"    batched commands per task: {top}")

    def lifecycle_chunks(self, q: TaskQueue, users: list[str], tag: str,
                         drain: Callable[[TaskQueue], None]) -> dict[str, Any] | None:
        """Chunks of 250 tasks: ``push_batch``, then ``drain`` on a queue with the worker's metrics
        buffer (flushed at the end of each chunk), measured per chunk; the per-task figures (None
        without server counters)."""
        n = self.sizes["lifecycle"]
        step = min(250, n)
        tasks = make_tasks(n, users, tag=tag)
        wq = TaskQueue(q.config, q.client)
        try:
            from fairque_django.core.scripts.buffered import MetricsBuffer
            wq.metrics_buffer = MetricsBuffer()
            mode = "metrics buffered"
        except ImportError:  # a checkout before issue 17: metrics per ack, as its worker does
            mode = "metrics per ack"

        def chunk(lo: int) -> Callable[[], None]:
            def run() -> None:
                wq.push_batch(tasks[lo:lo + step])
                drain(wq)
                if getattr(wq, "metrics_buffer", None) is not None:
                    wq.flush_metrics()
            return run

        runs: list[Measured] = []
        for _ in range(self.reps):
            self.flush()
            gc.collect()
            for lo in range(0, n - step + 1, step):
                runs.append(self.timed(chunk(lo), scripted=True, count=wq.client))
        self.flush()
        if not self.server_stats:
            return None
        typical = min(runs, key=lambda m: m.calls())
        return {
            "tasks_per_chunk": step, "chunks": len(runs), "commands_per_task": median([m.calls() / step for m in runs]),
            "commands": {k: round(v["calls"] / step, 3) for k, v in
                         sorted(typical.commands.items(), key=lambda kv: -kv[1]["calls"])},
            "server_cpu_us_per_task": median([m.server_cpu / step * 1e6 for m in runs]),
            "server_exec_us_per_task": median([server_exec_usec(m.commands, True) / step for m in runs]),
            "round_trips_per_task": median([m.round_trips / step for m in runs]), "mode": mode,
        }

    def bench_memory(self, q: TaskQueue, users: list[str]) -> None:
        n = self.sizes["memory"]
        tasks, bodies, keys = per_user_lists(n, users)
        raw = self.raw
        res: dict[str, list[tuple[int, int, int]]] = {"fq": [], "base": []}

        def fill_base() -> None:
            pipelined_lpush(raw, keys, bodies)

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
            by_area = areas(st)
            total = st.total_tt  # type: ignore[attr-defined]
            self.out(f"\n--- cProfile {label}: {wall:.3f} s under the profiler; Redis executed the "
                     f"scripts for {redis_exec:.3f} s of it (commandstats)")
            self.out("    own time by area: " + ", ".join(
                f"{k} {v:.3f} s ({v / total:.0%})" for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])))
            print_top(prof, self.out)
            self.results.setdefault("profile", {})[label] = {
                "wall_s": wall, "profiled_s": total, "redis_exec_s": redis_exec, "areas_s": by_area}
        self.flush()
