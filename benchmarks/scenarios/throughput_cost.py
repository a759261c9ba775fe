"""Throughput benchmark, scenario D (see :mod:`.throughput`): fairque's pop cost against the number
of tenants assigned, the Redis cost of one task's lifecycle for every contender, and memory per
queued task; and the cProfile of a fairque worker's drain (``--profile``, scenario A)."""

from __future__ import annotations

import gc
import pstats
import time
from typing import Any

from benchmarks.contenders.fairque_app import Fairque
from benchmarks.harness import RESULTS_DIR, ROOT, report
from benchmarks.harness import procs as hp
from benchmarks.harness import server as srv
from benchmarks.harness import stats as st
from benchmarks.harness.plots import DRAIN_VS_HUEY
from benchmarks.harness.profiling import areas, print_top
from benchmarks.harness.report import out
from benchmarks.scenarios.core_cost import make_config, make_tasks
from fairque_django.core.queue import TaskQueue

perf = time.perf_counter
TARGETS = {
    "drain_vs_huey": DRAIN_VS_HUEY,        # A: fairque tasks/s >= 1.5x Huey's
    "latency_p50_vs_huey": 1.0,  # B: fairque p50 <= Huey's
    "latency_p99_vs_huey": 2.0,  # B: fairque p99 < 2x Huey's
    "batch_vs_rq": 5.0,          # C: push_batch >= 5x RQ enqueue_many
    "batch_vs_raw": 0.40,        # C: push_batch >= 40% of pipelined raw LPUSH
    "scale": 1.5,                # D: pop cost at N tenants <= 1.5x the cost at 10 tenants
}
STARTUP_TIMEOUT = 30.0

