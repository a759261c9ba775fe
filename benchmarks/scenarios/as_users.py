"""fairque_django against its peers **as users run each system** (issue 17): no ``--burst`` for the
headline figures, each worker started as its documentation says, default settings.

    benchmarks/.venv-peers/bin/python benchmarks/bench_as_users.py           # 3 rounds, about 6 minutes
    benchmarks/.venv-peers/bin/python benchmarks/bench_as_users.py --quick   # 1 round, small sizes

Each round, for every contender in an order rotated every round:

1. enqueue N no-op tasks the way users do, with no worker running (fairque_django:
   ``fairque_django.enqueue_many`` through Django, 1,000 tasks per call, one tenant per call;
   Huey: calling the task; RQ: ``Queue.enqueue_many``, 1,000 per call; Celery: ``delay``; raw:
   pipelined LPUSH) -> enqueue tasks/s, Redis memory per queued task (INFO used_memory delta /
   N), Redis CPU and commands of the enqueue;
2. start ONE worker process the way users start it (``manage.py runfairworker <id> --concurrency
   1`` / ``8``, ``huey_consumer -w 1`` / ``-k thread -w 8``, ``rq worker``, ``celery worker -P solo
   -c 1`` / ``-P threads -c 8``) and let it drain the backlog -> drain tasks/s (first to last
   completion, stamped by the task bodies), Redis CPU and commands per task (INFO cpu and INFO
   commandstats deltas from the first completion to the last; commandstats counts the commands a
   script runs under their own names, besides the EVALSHA), worker CPU per task;
3. with the same worker now idle, enqueue tasks one at a time 5 ms apart -> enqueue -> start
   latency p50 / p99.

Redis CPU and commands per task *lifecycle* = the enqueue's per task + the drain's per task; the
task body's one INCR, the benchmark's polling and its INFO calls are not counted. The counters
are server-wide, so by default the benchmark starts a private redis-server of its own
(``--no-private-server`` uses ``--redis-url`` and warns). ``runfairworker --burst`` (leases
batches of short tasks; no production worker runs it) is measured too, on a separate line.
Figures are medians over the rounds; ratios are medians of same-round ratios. Results:
``benchmarks/results/as_users.json`` and ``docs/images/bench_as_users.png``. The exit code is
always 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.contenders.base import System
from benchmarks.contenders.raw_app import Raw
from benchmarks.harness import IMAGES, RESULTS_DIR, default_url, report
from benchmarks.harness import procs as hp
from benchmarks.harness import server as srv
from benchmarks.harness import stats as st
from benchmarks.harness.report import out
from benchmarks.scenarios.throughput import Bench
from benchmarks.scenarios.throughput_cost import STARTUP_TIMEOUT

DEFAULT_URL = default_url(9)
RESULTS = RESULTS_DIR / "as_users.json"
perf = time.perf_counter

# issue 17's figures
TARGETS = {
    "drain_c1_vs_huey": 1.5,      # runfairworker --concurrency 1 vs huey_consumer -w 1
    "drain_c8_vs_huey": 2.0,      # --concurrency 8 vs huey_consumer -k thread -w 8
    "cpu_vs_huey": 0.6,           # Redis CPU per task lifecycle
    "cmds_per_task": 12.0,        # Redis commands per lifecycle (metrics on)
    "bytes_per_task": 300.0,      # Redis memory per queued small task
    "bytes_vs_rq": 0.5,
    "enqueue_vs_rq": 5.0,         # Django enqueue_many vs RQ enqueue_many
    "enqueue_vs_raw": 0.4,        # vs pipelined raw LPUSH
    "latency_p50_vs_huey": 1.0,
    "latency_p99_vs_huey": 1.5,
}

# key -> (what builds it, how users start its worker); fairque's first, the burst line last
CONTENDERS = ["fqdj-c1", "fqdj-c8", "huey-w1", "huey-w8", "rq-worker", "celery-solo", "celery-t8", "raw",
              "fqdj-c1-burst"]
SHORT = {"huey-w1": "Huey -w 1", "huey-w8": "Huey -w 8", "rq-worker": "RQ", "celery-solo": "Celery solo",
         "celery-t8": "Celery threads 8", "raw": "raw redis-py"}
PEER_MODULES = {"huey-w1": "huey", "huey-w8": "huey", "rq-worker": "rq", "celery-solo": "celery",
                "celery-t8": "celery"}

FULL: dict[str, Any] = {
    "reps": 3, "n": 10_000, "memory_n": 10_000,
    # RQ's default worker forks a work horse per job (tens of ms here); Celery drains ~500/s
    "n_by": {"rq-worker": 200, "celery-solo": 2_000, "celery-t8": 2_000},
    "latency": {"n": 200, "spacing": 0.005, "warmup": 10, "n_by": {"rq-worker": 40}},
}
QUICK: dict[str, Any] = {
    "reps": 1, "n": 2_000, "memory_n": 2_000,
    "n_by": {"rq-worker": 40, "celery-solo": 500, "celery-t8": 500},
    "latency": {"n": 60, "spacing": 0.005, "warmup": 5, "n_by": {"rq-worker": 15}},
}


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class AsUsers(Bench):
    """The scenario; the plumbing (workers, flushing, polling, verdicts) is :class:`.throughput.Bench`'s."""

    def __init__(self, url: str, sizes: dict[str, Any], *, private: bool, quiet: bool, keys: list[str]) -> None:
        super().__init__(url, sizes, profile=False, private=private)
        self.quiet = quiet
        self.keys = keys

    def system(self, key: str) -> System:
        s = self._systems.get(key)
        if s is not None:
            return s
        if key.startswith("fqdj-c"):
            from benchmarks.contenders.fairque_app import FairqueDjango

            conc = int(key.removeprefix("fqdj-c").removesuffix("-burst"))
            s = FairqueDjango(self.url, conc, burst=key.endswith("-burst"), quiet=self.quiet)
        elif key.startswith("huey-w"):
            from benchmarks.contenders.huey_app import Huey

            s = Huey(self.url, int(key.removeprefix("huey-w")), as_users=True, quiet=self.quiet)
        elif key == "rq-worker":
            from benchmarks.contenders.rq_app import RQ

            s = RQ(self.url, as_users=True, quiet=self.quiet)
        elif key.startswith("celery-"):
            from benchmarks.contenders.celery_app import Celery

            s = Celery(self.url, 0 if key == "celery-solo" else int(key.removeprefix("celery-t")), as_users=True)
        elif key == "raw":
            s = Raw(self.url)
        else:
            raise KeyError(key)
        assert s.key == key, (s.key, key)
        self._systems[key] = s
        return s

    # ---- one contender, one round ------------------------------------------------------------
    def warm_up(self, keys: list[str]) -> None:
        """Untimed: every producer connects, imports and loads its scripts (a script's memory must not
        count as the first contender's queued tasks), then the database is flushed."""
        for key in keys:
            s = self.system(key)
            self.flush()
            s.batch(20)
            s.one("noop", 0)
        self.flush()

    def enqueue_phase(self, s: System, n: int, *, key_memory: bool = False) -> dict[str, Any]:
        """Enqueue n noop tasks with no worker running: rate, memory (with ``key_memory``, also
        MEMORY USAGE summed over the database's keys), Redis CPU and commands."""
        self.flush()
        gc.collect()
        time.sleep(0.05)
        m0, c0, s0 = self.server.used_memory(), self.server.cpu_seconds(), self.server.commandstats()
        t0 = perf()
        s.batch(n)
        dt = perf() - t0
        c1, s1 = self.server.cpu_seconds(), self.server.commandstats()
        m1 = self.server.used_memory()
        cmds = {k: v["calls"] for k, v in srv.stats_delta(s0, s1).items()}
        extra: dict[str, Any] = {}
        if key_memory:
            usage, nkeys = self.server.keys_memory()
            extra = {"key_bytes_per_task": usage / n, "keys_per_task": nkeys / n}
        return {**extra, "n": n, "enqueue_rate": n / dt, "bytes_per_task": (m1 - m0) / n,
                "push_cpu_us": (c1 - c0) / n * 1e6, "push_cmds": sum(cmds.values()) / n,
                "push_commands": {k: round(v / n, 3) for k, v in sorted(cmds.items(), key=lambda kv: -kv[1])}}

    def round_once(self, key: str, n: int, *, latency: bool, key_memory: bool = False) -> dict[str, Any]:
        s = self.system(key)
        run: dict[str, Any] = {"ok": False, "error": None, "rate": float("nan")}
        run.update(self.enqueue_phase(s, n, key_memory=key_memory))
        proc = self.start_worker(s, {"BENCH_TOTAL": str(n)})
        started = time.time()
        try:
            snap: dict[str, Any] = {}
            polls_after = 0
            deadline = time.monotonic() + STARTUP_TIMEOUT + n / 50.0
            done = 0
            while time.monotonic() < deadline:
                done = self.counter()
                if snap:
                    polls_after += 1
                elif done > 0:
                    snap = {"done": done, "stats": self.server.commandstats(), "cpu": self.server.cpu_seconds(),
                            "wcpu": hp.process_cpu_seconds(proc.pid, children=True)}
                if done >= n or not proc.alive():
                    break
                time.sleep(0.02)
            stats1, cpu1 = self.server.commandstats(), self.server.cpu_seconds()
            wcpu1 = hp.process_cpu_seconds(proc.pid, children=True)
            done = self.counter()
            if done < n:
                run["error"] = f"{done}/{n} done; worker log: {proc.tail(5)!r}"
                return run
            first, last = (float(x or 0) for x in self.r.mget("bench:first", "bench:last"))
            run.update(ok=True, rate=(n - 1) / (last - first), drain_s=last - first, startup_s=first - started)
            tasks = n - snap["done"]
            if tasks >= max(20, n // 4):
                delta = srv.stats_delta(snap["stats"], stats1)
                # the task body's INCR, the benchmark's polling GETs and the SET of bench:last
                own = {"incrby": tasks, "get": polls_after, "set": 1}
                cmds = {k: v["calls"] - own.get(k, 0) for k, v in delta.items()}
                cmds = {k: c for k, c in cmds.items() if c > 0}
                run["drain_cmds"] = sum(cmds.values()) / tasks
                run["drain_commands"] = {k: round(c / tasks, 3) for k, c in sorted(cmds.items(), key=lambda kv: -kv[1])}
                run["drain_cpu_us"] = (cpu1 - snap["cpu"]) / tasks * 1e6
                run["worker_cpu_us"] = (wcpu1 - snap["wcpu"]) / tasks * 1e6
                run["lifecycle_cpu_us"] = run["push_cpu_us"] + run["drain_cpu_us"]
                run["lifecycle_cmds"] = run["push_cmds"] + run["drain_cmds"]
            if latency and proc.alive():
                run["latency"] = self.latency_phase(s, proc)
        finally:
            self.stop_worker(s, proc)
        return run

    def latency_phase(self, s: System, proc: hp.Proc) -> dict[str, Any]:
        """The worker is running and idle: tasks enqueued one at a time, ``spacing`` apart."""
        cfg = self.sizes["latency"]
        n, warm, spacing = cfg["n_by"].get(s.key, cfg["n"]), cfg["warmup"], cfg["spacing"]
        for i in range(warm):  # connections, imports, script loading; negative ids
            s.one("record", -1 - i)
            time.sleep(0.01)
        if not hp.wait_until(lambda: self.r.hlen("bench:lat") >= warm or not proc.alive(), STARTUP_TIMEOUT):
            return {"ok": False, "error": f"warm-up tasks did not start: {proc.tail(5)!r}"}
        time.sleep(0.3)  # let the worker go idle (blocked on its queue)
        gc.collect()
        gc.disable()
        enq: list[float] = []
        t0 = perf()
        try:
            for i in range(n):
                delay = t0 + i * spacing - perf()
                if delay > 0:
                    time.sleep(delay)
                enq.append(time.time())
                s.one("record", i)
        finally:
            gc.enable()
        if not hp.wait_until(lambda: self.r.hlen("bench:lat") >= warm + n, 60.0, 0.01):
            return {"ok": False, "error": f"{self.r.hlen('bench:lat') - warm}/{n} tasks started"}
        starts = {int(k): float(v) for k, v in self.r.hgetall("bench:lat").items()}
        samples = [(starts[i] - enq[i]) * 1000.0 for i in range(n)]
        return {"ok": True, "n": n, "ms": st.summarize(samples)}

    # ---- the whole scenario ------------------------------------------------------------------
    def scenario_u(self) -> None:
        cfg = self.sizes
        keys = self.keys
        sizes = {k: cfg["n_by"].get(k, cfg["n"]) for k in keys}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        memory: dict[str, dict[str, Any]] = {}
        self.warm_up(keys)
        t_start = perf()
        out(f"== as users run it: enqueue N no-op tasks the users' way, then ONE worker process started the "
            f"users' way drains them ({cfg['n']:,} tasks; " + ", ".join(
                f"{k} {v:,}" for k, v in cfg["n_by"].items() if k in keys) +
            f"); then enqueue -> start latency on the idle worker; {self.reps} round(s), rotated order"
            + ("; every worker with WARNING logging (--quiet)" if self.quiet else "; default logging"))
        for rep in range(self.reps):
            for key in self.rotated(keys, rep):
                try:
                    run = self.round_once(key, sizes[key], latency=not key.endswith("-burst"),
                                          key_memory=rep == 0 and sizes[key] >= cfg["memory_n"])
                except Exception as exc:  # one contender failing must not hide the others
                    run = {"ok": False, "error": repr(exc)}
                runs[key].append(run)
                if not run["ok"]:
                    out(f"   round {rep + 1} {key:13} FAILED ({run['error']})")
                    continue
                lat = run.get("latency", {})
                lat_s = (f", latency p50 {lat['ms']['p50']:.2f} / p99 {lat['ms']['p99']:.2f} ms"
                         if lat.get("ok") else f", latency {lat.get('error')}" if lat else "")
                out(f"   round {rep + 1} {key:13} drain {run['rate']:,.0f}/s, enqueue {run['enqueue_rate']:,.0f}/s, "
                    f"Redis {run.get('lifecycle_cpu_us', float('nan')):.0f} us and "
                    f"{run.get('lifecycle_cmds', float('nan')):.1f} cmds per task, "
                    f"{run['bytes_per_task']:.0f} B/queued task{lat_s}")
            if rep == 0:
                # bytes per queued task at the full backlog, for contenders that drain fewer
                for key in keys:
                    if sizes[key] < cfg["memory_n"]:
                        memory[key] = self.enqueue_phase(self.system(key), cfg["memory_n"], key_memory=True)
                self.flush()
        elapsed = perf() - t_start
        summary = self.summarize(keys, runs, memory)
        self.results["U"] = {"sizes": cfg, "reps": self.reps, "elapsed_s": elapsed, "quiet": self.quiet,
                             "contenders": summary, "runs": runs, "memory_full_backlog": memory}
        self.figures(summary, runs)
        out(f"(took {elapsed:.0f} s)")

    def summarize(self, keys: list[str], runs: dict[str, list[dict[str, Any]]],
                  memory: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        summary: dict[str, dict[str, Any]] = {}
        rows = []
        for key in keys:
            good = [r for r in runs[key] if r["ok"]]
            lat = [r["latency"]["ms"] for r in good if r.get("latency", {}).get("ok")]

            def med(field: str, rs: list[dict[str, Any]] = good) -> float:
                return st.median([r.get(field, float("nan")) for r in rs])

            row = {
                "label": self.system(key).label, "n": [r.get("n") for r in runs[key]],
                "rate": med("rate"), "rate_runs": [r["rate"] for r in good],
                "enqueue_rate": med("enqueue_rate"),
                "bytes_per_task": memory[key]["bytes_per_task"] if key in memory else med("bytes_per_task"),
                "bytes_per_task_n": memory[key]["n"] if key in memory else self.sizes["n"],
                "key_bytes_per_task": (memory[key] if key in memory else good[0] if good else {}).get(
                    "key_bytes_per_task", float("nan")),
                "keys_per_task": (memory[key] if key in memory else good[0] if good else {}).get(
                    "keys_per_task", float("nan")),
                "lifecycle_cpu_us": med("lifecycle_cpu_us"), "push_cpu_us": med("push_cpu_us"),
                "drain_cpu_us": med("drain_cpu_us"), "lifecycle_cmds": med("lifecycle_cmds"),
                "push_cmds": med("push_cmds"), "drain_cmds": med("drain_cmds"),
                "worker_cpu_us": med("worker_cpu_us"), "startup_s": med("startup_s"),
                "latency_ms": st.median_summary(lat) if lat else {},
                "commands": good[0].get("drain_commands", {}) if good else {},
                "push_commands": good[0].get("push_commands", {}) if good else {},
                "failures": [r["error"] for r in runs[key] if not r["ok"]],
            }
            summary[key] = row
            ns = sorted({r.get("n", 0) for r in runs[key]})
            rows.append([row["label"], f"{ns[-1]:,}", row["rate"], row["enqueue_rate"],
                         row["latency_ms"].get("p50"), row["latency_ms"].get("p99"), row["lifecycle_cpu_us"],
                         row["lifecycle_cmds"], row["push_cmds"], row["bytes_per_task"], row["key_bytes_per_task"],
                         row["keys_per_task"], row["worker_cpu_us"], row["startup_s"]])
        out()
        shared = "" if self.private else " (SHARED server: other clients' work counts too)"
        self.tables["U"] = report.table(
            ["contender", "tasks", "drain/s", "enqueue/s", "lat p50 ms", "lat p99 ms", "Redis CPU us/task",
             "Redis cmds/task", "of them enqueue", "B/queued task", "MEMORY USAGE B/task", "keys/task",
             "worker CPU us/task", "startup s"], rows,
            title=f"As users run it: medians of {self.reps} round(s). Redis CPU and commands per task lifecycle "
                  f"(enqueue + pop + ack; INFO cpu / commandstats, script-internal commands included){shared}")
        return summary

    def figures(self, summary: dict[str, dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
        """The issue-17 table: figure | fairque_django | peers | ratio | target."""

        def paired(a: str, b: str, field: str, sub: str | None = None) -> float:
            if a not in runs or b not in runs:
                return float("nan")
            vals = []
            for x, y in zip(runs[a], runs[b], strict=True):
                if sub:
                    x, y = x.get(sub, {}).get("ms", {}), y.get(sub, {}).get("ms", {})
                xv, yv = x.get(field), y.get(field)
                if isinstance(xv, float) and isinstance(yv, float) and yv:
                    vals.append(xv / yv)
            return st.median(vals)

        def val(key: str, field: str) -> float:
            return summary[key][field] if key in summary else float("nan")

        def peers(field: str, keys: list[str], digits: int = 0, sub: str | None = None) -> str:
            parts = []
            for k in keys:
                if k in summary:
                    v = summary[k][sub].get(field, float("nan")) if sub else summary[k][field]
                    parts.append(f"{SHORT.get(k, k)} {v:,.{digits}f}")
            return "; ".join(parts) or "-"

        rows: list[list[Any]] = []
        f = "fqdj-c1"

        def add(figure: str, ours: str, peer: str, ratio: float, target: float | None, op: str = ">=",
                name: str | None = None, value: float | None = None) -> None:
            verdict = ""
            checked = ratio if value is None else value
            if target is not None and checked == checked:  # not measured (nan): no verdict
                v = self.verdict(f"U {name or figure}", checked, target, op)
                verdict = "pass" if v["pass"] else "MISS"
            elif target is not None:
                verdict = "not measured"
            rows.append([figure, ours, peer, "-" if ratio != ratio else f"{ratio:.2f}x",
                         "-" if target is None else f"{op} {target:g}", verdict])

        add("drain, concurrency 1 (tasks/s)", f"{val(f, 'rate'):,.0f}", peers("rate", ["huey-w1"]),
            paired(f, "huey-w1", "rate"), TARGETS["drain_c1_vs_huey"], name="drain c1 / Huey -w 1")
        add("drain, concurrency 8 (tasks/s)", f"{val('fqdj-c8', 'rate'):,.0f}", peers("rate", ["huey-w8"]),
            paired("fqdj-c8", "huey-w8", "rate"), TARGETS["drain_c8_vs_huey"], name="drain c8 / Huey -k thread -w 8")
        add("drain, --burst (separate line, not a production mode)", f"{val('fqdj-c1-burst', 'rate'):,.0f}",
            peers("rate", ["huey-w1"]), paired("fqdj-c1-burst", "huey-w1", "rate"), None)
        add("drain, other peers (tasks/s)", f"{val(f, 'rate'):,.0f}",
            peers("rate", ["rq-worker", "celery-solo", "celery-t8", "raw"]), float("nan"), None)
        add("Redis CPU per task lifecycle (us)", f"{val(f, 'lifecycle_cpu_us'):.0f}",
            peers("lifecycle_cpu_us", ["huey-w1", "rq-worker", "celery-solo", "raw"]),
            paired(f, "huey-w1", "lifecycle_cpu_us"), TARGETS["cpu_vs_huey"], "<=",
            name="Redis CPU per lifecycle / Huey")
        add("Redis commands per task lifecycle (incl. inside scripts)", f"{val(f, 'lifecycle_cmds'):.1f}",
            peers("lifecycle_cmds", ["huey-w1", "rq-worker", "celery-solo", "raw"], 1),
            val(f, "lifecycle_cmds") / val("huey-w1", "lifecycle_cmds") if "huey-w1" in summary else float("nan"),
            TARGETS["cmds_per_task"], "<=", name="Redis commands per lifecycle", value=val(f, "lifecycle_cmds"))
        add("Redis memory per queued small task (bytes)", f"{val(f, 'bytes_per_task'):.0f}",
            peers("bytes_per_task", ["huey-w1", "rq-worker", "celery-solo", "raw"]),
            val(f, "bytes_per_task") / val("rq-worker", "bytes_per_task") if "rq-worker" in summary else float("nan"),
            TARGETS["bytes_per_task"], "<=", name="bytes per queued task", value=val(f, "bytes_per_task"))
        if "rq-worker" in summary and f in summary:
            self.verdict("U bytes per queued task / RQ", val(f, "bytes_per_task") / val("rq-worker", "bytes_per_task"),
                         TARGETS["bytes_vs_rq"], "<=", "x")
        add("enqueue (tasks/s): enqueue_many via Django vs RQ enqueue_many, 1,000 per call",
            f"{val(f, 'enqueue_rate'):,.0f}", peers("enqueue_rate", ["rq-worker", "huey-w1", "celery-solo"]),
            paired(f, "rq-worker", "enqueue_rate"), TARGETS["enqueue_vs_rq"], name="enqueue_many / RQ enqueue_many")
        add("enqueue vs pipelined raw LPUSH", f"{val(f, 'enqueue_rate'):,.0f}", peers("enqueue_rate", ["raw"]),
            paired(f, "raw", "enqueue_rate"), TARGETS["enqueue_vs_raw"], name="enqueue_many / raw pipelined LPUSH")
        lat = summary.get(f, {}).get("latency_ms", {})
        add("latency p50, enqueue -> start (ms)", f"{lat.get('p50', float('nan')):.2f}",
            peers("p50", ["huey-w1", "celery-solo", "raw"], 2, "latency_ms"),
            paired(f, "huey-w1", "p50", "latency"), TARGETS["latency_p50_vs_huey"], "<=", name="latency p50 / Huey")
        add("latency p99 (ms)", f"{lat.get('p99', float('nan')):.2f}",
            peers("p99", ["huey-w1", "celery-solo", "raw"], 2, "latency_ms"),
            paired(f, "huey-w1", "p99", "latency"), TARGETS["latency_p99_vs_huey"], "<=", name="latency p99 / Huey")
        out()
        self.tables["U_figures"] = report.table(["figure", "fairque_django", "peers", "ratio", "target", ""], rows,
                                                title="Issue 17 figures (ratios: medians of same-round ratios; "
                                                      "commands: ratio to Huey's, target absolute; memory: ratio "
                                                      "to RQ's, target absolute)")
        self.results["U_figures"] = [dict(zip(["figure", "fairque_django", "peers", "ratio", "target", "verdict"],
                                              r, strict=True)) for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round, small sizes (smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick 1)")
    ap.add_argument("--tasks", type=int, default=None, help="tasks per drain (default 10,000)")
    ap.add_argument("--only", default=None, help=f"comma list of contenders (default all: {', '.join(CONTENDERS)})")
    ap.add_argument("--quiet", action="store_true",
                    help="every worker logs at WARNING (default: each system's default logging, to a file)")
    ap.add_argument("--private-server", action=argparse.BooleanOptionalAction, default=True,
                    help="a throw-away redis-server of our own, so server-wide counters see only the benchmark "
                         "(default on)")
    ap.add_argument("--redis-url", default=DEFAULT_URL,
                    help=f"with --no-private-server: the Redis to use; only its DB is flushed (default {DEFAULT_URL})")
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    ap.add_argument("--images", type=Path, default=IMAGES, help=f"where the PNG plot goes (default {IMAGES})")
    args = ap.parse_args(argv)
    sizes = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.rounds:
        sizes["reps"] = args.rounds
    if args.tasks:
        sizes["n"] = sizes["memory_n"] = args.tasks
        sizes["n_by"] = {k: min(v, args.tasks) for k, v in sizes["n_by"].items()}
    keys = [k.strip() for k in args.only.split(",")] if args.only else list(CONTENDERS)
    bad = [k for k in keys if k not in CONTENDERS]
    if bad:
        raise SystemExit(f"--only: unknown contender(s) {bad}; choose from {CONTENDERS}")
    missing = sorted({PEER_MODULES[k] for k in keys if k in PEER_MODULES and not installed(PEER_MODULES[k])})
    if missing:
        out(f"NOT INSTALLED, left out: {', '.join(missing)} (python3 benchmarks/peers_env.py installs the peers)")
        keys = [k for k in keys if PEER_MODULES.get(k) not in missing]
    server_procs = hp.Processes()
    if args.private_server:
        args.redis_url = srv.start_private_redis(server_procs, srv.url_db(args.redis_url))
    problem = srv.require_redis(args.redis_url)
    if problem:
        out(f"benchmark skipped: {problem}")
        return 0
    os.environ["BENCH_REDIS_URL"] = args.redis_url  # read by the peer apps and the Django settings at import
    hp.install_signal_handlers()
    bench = AsUsers(args.redis_url, sizes, private=args.private_server, quiet=args.quiet, keys=keys)
    versions = {}
    for mod in ("huey", "rq", "celery", "django"):
        if installed(mod):
            versions[mod] = getattr(__import__(mod), "__version__", "?")
    meta = report.run_meta(args.redis_url, mode="quick" if args.quick else "full", reps=sizes["reps"],
                           python_exe=sys.executable, private_server=args.private_server, versions=versions,
                           not_installed=missing, contenders=keys)
    where = srv.redact(args.redis_url) + (" (private server)" if args.private_server else " (SHARED server)")
    load = ", ".join(f"{x:.1f}" for x in meta.get("load_avg", ()))
    out(f"fairque_django as users run it ({meta['mode']}): Redis {meta.get('redis_version')} at {where}, "
        f"{meta['cpus']} CPUs, load average {load}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    started = perf()
    try:
        bench.scenario_u()
    finally:
        bench.procs.close()
        with contextlib.suppress(redis.RedisError):
            srv.flush_db(args.redis_url)
        server_procs.close()
    meta["elapsed_s"] = perf() - started
    data = {**bench.results, "meta": meta, "verdicts": bench.verdicts, "tables": bench.tables, "targets": TARGETS}
    report.write_json(args.output, data)
    made: list[Path] = []
    try:
        from benchmarks.harness.plots import as_users_plot

        made = as_users_plot(bench.results, args.images)
    except Exception as exc:  # plots are a convenience
        out(f"plot failed: {exc}")
    out(f"\nresults written to {args.output}" + "".join(f"; {p}" for p in made))
    return 0
