"""Fairness benchmark: how long light tenants wait next to a noisy one, on four queues.

(One module of ~490 lines: the four scenarios, their printed tables and checks share the
:class:`Scenarios` state; the runner and the analysis are in :mod:`.fairness_runner`.)

Contenders, all on the same Redis database, each with two worker processes that run one task
at a time (their code in ``benchmarks/contenders/``):

  fairque        fairque_django ``Worker`` x2 (max_concurrent_tasks 1).  Deployment: the one
                 a SaaS runs when it does not know in advance which tenant will be noisy --
                 every worker may serve every tenant (``steal_targets: ["*"]``, nothing
                 assigned), so all tenants share one round-robin rotation.
  fairque-split  (scenario 1, for information) the README's two-worker layout: w1 assigned
                 ``heavy`` + steals ``light:*``, w2 assigned ``light:*`` + steals ``heavy``.
  fifo           one Redis list for everybody (LPUSH / BRPOP), 2 worker processes.
  rq             RQ, one queue per tenant, ``rq worker --dequeue-strategy round_robin`` x2, with
                 ``--worker-class rq.worker.SimpleWorker`` (runs jobs in the worker process, like
                 every other contender here).  RQ's default forking ``Worker`` costs ~80 ms per
                 job on this 2-core machine (measured), which makes RQ look ~10x worse and would
                 push scenarios 1 and 2 past 3 minutes; ``--rq-fork`` measures it anyway.
  celery         Celery, one queue per tenant, 2 workers ``--pool=solo -Q heavy,light-1,...``
                 (Celery's defaults otherwise: prefetch multiplier 4, early acks).

Every task sleeps its duration and records tenant, enqueue time, start and end (Redis LIST
``fb:rec``, :func:`benchmarks.contenders.bodies.work_body`).  The enqueue time is taken just
before the enqueue call (for a batch: before the batch call), so a wait includes the enqueue
itself.  Workers are started and idle before the
first enqueue; t0 is the moment just before it.

Scenarios
  1. Noisy neighbour: ``heavy`` enqueues 3,000 tasks (one batch), then 20 light tenants
     ``light:1..20`` enqueue 5 tasks each (one call per task); every task sleeps 1 ms.
  2. Expensive neighbour: as 1, heavy tasks sleep 10 ms, light ones 1 ms; fairque with
     ``fairness: "count"`` and ``fairness: "time"``.
  3. Critical flood: ``flood`` enqueues 2,000 CRITICAL (6) tasks, 10 tenants ``t:1..10`` then
     enqueue 10 normal tasks each; 1 ms tasks; fairque (FIFO as reference).
  4. Disjoint assignment + stealing: w1 assigned ``a:*`` steals ``b:*``, w2 the reverse; only
     ``a:1..20`` have work (1,000 tasks of 2 ms, one batch); vs a shared pool (both workers
     ``steal_targets: ["*"]``).  Repeated, interleaved; medians.

Figures per run
  wait            enqueue -> start, per task, ms: p50/p95/p99/max (linear interpolation)
  light done      when the last light task finished, s after t0 (and after the first light
                  enqueue)
  makespan        last task end - t0, s
  contention Jain For every 100 ms window [a, a+100 ms), a = t0, t0+10 ms, t0+20 ms, ... (sliding,
                  so a short contention period still yields several windows): the tenants counted
                  are the ones with a backlog at a (>= 1 task enqueued and not yet started at a).
                  Tenant i's demand d_i = its tasks waiting at a, its service s_i = how many of
                  those started inside the window.  The window's service C = sum s_i is split
                  max-min fairly under the caps d_i (water-filling) into fair shares f_i, and
                  J = (sum x)^2 / (n * sum x^2) with x_i = s_i / f_i (Jain's normalised form:
                  x = actual / fair allocation).  J = 1 when every backlogged tenant got its
                  fair share of what was served; serving only one of n backlogged tenants gives
                  about 1/n.  Windows with fewer than two counted tenants (or nothing served)
                  are skipped; mean and min over the rest are reported.  "count" measures tasks,
                  "time" measures worker time (run time of the tasks).
  gap / CPU       per worker, the mean time between one task's end and its next start when work
                  was waiting (the queue's per-task overhead), and the worker processes' CPU per
                  task (/proc, from t0 to the end of the run)
  heavy time share  scenario 2: share of the worker time spent on ``heavy`` from the first
                  light enqueue until the last light task started (time-fair: 1/21 = 4.8%;
                  count-fair with 10 ms vs 1 ms tasks: 10/30 = 33%).

    benchmarks/.venv-peers/bin/python benchmarks/bench_fairness.py            # all (~6 min)
    benchmarks/.venv-peers/bin/python benchmarks/bench_fairness.py --quick    # smaller, ~2 min
    benchmarks/.venv-peers/bin/python benchmarks/bench_fairness.py --only 1,4

(Started with another interpreter, the script re-runs itself with that one.)  Redis DB 7 by
default (``--redis-url``, or $FAIRQUE_BENCH_REDIS_URL / $FAIRQUE_FAIRNESS_REDIS_URL); it is
flushed before and after every run (that database only).
Results: ``benchmarks/results/fairness.json`` (``fairness_quick.json`` with --quick); plots
(full runs, or --plots): ``docs/images/fairness_noisy_neighbour.png`` and
``docs/images/fairness_light_wait.png``.  Exit code 0 whatever the results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.contenders.base import Contender, Job, Step
from benchmarks.contenders.fairque_app import FairqueTenants
from benchmarks.contenders.raw_app import Fifo
from benchmarks.harness import BENCH_DIR, RESULTS_DIR, default_url
from benchmarks.harness.plots import LIGHT_P99_VS_FIFO, fairness_plots
from benchmarks.harness.procs import install_signal_handlers
from benchmarks.harness.report import run_meta, write_json
from benchmarks.harness.report import verdict as common_verdict
from benchmarks.harness.server import redact
from benchmarks.harness.stats import median_of
from benchmarks.scenarios.fairness_runner import (
    PROCS,
    WINDOW_S,
    WINDOW_STEP_S,
    Bench,
    Run,
    analyse,
    flood_steps,
    fq_shared,
    noisy_steps,
    summarise,
)
from benchmarks.scenarios.fairness_runner import cli as runner_cli

DEFAULT_URL = default_url(7)
PEERS_PY = BENCH_DIR / ".venv-peers" / "bin" / "python"
FULL: dict[str, Any] = {
    "s1": {"heavy": 3000, "light_tenants": 20, "light_each": 5, "heavy_ms": 1.0, "light_ms": 1.0, "reps": 4},
    "s2": {"heavy": 3000, "light_tenants": 20, "light_each": 5, "heavy_ms": 10.0, "light_ms": 1.0, "reps": 1},
    "s3": {"flood": 2000, "others": 10, "each": 10, "ms": 1.0, "reps": 1},
    "s4": {"tenants": 20, "tasks": 1000, "ms": 2.0, "reps": 3},
}
QUICK: dict[str, Any] = {
    "s1": {"heavy": 600, "light_tenants": 20, "light_each": 5, "heavy_ms": 1.0, "light_ms": 1.0, "reps": 1},
    "s2": {"heavy": 600, "light_tenants": 20, "light_each": 5, "heavy_ms": 10.0, "light_ms": 1.0, "reps": 1},
    "s3": {"flood": 400, "others": 10, "each": 10, "ms": 1.0, "reps": 1},
    "s4": {"tenants": 20, "tasks": 300, "ms": 2.0, "reps": 1},
}
REP_CAP = {"rq": 1, "rq-fork": 1, "celery": 2, "fairque-split": 2}
TARGETS = {"s1_light_p99_vs_fifo": LIGHT_P99_VS_FIFO, "s1_jain": 0.95, "s1_makespan_vs_fifo": 1.10, "s4_makespan": 1.10}
perf = time.perf_counter


def _peer(name: str) -> Any:
    """A peer's fairness contender, imported when first needed (its app reads BENCH_REDIS_URL)."""
    if name == "rq":
        from benchmarks.contenders.rq_app import RQTenants

        return RQTenants
    from benchmarks.contenders.celery_app import CeleryTenants

    return CeleryTenants