class CostScenario:
    """Scenario D; mixed into :class:`.throughput.Bench`."""

    # ---- D. tenant scale, lifecycle cost, memory ------------------------------------------
    def scenario_d(self) -> None:
        t_start = perf()
        out("== D. tenant scale, per-task Redis cost and memory")
        self.results["D"] = {}
        self.scale()
        out()
        self.lifecycle()
        out()
        self.memory()
        self.results["D"]["elapsed_s"] = perf() - t_start
        out(f"(D took {perf() - t_start:.0f} s)")

    def scale(self) -> None:
        """fairque pop cost (the worker's path: complete_and_pop, one round trip per task) with 10 to
        100,000 tenants assigned to the worker, 1% of them ready; all cases queued side by side and
        served in chunks round-robin, so noise hits every case alike."""
        cfg = self.sizes["D"]
        scales, n, chunk = cfg["scales"], cfg["pops"], cfg["chunk"]
        rounds = n // chunk
        reps = cfg["reps"]
        cases: dict[tuple[str, int], Any] = {}
        build: dict[tuple[str, int], float] = {}
        for size in scales:
            users = [f"tenant:{i}" for i in range(size)]
            n_ready = max(1, size // 100)
            ready = users[:: size // n_ready][:n_ready]
            for mode, assigned in (("list", users), ("pattern", ["tenant:*"])):
                t0 = perf()
                config = make_config(self.url, assigned, f"fqscale-{mode}-{size}")
                build[(mode, size)] = perf() - t0
                cases[(mode, size)] = (config, ready)
        keys = list(cases)
        lat: dict[Any, list[float]] = {k: [] for k in keys}
        acc: dict[Any, dict[str, Any]] = {k: {"tasks": 0, "cpu": 0.0, "trips": 0, "usec": 0.0}
                                         for k in keys}
        for rep in range(reps):
            self.flush()
            queues, current = {}, {}
            for key in keys:
                config, ready = cases[key]
                q = queues[key] = TaskQueue(config)
                total = n + 2 * chunk + 1  # + a warm-up chunk and the MONITOR chunk
                assert q.push_batch(make_tasks(total, ready, tag="scale"))["pushed"] == total
                current[key] = q.pop()
            gc.collect()
            for r in range(rounds + 1):
                for key in self.rotated(keys, r + rep):
                    q = queues[key]
                    cap = q.complete_and_pop
                    task = current[key]
                    sink = []
                    s0, c0 = self.server.commandstats(), self.server.cpu_seconds()
                    with srv.count_round_trips() as trips:
                        for _ in range(chunk):
                            t1 = perf()
                            _code, task, _due = cap(task)
                            sink.append(perf() - t1)
                    c1, s1 = self.server.cpu_seconds(), self.server.commandstats()
                    current[key] = task
                    if r == 0:
                        continue  # warm-up round
                    lat[key] += sink
                    a = acc[key]
                    d = srv.stats_delta(s0, s1)
                    a["tasks"] += chunk
                    a["trips"] += trips[0]
                    a["cpu"] += c1 - c0
                    a["usec"] += sum(v["usec"] for k, v in d.items() if k in ("evalsha", "eval"))
            if rep == 0:
                # commands per task, exactly (this DB only, script-internal included): one extra,
                # untimed chunk per case under MONITOR
                for key in keys:
                    q = queues[key]
                    task = current[key]
                    with srv.MonitorCounter(self.url) as mon:
                        for _ in range(chunk):
                            _code, task, _due = q.complete_and_pop(task)
                    current[key] = task
                    acc[key]["monitor"] = {k: v / chunk for k, v in mon.counts.items()}
                    acc[key]["monitor_lua"] = sum(mon.lua_counts.values()) / chunk
        self.flush()
        rows, res = [], []
        ref: dict[str, float] = {}
        for key in keys:
            mode, size = key
            a = acc[key]
            counted = a["monitor"]
            cmds = sum(counted.values())
            mean = sum(lat[key]) / len(lat[key]) * 1e6
            p50 = st.percentile(lat[key], 50) * 1e6
            p99 = st.percentile(lat[key], 99) * 1e6
            if size == scales[0]:
                ref[mode] = mean
            ratio = mean / ref[mode]
            row = {"mode": mode, "assigned": size, "ready": len(cases[key][1]), "pops": a["tasks"],
                   "mean_us": mean, "p50_us": p50, "p99_us": p99, "ratio": ratio,
                   "cmds_per_task": cmds, "lua_cmds_per_task": a["monitor_lua"],
                   "commands": dict(sorted(counted.items(), key=lambda kv: -kv[1])),
                   "round_trips_per_task": a["trips"] / a["tasks"],
                   "server_cpu_us_per_task": a["cpu"] / a["tasks"] * 1e6,
                   "script_exec_us_per_task": a["usec"] / a["tasks"], "config_build_s": build[key]}
            res.append(row)
            rows.append([f"{mode} {size:,} tenants", row["ready"], mean, p50, p99, ratio, cmds,
                         row["round_trips_per_task"], row["server_cpu_us_per_task"], row["script_exec_us_per_task"],
                         build[key]])
        self.tables["D1"] = report.table(
            ["assignment", "ready", "mean us", "p50 us", "p99 us", "x 10 tenants", "Redis cmds/task",
             "round trips/task", "Redis CPU us/task", "script exec us/task", "config build s"], rows,
            title=f"D1. fairque ack+pop (complete_and_pop, the worker's path) vs tenants assigned to the worker "
                  f"({n:,} pops per case x {reps}; cmds/task: MONITOR, this DB, Lua-internal included; "
                  f"Redis CPU and script exec time: INFO cpu / commandstats"
                  f"{'' if self.private else ', server-wide on a shared server (upper bounds)'})")
        self.results["D"]["scale"] = res
        worst: dict[str, float] = {}
        for row in res:
            if row["assigned"] != scales[0]:
                m = row["mode"]
                worst[m] = max(worst.get(m, 0.0), row["ratio"])
        for m, ratio in worst.items():
            self.verdict(f"D pop cost at up to {scales[-1]:,} tenants / 10 tenants ({m})", ratio,
                         TARGETS["scale"], "<=", "x")

    def lifecycle(self) -> None:
        """Enqueue one task at a time and let the system's worker process run it. Redis commands per
        task are counted exactly for this DB with MONITOR (script-internal commands included); CPU
        per task from INFO cpu (server-wide) and /proc (the worker process)."""
        cfg = self.sizes["D"]
        n, warm, reps = cfg["lifecycle"], 20, cfg["reps"]
        keys = ["fairque-c1", "raw", "huey", "rq", "celery"]
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for rep in range(reps):
            for key in self.rotated(keys, rep):
                s = self.system(key)
                self.flush()
                proc = self.start_worker(s, {"BENCH_TOTAL": str(n + warm)})
                try:
                    for i in range(warm):
                        s.one("noop", i)
                    if not hp.wait_until(lambda p=proc: self.counter() >= warm or not p.alive(), STARTUP_TIMEOUT):
                        runs[key].append({"ok": False, "error": proc.tail(5)})
                        continue
                    time.sleep(0.3)
                    # CPU: a run without MONITOR (it costs the server time per command relayed)
                    c0, w0, t0 = self.server.cpu_seconds(), proc.cpu_seconds(), perf()
                    with srv.count_round_trips() as rt:
                        for i in range(n):
                            s.one("noop", warm + i)
                    ok, _ = self.wait_done(n + warm, proc, 60.0, interval=0.005)
                    wall = perf() - t0
                    c1, w1 = self.server.cpu_seconds(), proc.cpu_seconds()
                    # commands: the same again under MONITOR (exact counts for this DB)
                    with srv.MonitorCounter(self.url) as mon:
                        for i in range(n):
                            s.one("noop", warm + n + i)
                        ok2, polls = self.wait_done(n * 2 + warm, proc, 60.0, interval=0.005)
                    own = {"incrby": n, "get": polls}  # the task's INCR, the benchmark's polling
                    cmds = {k: v - own.get(k, 0) for k, v in mon.counts.items()}
                    cmds = {k: c for k, c in cmds.items() if c > 0}
                    runs[key].append({"ok": ok and ok2, "cmds": cmds, "lua": dict(mon.lua_counts),
                                      "total": sum(cmds.values()) / n,
                                      "top_level": (sum(cmds.values()) - sum(mon.lua_counts.values())) / n,
                                      "cpu_us": (c1 - c0) / n * 1e6, "worker_cpu_us": (w1 - w0) / n * 1e6,
                                      "wall_s": wall, "producer_round_trips": rt[0] / n})
                finally:
                    self.stop_worker(s, proc)
        rows: list[list[Any]] = []
        res: dict[str, dict[str, Any]] = {}
        for key in keys:
            good = [r for r in runs[key] if r.get("ok")]
            if not good:
                res[key] = {"error": [r.get("error") for r in runs[key]]}
                continue
            best = min(good, key=lambda r: r["total"])
            top = {k: round(v / n, 2) for k, v in sorted(best["cmds"].items(), key=lambda kv: -kv[1])}
            res[key] = {"label": self.system(key).label, "cmds_per_task": best["total"],
                        "top_level_cmds_per_task": best["top_level"],
                        "lua_cmds_per_task": best["total"] - best["top_level"], "commands": top,
                        "server_cpu_us_per_task": min(r["cpu_us"] for r in good),
                        "server_cpu_us_runs": [r["cpu_us"] for r in good],
                        "worker_cpu_us_per_task": st.median([r["worker_cpu_us"] for r in good]),
                        "producer_round_trips_per_task": good[0]["producer_round_trips"],
                        "tasks_per_s_unbatched": st.median([n / r["wall_s"] for r in good])}
            rows.append([self.system(key).label, best["total"], best["top_level"],
                         res[key]["server_cpu_us_per_task"], res[key]["worker_cpu_us_per_task"],
                         res[key]["producer_round_trips_per_task"],
                         ", ".join(f"{k} {v:g}" for k, v in list(top.items())[:7])])
        self.tables["D2"] = report.table(
            ["contender", "Redis cmds/task", "of them top-level", "Redis CPU us/task", "worker CPU us/task",
             "producer round trips/task", "top commands per task"], rows,
            title=f"D2. lifecycle: enqueue one task + the worker runs it, {n} tasks x {reps}. Commands: MONITOR, "
                  "this DB only, Lua-internal included, the task's INCR and the benchmark's polling excluded. "
                  f"Redis CPU: INFO cpu, lowest of the repetitions"
                  f"{'' if self.private else ' (server-wide on a shared server: an upper bound)'}")
        self.results["D"]["lifecycle"] = res

    def memory(self) -> None:
        cfg = self.sizes["D"]
        m = cfg["memory"]
        keys = ["fairque-c1", "raw", "huey", "rq", "celery"]
        rows, res = [], {}
        for key in keys:
            s = self.system(key)
            self.flush()
            gc.collect()
            time.sleep(0.05)
            m0 = self.server.used_memory()
            s.batch(m)
            m1 = self.server.used_memory()
            usage, nkeys = self.server.keys_memory()
            res[key] = {"label": s.label, "tasks": m, "used_memory_per_task": (m1 - m0) / m,
                        "memory_usage_per_task": usage / m, "keys": nkeys}
            rows.append([s.label, m, (m1 - m0) / m if self.private else None, usage / m, nkeys])
        self.flush()
        self.tables["D3"] = report.table(["contender", "queued", "used_memory B/task", "MEMORY USAGE B/task", "keys"],
                                     rows, title="D3. Redis memory per queued task (MEMORY USAGE summed over this "
                                                 "DB's keys; INFO used_memory delta only on a private server)")
        self.results["D"]["memory"] = res

    def profile_drain(self) -> None:
        """cProfile the fairque worker's slot thread during a drain; commandstats of the same drain."""
        n = self.sizes["A"]["profile_n"]
        s = self.system("fairque-c1")
        assert isinstance(s, Fairque)
        path = RESULTS_DIR / "fq_worker_drain.prof"
        self.flush()
        s.batch(n)
        self.r.config_get("slowlog*")
        slow0 = self.r.slowlog_len()
        slow_ids = {e["id"] for e in self.r.slowlog_get(128)}
        s0, c0 = self.server.commandstats(), self.server.cpu_seconds()
        proc = self.procs.launch("fq-profile", s.worker_cmd(burst=True, profile=str(path)), self.url,  # as the drain
                                 env={"BENCH_TOTAL": str(n)})
        try:
            with srv.MonitorCounter(self.url) as mon:
                ok, polls = self.wait_done(n, proc, STARTUP_TIMEOUT + n / 100.0)
            s1, c1 = self.server.commandstats(), self.server.cpu_seconds()
        finally:
            self.procs.stop(proc, timeout=10.0)
        out()
        if not ok or not path.exists():
            out(f"profile run failed: {proc.tail(10)}")
            return
        first, last = (float(x or 0) for x in self.r.mget("bench:first", "bench:last"))
        rate = (n - 1) / (last - first)
        delta = srv.stats_delta(s0, s1)
        script_usec = sum(v["usec"] for k, v in delta.items() if k in ("evalsha", "eval"))
        own = {"incrby": n, "get": polls, "set": 2}
        counts = {k: v - own.get(k, 0) for k, v in mon.counts.items()}
        counts = {k: v for k, v in counts.items() if v > 0}
        st = pstats.Stats(str(path))
        total = st.total_tt  # type: ignore[attr-defined]
        by_area = areas(st)
        out(f"--- cProfile of the fairque worker's slot thread, drain of {n:,} tasks: {rate:,.0f} tasks/s "
            f"under the profiler; slot thread CPU+wait {total:.2f} s = {total / n * 1e6:.0f} us/task")
        out("    own time by area (per task): " + ", ".join(
            f"{k} {v / n * 1e6:.0f} us ({v / total:.0%})" for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])))
        out(f"    Redis (server-wide{'' if self.private else ', shared server: upper bounds'}, MONITOR running): "
            f"script execution (EVALSHA usec) {script_usec / n:.1f} us/task, server CPU "
            f"{(c1 - c0) / n * 1e6:.1f} us/task")
        out(f"    commands per task (MONITOR, this DB, Lua-internal included; the task's INCR excluded): "
            f"{sum(counts.values()) / n:.1f}: " + ", ".join(
                f"{k} {v / n:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:16]))
        print_top(str(path), out, limit=22)
        out("    -- cumulative, fairque code --")
        print_top(str(path), out, sort="cumulative", limit=16, restrict=r"fairque_django|contenders")
        new_slow = [e for e in self.r.slowlog_get(128) if e["id"] not in slow_ids]
        out(f"    SLOWLOG: {len(new_slow)} new entries during the run (threshold "
            f"{self.r.config_get('slowlog-log-slower-than').get('slowlog-log-slower-than')} us; "
            f"length before {slow0})" + "".join(
                f"\n      {e['duration']} us {e['command'][:80]!r}" for e in new_slow[:8]))
        self.results["A_profile"] = {
            "n": n, "rate_under_profiler": rate, "slot_thread_s": total, "areas_s": by_area,
            "script_usec_per_task": script_usec / n, "server_cpu_us_per_task": (c1 - c0) / n * 1e6,
            "commands_per_task": {k: v / n for k, v in counts.items()},
            "slowlog_new": [{"us": e["duration"], "cmd": str(e["command"])[:200]} for e in new_slow[:20]],
            "profile_file": str(path.relative_to(ROOT)),
        }
