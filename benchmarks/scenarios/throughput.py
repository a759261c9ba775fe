"""Throughput, latency, push and tenant-scale benchmarks of fairque_django against its peers.

Run with the benchmarks' own virtualenv (fairque_django editable + RQ, Huey, Celery, matplotlib):

    python3 benchmarks/peers_env.py                 # creates/prints benchmarks/.venv-peers/bin/python
    benchmarks/.venv-peers/bin/python benchmarks/bench_throughput.py            # full run
    benchmarks/.venv-peers/bin/python benchmarks/bench_throughput.py --quick    # smoke run
    benchmarks/.venv-peers/bin/python benchmarks/bench_throughput.py --only A,B --profile

Scenarios
  A  drain: N pre-queued no-op tasks, ONE worker process; tasks/s from the first to the last
     completion (each task INCRs a Redis counter; the same task body runs on every contender)
  B  latency: idle worker, enqueue -> task start over 200 tasks spaced 5 ms
  C  push: one-by-one and batched enqueue, in process, interleaved in chunks
  D  tenant scale: fairque pop cost with 10..100,000 assigned tenants (list and pattern), 1% ready;
     commands, round trips and Redis CPU per task; lifecycle cost of every contender; memory per task

The machine is shared and noisy: contenders run one after the other in the same run against the
same Redis, in an order rotated every repetition; figures are medians over repetitions and ratios
are taken between contenders of the same repetition. Only the URL's database (default 8, or $FAIRQUE_BENCH_REDIS_URL) is
flushed. Results: benchmarks/results/throughput.json, docs/images/bench_throughput.png and
docs/images/bench_latency.png. The exit code is always 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.contenders.base import System
from benchmarks.contenders.fairque_app import Fairque
from benchmarks.contenders.raw_app import Raw
from benchmarks.harness import IMAGES, RESULTS_DIR, default_url, report
from benchmarks.harness import procs as hp
from benchmarks.harness import server as srv
from benchmarks.harness import stats as st
from benchmarks.harness.plots import throughput_plots
from benchmarks.harness.report import out
from benchmarks.scenarios.throughput_cost import STARTUP_TIMEOUT, TARGETS, CostScenario
from benchmarks.scenarios.throughput_push import LatencyPushScenarios

DEFAULT_URL = default_url(8)
RESULTS = RESULTS_DIR / "throughput.json"
perf = time.perf_counter


def _systems() -> dict[str, type[System]]:
    """The peers, imported when first needed (their apps read BENCH_REDIS_URL at import)."""
    from benchmarks.contenders.celery_app import Celery
    from benchmarks.contenders.huey_app import Huey
    from benchmarks.contenders.rq_app import RQ

    return {"raw": Raw, "huey": Huey, "rq": RQ, "celery": Celery}


FULL: dict[str, Any] = {
    "reps": 3,
    # The issue says 20,000 tasks (--drain-tasks 20000); 10,000 keeps the scenario under 3 minutes
    # on a loaded 2-core machine (3 repetitions x 6 contenders). RQ (~150-330/s here) and Celery
    # (~400-1,500/s) drain fewer: their rates are still measured over several seconds.
    "A": {"n": 10_000, "n_by": {"rq": 600, "celery": 2_000}, "users": 100, "profile_n": 5_000,
          "budget_s": 160, "min_n": 300},
    "B": {"n": 200, "spacing": 0.005, "warmup": 10, "reps": 5},  # noisiest figure: more repetitions
    "C": {"single": 2_000, "batch": 10_000, "chunks": 10},
    "D": {"scales": [10, 1_000, 10_000, 100_000], "pops": 1_000, "chunk": 50, "lifecycle": 400,
          "memory": 10_000, "reps": 3},
}
QUICK: dict[str, Any] = {
    "reps": 1,
    "A": {"n": 3_000, "n_by": {"rq": 300, "celery": 1_000}, "users": 100, "profile_n": 1_500,
          "budget_s": 60, "min_n": 200},
    "B": {"n": 60, "spacing": 0.005, "warmup": 5},
    "C": {"single": 300, "batch": 2_000, "chunks": 3},
    "D": {"scales": [10, 1_000, 100_000], "pops": 300, "chunk": 50, "lifecycle": 100,
          "memory": 2_000, "reps": 1},
}


class Bench(LatencyPushScenarios, CostScenario):
    def __init__(self, url: str, sizes: dict[str, Any], *, profile: bool, private: bool = False) -> None:
        self.url = url
        self.sizes = sizes
        self.reps: int = sizes["reps"]
        self.profile = profile
        self.private = private
        self.r = srv.connect(url)
        self.server = srv.Server(self.r)
        self.procs = hp.Processes()
        self.results: dict[str, Any] = {}
        self.verdicts: list[dict[str, Any]] = []
        self.tables: dict[str, str] = {}
        self._systems: dict[str, System] = {}

    # ---- plumbing ----------------------------------------------------------------------
    def system(self, key: str) -> System:
        s = self._systems.get(key)
        if s is None:
            if key.startswith("fairque-c"):
                s = Fairque(self.url, int(key.removeprefix("fairque-c")))
            else:
                s = _systems()[key](self.url)
            self._systems[key] = s
        return s

    def flush(self, system: System | None = None) -> None:
        srv.flush_db(self.url)
        for s in self._systems.values():
            s.after_flush()

    def start_worker(self, s: System, env: dict[str, str] | None = None, **kw: Any) -> hp.Proc:
        return self.procs.launch(s.key, s.worker_cmd(**kw), self.url, env=env)

    def stop_worker(self, s: System, proc: hp.Proc) -> None:
        if s.exits_by_itself:
            self.procs.wait(proc, 10.0)
        else:
            self.procs.stop(proc, timeout=5.0)

    def counter(self) -> int:
        return int(self.r.get("bench:done") or 0)

    def wait_done(self, n: int, proc: hp.Proc, timeout: float, *, on_first: Callable[[int], None] | None = None,
                  interval: float = 0.02) -> tuple[bool, int]:
        """Poll the completion counter until it reaches n. Returns (reached, number of polls)."""
        deadline = time.monotonic() + timeout
        polls, seen_first = 0, False
        while time.monotonic() < deadline:
            done = self.counter()
            polls += 1
            if not seen_first and done > 0 and on_first is not None:
                seen_first = True
                on_first(done)
            if done >= n:
                return True, polls
            if not proc.alive() and not (done >= n):
                time.sleep(0.2)
                if self.counter() >= n:
                    return True, polls + 1
                return False, polls
            time.sleep(interval)
        return False, polls

    def rotated(self, keys: list[Any], rep: int) -> list[Any]:
        shift = rep % len(keys)
        return keys[shift:] + keys[:shift]

    # ---- A. drain throughput -----------------------------------------------------------
    def scenario_a(self) -> None:
        cfg = self.sizes["A"]
        keys = ["fairque-c1", "fairque-c4", "raw", "huey", "rq", "celery"]
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        t_start = perf()
        out(f"== A. drain throughput: pre-queued no-op tasks, one worker process "
            f"({cfg['n']:,} tasks; RQ {cfg['n_by']['rq']:,}, Celery {cfg['n_by']['celery']:,}); "
            f"{self.reps} repetition(s), rotated order")
        sizes = {k: cfg["n_by"].get(k, cfg["n"]) for k in keys}
        budget = cfg.get("budget_s", 1e9)
        rep_started = t_start
        for rep in range(self.reps):
            if rep:
                # keep the scenario inside its time budget on a slow/loaded machine: if the last
                # repetition's pace would overrun it, drain fewer tasks in the next ones (rates are
                # per task; each repetition still pairs every contender)
                last = perf() - rep_started
                left = budget - (perf() - t_start)
                need = last * (self.reps - rep)
                if need > left:
                    f = max(0.25, left / need * 0.9)
                    sizes = {k: max(cfg.get("min_n", 300), int(v * f)) for k, v in sizes.items()}
                    out(f"   (time budget {budget:.0f} s: next repetitions drain {f:.2f}x the tasks)")
            rep_started = perf()
            for key in self.rotated(keys, rep):
                run = self.drain_once(key, sizes[key])
                runs[key].append(run)
                status = f"{run['rate']:,.0f} tasks/s" if run["ok"] else f"FAILED ({run['error']})"
                out(f"   rep {rep + 1} {key:11} drain {status}, enqueue {run['enqueue_rate']:,.0f}/s")
        elapsed = perf() - t_start

        def med(key: str, field: str) -> float:
            return st.median([r[field] for r in runs[key] if r["ok"]])

        def paired(a: str, b: str) -> float:
            return st.median([x["rate"] / y["rate"] for x, y in zip(runs[a], runs[b], strict=True)
                              if x["ok"] and y["ok"]])

        rows, summary = [], {}
        for key in keys:
            s = self.system(key)
            counts = [r["cmds_per_task"] for r in runs[key] if r["ok"] and r["cmds_per_task"] is not None]
            row = {
                "label": s.label, "n": runs[key][0]["n"], "n_runs": [r["n"] for r in runs[key]],
                "rate": med(key, "rate"),
                "rate_runs": [r["rate"] for r in runs[key]], "rate_min": min(r["rate"] for r in runs[key]),
                "rate_max": max(r["rate"] for r in runs[key]),
                "vs_raw": paired(key, "raw"), "vs_huey": paired(key, "huey"),
                "enqueue_rate": med(key, "enqueue_rate"), "startup_s": med(key, "startup_s"),
                "cmds_per_task": min(counts) if counts else float("nan"),
                "server_cpu_us_per_task": med(key, "server_cpu_us"),
                "worker_cpu_us_per_task": med(key, "worker_cpu_us"),
                "commands": min((r for r in runs[key] if r["ok"] and r["cmds_per_task"] is not None),
                                key=lambda r: r["cmds_per_task"], default={}).get("commands", {}),
                "failures": [r["error"] for r in runs[key] if not r["ok"]],
            }
            summary[key] = row
            ns = sorted(set(row["n_runs"]))
            rows.append([s.label, f"{ns[-1]:,}" if len(ns) == 1 else f"{ns[0]:,}-{ns[-1]:,}", row["rate"],
                         row["vs_raw"], row["vs_huey"],
                         row["worker_cpu_us_per_task"], row["server_cpu_us_per_task"], row["enqueue_rate"],
                         row["startup_s"]])
        out()
        self.tables["A"] = report.table(
            ["contender", "tasks", "drain tasks/s", "x raw", "x Huey", "worker CPU us/task", "Redis CPU us/task",
             "enqueue/s", "startup s"], rows,
            title=f"A. drain throughput (median of {self.reps}; ratios = median of same-repetition ratios; "
                  f"CPU per task during the drain: worker process from /proc, Redis from INFO cpu"
                  f"{'' if self.private else ' (server-wide: other clients of the shared server add to it)'})")
        self.results["A"] = {"sizes": cfg, "reps": self.reps, "elapsed_s": elapsed, "contenders": summary,
                             "runs": runs,
                             "method": "tasks/s = (N-1)/(time of last completion - time of first completion), "
                                       "timestamps taken by the task bodies; every task INCRs bench:done"}
        out()
        v = self.verdict("A fairque (concurrency 1) drain / Huey drain", summary["fairque-c1"]["vs_huey"],
                         TARGETS["drain_vs_huey"], ">=", "x",
                         f"{summary['fairque-c1']['rate']:,.0f} vs {summary['huey']['rate']:,.0f} tasks/s")
        self.verdict("A fairque (concurrency 4) drain / Huey drain", summary["fairque-c4"]["vs_huey"],
                     TARGETS["drain_vs_huey"], ">=", "x",
                     f"{summary['fairque-c4']['rate']:,.0f} vs {summary['huey']['rate']:,.0f} tasks/s")
        out(f"(A took {elapsed:.0f} s)")
        if self.profile:
            self.profile_drain()
        elif not v["pass"]:
            out("(fairque missed the drain target: rerun with --profile for a cProfile of its worker)")

    def drain_once(self, key: str, n: int) -> dict[str, Any]:
        s = self.system(key)
        self.flush()
        gc.collect()
        t0 = perf()
        s.batch(n)
        enqueue_s = perf() - t0
        run: dict[str, Any] = {"n": n, "enqueue_s": enqueue_s, "enqueue_rate": n / enqueue_s, "ok": False,
                               "rate": float("nan"), "error": None, "cmds_per_task": None,
                               "server_cpu_us": float("nan"), "worker_cpu_us": float("nan"),
                               "startup_s": float("nan")}
        snap: dict[str, Any] = {}
        proc: hp.Proc | None = None

        def on_first(done: int) -> None:
            snap.update(done=done, stats=self.server.commandstats(), cpu=self.server.cpu_seconds(),
                        wcpu=proc.cpu_seconds() if proc else float("nan"))

        started = time.time()
        proc = self.start_worker(s, {"BENCH_TOTAL": str(n)}, burst=True)
        timeout = STARTUP_TIMEOUT + n / 100.0
        try:
            ok, polls = self.wait_done(n, proc, timeout, on_first=on_first)
            wcpu1 = proc.cpu_seconds()
            stats1, cpu1 = self.server.commandstats(), self.server.cpu_seconds()
            if not ok:
                run["error"] = f"{self.counter()}/{n} done; worker log: {proc.tail(5)!r}"
                return run
            first, last = (float(x or 0) for x in self.r.mget("bench:first", "bench:last"))
            run.update(ok=True, rate=(n - 1) / (last - first), drain_s=last - first, startup_s=first - started)
            if snap:
                tasks = n - snap["done"]
                delta = srv.stats_delta(snap["stats"], stats1)
                # the benchmark's own commands: one INCR(BY) per task, its polling GETs, the SET of LAST
                own = {"incrby": tasks, "get": polls, "set": 1, "mget": 0}
                cmds = {k: v["calls"] - own.get(k, 0) for k, v in delta.items()}
                cmds = {k: c for k, c in cmds.items() if c > 0}
                if tasks >= max(50, n // 4):
                    # server-wide counters: exact only on a private server (--private-server)
                    run["cmds_per_task"] = sum(cmds.values()) / tasks
                    run["commands"] = {k: round(c / tasks, 3) for k, c in sorted(cmds.items(), key=lambda kv: -kv[1])}
                    run["server_cpu_us"] = (cpu1 - snap["cpu"]) / tasks * 1e6
                    run["worker_cpu_us"] = (wcpu1 - snap["wcpu"]) / tasks * 1e6
        finally:
            self.stop_worker(s, proc)
        return run

    # ---- reporting ---------------------------------------------------------------------
    def verdict(self, name: str, value: float, target: float, op: str, unit: str = "", detail: str = "",
                ) -> dict[str, Any]:
        v = report.verdict(name, value, target, op, unit, detail)
        self.verdicts.append(v)
        return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=DEFAULT_URL,
                    help=f"Redis to use; only its DB is flushed (default {DEFAULT_URL})")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    ap.add_argument("--only", default=None, help="comma list of scenarios: A,B,C,D")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile a fairque worker drain (also done when the drain target is missed)")
    ap.add_argument("--drain-tasks", type=int, default=None,
                    help="scenario A: tasks pre-queued for fairque, raw and Huey (default 10,000; the issue's 20,000)")
    ap.add_argument("--private-server", action="store_true",
                    help="run against a throw-away redis-server of our own (exact server-wide counters)")
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    ap.add_argument("--images", type=Path, default=IMAGES, help=f"where the PNG plots go (default {IMAGES})")
    args = ap.parse_args(argv)
    only = report.parse_only(args.only, "ABCD")
    server_procs = hp.Processes()
    if args.private_server:
        args.redis_url = srv.start_private_redis(server_procs, srv.url_db(args.redis_url))
    problem = srv.require_redis(args.redis_url)
    if problem:
        out(f"benchmark skipped: {problem}")
        return 0
    os.environ["BENCH_REDIS_URL"] = args.redis_url  # read by the peer apps at import
    hp.install_signal_handlers()
    sizes = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.drain_tasks:
        sizes["A"]["n"] = args.drain_tasks
    bench = Bench(args.redis_url, sizes, profile=args.profile, private=args.private_server)
    meta = report.run_meta(args.redis_url, mode="quick" if args.quick else "full", scenarios=only,
                       reps=sizes["reps"], python_exe=sys.executable, private_server=args.private_server)
    import celery
    import huey
    import rq

    meta["versions"] = {"rq": rq.__version__, "huey": huey.__version__, "celery": celery.__version__}
    where = srv.redact(args.redis_url) + (" (private server)" if args.private_server else "")
    load = ", ".join(f"{x:.1f}" for x in meta.get("load_avg", ()))
    out(f"fairque_django throughput benchmark ({meta['mode']}): Redis {meta.get('redis_version')} at {where}, "
        f"{meta['cpus']} CPUs, load average {load}, RQ {rq.__version__}, Huey {huey.__version__}, "
        f"Celery {celery.__version__}")
    started = perf()
    try:
        for sc in only:
            out()
            try:
                getattr(bench, f"scenario_{sc.lower()}")()
            except Exception as exc:  # one scenario failing must not hide the others
                import traceback

                traceback.print_exc()
                out(f"scenario {sc} aborted: {exc}")
                bench.results[sc] = {"error": repr(exc)}
    finally:
        bench.procs.close()
        with contextlib.suppress(redis.RedisError):
            srv.flush_db(args.redis_url)
        server_procs.close()
    meta["elapsed_s"] = perf() - started
    previous: dict[str, Any] = {}
    if args.output.exists():
        try:
            previous = json.loads(args.output.read_text("utf-8"))
        except (OSError, ValueError):
            previous = {}
    # keep other scenarios' results from an earlier run; replace everything of the ones run now
    data = {k: v for k, v in previous.items() if k.split("_")[0] not in only}
    data.update(bench.results)
    data["meta"] = meta
    data["verdicts"] = [v for v in previous.get("verdicts", []) if v["name"][0] not in only] + bench.verdicts
    data["tables"] = {**previous.get("tables", {}), **bench.tables}
    data["targets"] = TARGETS
    report.write_json(args.output, data)
    try:
        made = throughput_plots(bench.results, bench.reps, args.images)
    except Exception as exc:  # plots are a convenience
        made = []
        out(f"plots failed: {exc}")
    out()
    out("== verdicts")
    for v in bench.verdicts:
        out(f"{v['name']}: {report.fmt(v['value'])} {v['unit']} vs target {v['op']} {report.fmt(v['target'])} "
            f"{'PASS' if v['pass'] else 'MISS'}" + (f" ({v['detail']})" if v["detail"] else ""))
    out(f"\ntotal {meta['elapsed_s']:.0f} s; results written to {args.output}"
        + "".join(f"; {p}" for p in made))
    return 0


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        pass
    except BaseException:  # report, never fail the build
        import traceback

        traceback.print_exc()
    sys.exit(0)