def fmt(v: Any, spec: str = ".1f") -> str:
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return format(v, spec)
    return "-"


class Scenarios:
    def __init__(self, bench: Bench, url: str, sizes: dict[str, Any], have: dict[str, bool]) -> None:
        self.b = bench
        self.url = url
        self.sizes = sizes
        self.have = have
        self.results: dict[str, Any] = {}
        self.plot_runs: dict[str, Run] = {}
        self.rq_fork = False

    def check(self, name: str, value: float, target: float, op: str, unit: str = "",
              detail: str = "") -> dict[str, Any]:
        """``name: value vs target PASS/MISS`` (the harness's format), printed and kept."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            record = common_verdict(name, value, target, op, unit, detail)
        for line in buf.getvalue().splitlines():
            self.b.out(f"  {line}")
        return record

    def contenders_12(self, scenario: int) -> list[Callable[[], Contender]]:
        u = self.url
        out: list[Callable[[], Contender]] = []
        if scenario == 1:
            out.append(lambda: fq_shared(u))
        else:
            out.append(lambda: fq_shared(u, "count", "fairque-count"))
            out.append(lambda: fq_shared(u, "time", "fairque-time"))
        out.append(lambda: Fifo(u))
        if self.have["rq"]:
            out.append(lambda: _peer('rq')(u, fork=self.rq_fork))
        if self.have["celery"]:
            out.append(lambda: _peer('celery')(u))
        if scenario == 1:
            out.append(lambda: FairqueTenants(u, "fairque-split", [
                {"id": "fq-w1", "assigned_users": ["heavy"], "steal_targets": ["light:*"]},
                {"id": "fq-w2", "assigned_users": ["light:*"], "steal_targets": ["heavy"]}], config_dir=PROCS.logdir))
        return out

    def overhead(self, rows: dict[str, dict[str, Any]]) -> None:
        """Per-task queue overhead of each contender (medians over repetitions)."""
        parts = [f"{name} {fmt(r.get('gap_ms', {}).get('mean'), '.2f')} / "
                 f"{fmt(r.get('worker_cpu_ms_per_task'), '.2f')}" for name, r in rows.items()]
        self.b.out("  per-task overhead, ms (mean gap from a task's end to the worker's next start / worker CPU "
                   "per task): " + "; ".join(parts))

    def table(self, rows: list[dict[str, Any]], time_jain: bool = False) -> None:
        out = self.b.out
        head = (f"  {'contender':<14} {'light wait ms p50/p95/p99/max':>31} {'heavy wait ms p50/p95/p99/max':>33}"
                f" {'light done s':>13} {'makespan s':>10} {'Jain(count) mean/min':>21}")
        if time_jain:
            head += f" {'Jain(time) mean/min':>20} {'heavy time%':>11}"
        out(head)
        for r in rows:
            lw, hw = r.get("light_wait_ms", {}), r.get("heavy_wait_ms", {})
            line = (f"  {r['contender']:<14} "
                    f"{fmt(lw.get('p50'), '.0f'):>7}/{fmt(lw.get('p95'), '.0f'):>6}/{fmt(lw.get('p99'), '.0f'):>6}/"
                    f"{fmt(lw.get('max'), '.0f'):>6}   "
                    f"{fmt(hw.get('p50'), '.0f'):>7}/{fmt(hw.get('p95'), '.0f'):>6}/{fmt(hw.get('p99'), '.0f'):>6}/"
                    f"{fmt(hw.get('max'), '.0f'):>6}   "
                    f"{fmt(r.get('light_done_s'), '.3f'):>11} {fmt(r.get('makespan_s'), '.2f'):>10} "
                    f"{fmt(r['jain_count']['mean'], '.3f'):>11}/{fmt(r['jain_count']['min'], '.3f'):<6}")
            if time_jain:
                jt = r.get("jain_time", {})
                line += (f"   {fmt(jt.get('mean'), '.3f'):>9}/{fmt(jt.get('min'), '.3f'):<6}"
                         f" {fmt(100 * r.get('heavy_time_share', float('nan')), '.1f'):>9}")
            out(line)
            if r.get("problems"):
                out(f"  {'':<14} problems: {'; '.join(r['problems'])}")

    def run_contenders(self, scenario: int, sz: dict[str, Any]) -> dict[str, dict[str, Any]]:
        steps_fn = lambda: noisy_steps(sz)  # noqa: E731 - fresh Job objects per run
        summary: dict[str, dict[str, Any]] = {}
        raw: dict[str, list[dict[str, Any]]] = {}
        candidates: dict[str, list[Run]] = {}
        factories = self.contenders_12(scenario)
        reps = sz["reps"]
        # interleave repetitions: c1 c2 c3 ... c1 c2 c3; the slow peers fewer times (REP_CAP), so
        # that a scenario stays under 3 minutes; fairque and FIFO, compared closely, every time
        for rep in range(reps):
            for make in factories:
                c = make()
                if rep >= REP_CAP.get(c.name, reps):
                    c.close()
                    continue
                steps, tenants = steps_fn()
                started = perf()
                try:
                    run = self.b.run(c, steps, tenants)
                except Exception as exc:  # one contender failing must not hide the others
                    self.b.out(f"    [{scenario}.{rep + 1}] {c.name:<14} FAILED: {type(exc).__name__}: {exc}")
                    continue
                a = analyse(run, time_jain=scenario == 2)
                a["wall_s"] = perf() - started
                raw.setdefault(c.name, []).append(a)
                self.b.out(f"    [{scenario}.{rep + 1}] {c.name:<14} done in {a['wall_s']:5.1f} s: "
                           f"light p99 {fmt(a.get('light_wait_ms', {}).get('p99'), '.0f')} ms, "
                           f"makespan {fmt(a.get('makespan_s'), '.2f')} s, task run {a['run_ms_mean']:.2f} ms + "
                           f"gap {a['gap_ms']['mean']:.2f} ms (mean)"
                           + (f", worker CPU {a['worker_cpu_ms_per_task']:.2f} ms/task"
                              if "worker_cpu_ms_per_task" in a else "")
                           + f", workers {a['per_worker']}"
                           + (f"  PROBLEMS: {run.problems}" if run.problems else ""))
                if scenario == 1 and c.name in ("fairque", "fifo"):
                    candidates.setdefault(c.name, []).append(run)
        for name, runs in raw.items():
            summary[name] = summarise(runs)
            summary[name]["runs"] = runs
        for name, runs_ in candidates.items():
            # the plot shows the repetition with the median makespan
            ordered = sorted(runs_, key=lambda r: max(x.end for x in r.recs) - r.t0 if r.recs else 0.0)
            self.plot_runs[name] = ordered[len(ordered) // 2]
        return summary

    # ------------------------------------------------------------------ scenario 1
    def s1(self) -> None:
        sz, out = self.sizes["s1"], self.b.out
        out(f"\n== Scenario 1: noisy neighbour -- heavy enqueues {sz['heavy']:,} x {sz['heavy_ms']:g} ms, then "
            f"{sz['light_tenants']} light tenants x {sz['light_each']} x {sz['light_ms']:g} ms; 2 workers; "
            f"{sz['reps']} rep(s), medians")
        res = self.run_contenders(1, sz)
        out("")
        self.table([res[k] for k in res])
        self.overhead(res)
        fq, fifo = res.get("fairque"), res.get("fifo")
        peers = [res[k]["light_wait_ms"]["p99"] for k in ("rq", "celery") if k in res]
        checks: dict[str, Any] = {}
        if fq and fifo:
            p99, fifo_p99 = fq["light_wait_ms"]["p99"], fifo["light_wait_ms"]["p99"]
            checks["light_p99_vs_fifo"] = self.check(
                "scenario 1 light p99 wait, fairque / FIFO", p99 / fifo_p99, TARGETS["s1_light_p99_vs_fifo"], "<=",
                detail=f"{p99:.1f} ms / {fifo_p99:.1f} ms")
            if peers:
                best = min(peers)
                checks["light_p99_vs_best_peer"] = self.check(
                    "scenario 1 light p99 wait, fairque vs best of RQ round-robin / Celery", p99, best, "<=", "ms")
            j = fq["jain_count"]
            checks["jain"] = self.check("scenario 1 contention Jain index (mean)", j["mean"], TARGETS["s1_jain"],
                                        ">=", detail=f"min {j['min']:.3f} over {j['windows']:.0f} windows")
            ms, fms = fq["makespan_s"], fifo["makespan_s"]
            checks["makespan_vs_fifo"] = self.check(
                "scenario 1 makespan, fairque / FIFO", ms / fms, TARGETS["s1_makespan_vs_fifo"], "<=",
                detail=f"{ms:.3f} s / {fms:.3f} s")
        self.results["scenario_1"] = {"sizes": sz, "contenders": res, "checks": checks}

    # ------------------------------------------------------------------ scenario 2
    def s2(self) -> None:
        sz = self.sizes["s2"]
        out = self.b.out
        out(f"\n== Scenario 2: expensive neighbour -- heavy {sz['heavy']:,} x {sz['heavy_ms']:g} ms, "
            f"{sz['light_tenants']} light tenants x {sz['light_each']} x {sz['light_ms']:g} ms; 2 workers")
        res = self.run_contenders(2, sz)
        out("")
        self.table([res[k] for k in res], time_jain=True)
        self.overhead(res)
        n = sz["light_tenants"] + 1
        count_fair = sz["heavy_ms"] / (sz["heavy_ms"] + sz["light_tenants"] * sz["light_ms"])
        out(f"  heavy time% = heavy's share of worker time while light tenants had work; time-fair "
            f"{100 / n:.1f}%, count-fair {100 * count_fair:.1f}%")
        ct, tt = res.get("fairque-count"), res.get("fairque-time")
        if ct and tt:
            out(f"  fairness \"time\" vs \"count\": light p99 {tt['light_wait_ms']['p99']:.0f} vs "
                f"{ct['light_wait_ms']['p99']:.0f} ms, heavy time share {100 * tt['heavy_time_share']:.1f}% vs "
                f"{100 * ct['heavy_time_share']:.1f}% (time-fair target {100 / n:.1f}%)")
        self.results["scenario_2"] = {"sizes": sz, "contenders": res}

    # ------------------------------------------------------------------ scenario 3
    def s3(self) -> None:
        sz = self.sizes["s3"]
        out = self.b.out
        out(f"\n== Scenario 3: critical flood -- 'flood' enqueues {sz['flood']:,} CRITICAL tasks, then "
            f"{sz['others']} tenants x {sz['each']} normal tasks; {sz['ms']:g} ms each; 2 workers")
        res: dict[str, Any] = {}
        for make in (lambda: fq_shared(self.url), lambda: Fifo(self.url)):
            c = make()
            run = self.b.run(c, *flood_steps(sz))
            a = analyse(run)
            res[c.name] = a
            ow, fw = a.get("light_wait_ms", {}), a.get("heavy_wait_ms", {})
            out(f"  {c.name:<10} other tenants' wait ms p50/p95/max {fmt(ow.get('p50'), '.1f')}/"
                f"{fmt(ow.get('p95'), '.1f')}/{fmt(ow.get('max'), '.1f')}  (n={ow.get('n', 0)}); flood p50 "
                f"{fmt(fw.get('p50'), '.0f')} ms; others done {fmt(a.get('light_done_after_arrival_s'), '.3f')} s "
                f"after their first enqueue; makespan {fmt(a.get('makespan_s'), '.2f')} s"
                + (f"  PROBLEMS: {run.problems}" if run.problems else ""))
        fq = res.get("fairque")
        checks: dict[str, Any] = {}
        if fq and fq.get("light_wait_ms"):
            missing = sz["others"] * sz["each"] - fq["light_wait_ms"]["n"]
            checks["others_done_before_flood"] = self.check(
                "scenario 3 other tenants' last task done / flood's last task done", fq["light_done_s"] /
                fq["makespan_s"], 1.0, "<", detail=f"{missing} other-tenant task(s) missing" if missing else "")
        self.results["scenario_3"] = {"sizes": sz, "contenders": res, "checks": checks}

    # ------------------------------------------------------------------ scenario 4
    def s4(self) -> None:
        sz = self.sizes["s4"]
        out = self.b.out
        out(f"\n== Scenario 4: disjoint assignment + stealing -- {sz['tasks']:,} tasks x {sz['ms']:g} ms over "
            f"a:1..a:{sz['tenants']}; w1 assigned a:* (steals b:*), w2 assigned b:* (steals a:*) vs shared "
            f"pool; {sz['reps']} interleaved rep(s), medians")
        u = self.url
        makers = {
            "shared": lambda: fq_shared(u, name="fq-shared"),
            "disjoint": lambda: FairqueTenants(u, "fq-disjoint", [
                {"id": "fq-w1", "assigned_users": ["a:*"], "steal_targets": ["b:*"]},
                {"id": "fq-w2", "assigned_users": ["b:*"], "steal_targets": ["a:*"]}], config_dir=PROCS.logdir),
        }
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rep in range(sz["reps"]):
            for key, make in makers.items():
                tenants = [f"a:{k + 1}" for k in range(sz["tenants"])]
                per = sz["tasks"] // sz["tenants"]
                jobs = [Job(t, i, sz["ms"]) for t in tenants for i in range(per)]
                run = self.b.run(make(), [Step("a", jobs, True)], tenants)
                a = analyse(run)
                total = sum(a["per_worker"].values()) or 1
                a["worker_share"] = {w: c / total for w, c in a["per_worker"].items()}
                firsts = defaultdict(lambda: math.inf)
                for r in run.recs:
                    firsts[r.worker] = min(firsts[r.worker], r.start)
                a["first_start_ms"] = {w: (t - run.t0) * 1000 for w, t in sorted(firsts.items())}
                runs[key].append(a)
                shares = ", ".join(f"{w} {100 * s:.1f}%" for w, s in a["worker_share"].items())
                out(f"    [4.{rep + 1}] {key:<8} makespan {fmt(a.get('makespan_s'), '.3f')} s; shares {shares}; "
                    f"first task at {', '.join(f'{w} {t:.1f} ms' for w, t in a['first_start_ms'].items())}"
                    + (f"  PROBLEMS: {run.problems}" if run.problems else ""))
        med = {k: median_of(v, ("makespan_s",)) for k, v in runs.items()}
        share = {k: {w: statistics.median([r["worker_share"].get(w, 0.0) for r in v])
                     for w in ("fq-w1", "fq-w2")} for k, v in runs.items()}
        ratio = med["disjoint"] / med["shared"]
        out("")
        for k in ("shared", "disjoint"):
            out(f"  {k:<8} makespan {med[k]:.3f} s (median); task share w1 {100 * share[k]['fq-w1']:.1f}% / "
                f"w2 {100 * share[k]['fq-w2']:.1f}%")
        check = self.check("scenario 4 makespan, disjoint + stealing / shared pool", ratio, TARGETS["s4_makespan"],
                           "<=", detail=f"{med['disjoint']:.3f} s / {med['shared']:.3f} s")
        self.results["scenario_4"] = {"sizes": sz, "runs": runs, "makespan_median_s": med, "worker_share": share,
                                      "checks": {"makespan_vs_shared": check}}


def _available() -> dict[str, bool]:
    have = {}
    for mod in ("rq", "celery", "matplotlib"):
        try:
            __import__(mod)
            have[mod] = True
        except ImportError:
            have[mod] = False
    return have


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=os.environ.get("FAIRQUE_FAIRNESS_REDIS_URL") or DEFAULT_URL,
                    help=f"Redis database to use; flushed before and after each run (default {DEFAULT_URL})")
    ap.add_argument("--quick", action="store_true", help="smaller scenarios, one repetition")
    ap.add_argument("--only", default="1,2,3,4", help="comma-separated scenarios to run (default 1,2,3,4)")
    ap.add_argument("--no-plots", action="store_true", help="do not write the plots")
    ap.add_argument("--plots", action="store_true", help="write the plots in --quick mode too")
    ap.add_argument("--rq-fork", action="store_true",
                    help="run RQ's default forking Worker (~80 ms per job here) instead of SimpleWorker")
    ap.add_argument("--output", type=Path, default=None, help="JSON results path")
    args = ap.parse_args(argv)
    have = _available()
    only = {int(x) for x in args.only.replace(" ", "").split(",") if x}
    output = args.output or RESULTS_DIR / ("fairness_quick.json" if args.quick else "fairness.json")
    install_signal_handlers()
    started = perf()
    os.environ["BENCH_REDIS_URL"] = args.redis_url  # read by the peer apps at import

    bench = Bench(args.redis_url)
    bench.r.ping()
    info = bench.r.info("server")
    sizes = QUICK if args.quick else FULL
    meta = run_meta(args.redis_url, mode="quick" if args.quick else "full", only=sorted(only), sizes=sizes,
                    redis_version=info.get("redis_version"), window_ms=WINDOW_S * 1000,
                    window_step_ms=WINDOW_STEP_S * 1000, rq_worker_class="Worker (forking)" if args.rq_fork
                    else "SimpleWorker", peers={})
    for mod in ("rq", "celery", "kombu"):
        try:
            meta["peers"][mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            meta["peers"][mod] = None
    load = meta.get("load_avg")
    bench.out(f"fairness benchmark ({meta['mode']}): Redis {meta['redis_version']} at {redact(args.redis_url)}, "
              f"Python {meta['python']}, {meta['cpus']} CPUs"
              + (f" (load average {load[0]:.1f})" if load else "")
              + f", rq {meta['peers']['rq']}, celery {meta['peers']['celery']}; worker logs in {PROCS.logdir}")
    for missing in (m for m in ("rq", "celery") if not have[m]):
        bench.out(f"  ({missing} is not installed here: skipped; run with {PEERS_PY})")
    scen = Scenarios(bench, args.redis_url, sizes, have)
    scen.rq_fork = args.rq_fork
    results: dict[str, Any] = {"meta": meta}
    try:
        for n, fn in ((1, scen.s1), (2, scen.s2), (3, scen.s3), (4, scen.s4)):
            if n in only:
                t = perf()
                try:
                    fn()
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one broken scenario must not hide the others
                    import traceback

                    traceback.print_exc()
                    bench.out(f"  scenario {n} aborted: {type(exc).__name__}: {exc}")
                    scen.results[f"scenario_{n}"] = {"error": f"{type(exc).__name__}: {exc}"}
                bench.out(f"  (scenario {n}: {perf() - t:.0f} s)")
        if not args.no_plots and (args.plots or not args.quick) and 1 in only:
            written = fairness_plots(scen.plot_runs, scen.results, bench.out)
            for p in written:
                bench.out(f"plot written to {p}")
    finally:
        PROCS.stop_all()
        with contextlib.suppress(Exception):
            bench.flush()
    results.update(scen.results)
    meta["elapsed_s"] = perf() - started
    bench.out(f"\ntotal {meta['elapsed_s']:.0f} s")
    results["printed"] = bench.lines
    write_json(output, results)
    print(f"results written to {output}")
    return 0


def cli() -> None:
    """The command line: report, never fail the build."""
    runner_cli(main)
