"""The fairness benchmark's runner (see :mod:`.fairness`): one run of one contender (start its two
workers, enqueue the steps, collect the task records), and the analysis of a run (waits, makespan,
the windowed Jain index, worker time shares, per-task overhead). The noisy-neighbour scenario
(its steps, fairque's two workers that serve every tenant) and the command line wrapper are here
too: :mod:`.cluster` runs the same scenario on a Redis Cluster."""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.contenders.base import Contender, Job, Step
from benchmarks.contenders.bodies import READY, RECORDS
from benchmarks.contenders.fairque_app import FairqueTenants
from benchmarks.harness.procs import Proc, Processes
from benchmarks.harness.server import flush_db
from benchmarks.harness.stats import jain, median_of, percentile, water_fill

WINDOW_S = 0.100
WINDOW_STEP_S = 0.010
RUN_TIMEOUT_S = 170.0


class Procs:
    """The worker processes of the current run (the harness's launcher); their logs are kept in
    :attr:`logdir` for post-mortems."""

    def __init__(self) -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix="fairness-bench-"))
        self.group = Processes(log_dir=self.logdir)

    def dead(self) -> list[Proc]:
        return self.group.dead()

    def cpu(self) -> dict[str, float]:
        return self.group.cpu()

    def stop_all(self, grace: float = 8.0) -> None:
        self.group.stop_all(grace)


PROCS = Procs()


def cli(main: Callable[[], object]) -> None:
    """The command line of a benchmark whose workers run under :data:`PROCS`: report, never fail
    the build (an error is printed), and the workers are always stopped."""
    try:
        main()
    except SystemExit:  # --help, or a bad option (argparse has said why)
        raise
    except BaseException as exc:  # report, never fail the build
        import traceback

        traceback.print_exc()
        print(f"benchmark aborted: {exc!r}", file=sys.stderr)
    finally:
        PROCS.stop_all(2.0)


def noisy_steps(sz: dict[str, Any]) -> tuple[list[Step], list[str]]:
    """The noisy neighbour of sizes ``sz``: ``heavy`` tasks of ``heavy_ms`` in one batch, then
    ``light_tenants`` tenants' ``light_each`` tasks of ``light_ms``, one push each; and the tenants.
    New Job objects every call (a run stamps their enqueue times)."""
    heavy = [Job("heavy", i, sz["heavy_ms"]) for i in range(sz["heavy"])]
    lights = [f"light:{t + 1}" for t in range(sz["light_tenants"])]
    light_jobs = [Job(t, i, sz["light_ms"]) for t in lights for i in range(sz["light_each"])]
    return [Step("heavy", heavy, True), Step("light", light_jobs, False)], ["heavy", *lights]


Steps = tuple[list[Step], list[str]]


def flood_steps(sz: dict[str, Any]) -> Steps:
    """The critical flood of sizes ``sz``: ``flood`` CRITICAL (6) tasks of ``ms`` in one batch, then
    ``others`` tenants' ``each`` normal tasks, one push each; and the tenants (new Jobs every call)."""
    flood = [Job("flood", i, sz["ms"], priority=6) for i in range(sz["flood"])]
    others = [f"t:{k + 1}" for k in range(sz["others"])]
    jobs = [Job(t, i, sz["ms"]) for t in others for i in range(sz["each"])]
    return [Step("flood", flood, True), Step("light", jobs, False)], ["flood", *others]


def fq_shared(url: str, fairness: str = "count", name: str = "fairque", **options: Any) -> FairqueTenants:
    """fairque as a SaaS that does not know its noisy tenant runs it: two workers that serve every
    tenant (``steal_targets: ["*"]``, nothing assigned). ``options``: :class:`FairqueTenants`'
    keyword options (``queue_url``, ``shards``, ``prefix``, ``prefetch``)."""
    return FairqueTenants(url, name, [{"id": "fq-w1", "steal_targets": ["*"]},
                                      {"id": "fq-w2", "steal_targets": ["*"]}], fairness, PROCS.logdir, **options)


def wait_stats(waits_ms: list[float]) -> dict[str, float]:
    return {"n": len(waits_ms), "p50": percentile(waits_ms, 50), "p95": percentile(waits_ms, 95),
            "p99": percentile(waits_ms, 99), "max": max(waits_ms) if waits_ms else float("nan")}


@dataclass(slots=True)
class Rec:
    tenant: str
    idx: int
    t_enq: float
    start: float
    end: float
    worker: str

    @property
    def wait_ms(self) -> float:
        return (self.start - self.t_enq) * 1000.0

    @property
    def run(self) -> float:
        return self.end - self.start


def contention_jain(recs: list[Rec], t0: float, unit: str = "count", window: float = WINDOW_S,
                    step: float = WINDOW_STEP_S) -> dict[str, Any]:
    """The windowed, normalised Jain index described in the module docstring.

    Windows are ``window`` long and start every ``step`` (sliding), from t0 to the last end.
    """
    import numpy as np

    nan = {"mean": float("nan"), "min": float("nan"), "windows": 0}
    if not recs:
        return nan
    names = sorted({r.tenant for r in recs})
    index = {n: i for i, n in enumerate(names)}
    tenant = np.array([index[r.tenant] for r in recs])
    enq = np.array([r.t_enq for r in recs])
    start = np.array([r.start for r in recs])
    weight = np.ones(len(recs)) if unit == "count" else np.array([r.run for r in recs])
    end = max(r.end for r in recs)
    values: list[float] = []
    a = t0
    while a < end:
        b = a + window
        waiting = (enq <= a) & (start > a)
        demand = np.bincount(tenant[waiting], weights=weight[waiting], minlength=len(names))
        served_mask = waiting & (start < b)
        served = np.bincount(tenant[served_mask], weights=weight[served_mask], minlength=len(names))
        counted = demand > 0
        total = float(served[counted].sum())
        if int(counted.sum()) >= 2 and total > 0:
            d = [float(x) for x in demand[counted]]
            s_ = [float(x) for x in served[counted]]
            fair = water_fill(d, total)
            xs = [si / fi if fi > 0 else (1.0 if si == 0 else 2.0) for si, fi in zip(s_, fair, strict=True)]
            values.append(jain(xs))
        a += step
    if not values:
        return nan
    return {"mean": statistics.fmean(values), "min": min(values), "windows": len(values)}


def busy_share(recs: list[Rec], lo: float, hi: float, group: Callable[[str], str]) -> dict[str, float]:
    """Worker time per tenant group within [lo, hi], as shares of the total."""
    out: dict[str, float] = defaultdict(float)
    for r in recs:
        overlap = min(r.end, hi) - max(r.start, lo)
        if overlap > 0:
            out[group(r.tenant)] += overlap
    total = sum(out.values()) or 1.0
    return {k: v / total for k, v in sorted(out.items())}


@dataclass
class Run:
    contender: str
    recs: list[Rec]
    t0: float
    marks: dict[str, float]
    expected: int
    enqueue_s: float
    complete: bool
    problems: list[str] = field(default_factory=list)
    worker_cpu_s: dict[str, float] = field(default_factory=dict)  # per worker process, t0 -> end


class Bench:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.r = redis.Redis.from_url(url)
        self.lines: list[str] = []

    def out(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def flush(self) -> None:
        flush_db(self.url)  # FLUSHDB of the benchmark's database only (DB 7 by default; never DB 0)

    def run(self, contender: Contender, steps: list[Step], tenants: list[str]) -> Run:
        expected = sum(len(s.jobs) for s in steps)
        self.flush()
        problems: list[str] = []
        try:
            contender.start(PROCS.group, tenants)
            deadline = time.monotonic() + 60
            while True:
                known = contender.ready()
                n = known if known is not None else int(self.r.scard(READY))
                if n >= contender.workers:
                    break
                if PROCS.dead():
                    raise RuntimeError(f"{contender.name}: a worker exited during start-up (logs in {PROCS.logdir})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{contender.name}: workers not ready after 60 s (logs in {PROCS.logdir})")
                time.sleep(0.05)
            contender.warm_up()
            time.sleep(0.5)  # let every worker reach its blocking wait
            cpu0 = PROCS.cpu()
            marks: dict[str, float] = {}
            t0 = time.time()
            for step in steps:
                now = time.time()
                marks.setdefault(step.label, now)
                if step.batch:
                    for j in step.jobs:
                        j.t_enq = now
                    contender.enqueue_batch(step.jobs)
                else:
                    for j in step.jobs:
                        j.t_enq = time.time()
                        contender.enqueue_one(j)
            enqueue_s = time.time() - t0
            complete = False
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while time.monotonic() < deadline:
                if int(self.r.llen(RECORDS)) >= expected:
                    complete = True
                    break
                if PROCS.dead():
                    problems.append(f"a worker process exited early (logs in {PROCS.logdir})")
                    break
                time.sleep(0.05)
            if not complete and not problems:
                problems.append(f"timed out after {RUN_TIMEOUT_S:.0f} s")
            time.sleep(0.2)  # a redelivered duplicate would show up here
            cpu1 = PROCS.cpu()
            cpu = {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}
        finally:
            PROCS.stop_all()
            contender.close()
        raw = self.r.lrange(RECORDS, 0, -1)
        recs = []
        for line in raw:
            tenant, idx, t_enq, start, end, worker = line.decode().split("\t")
            recs.append(Rec(tenant, int(idx), float(t_enq), float(start), float(end), worker))
        seen = Counter((r.tenant, r.idx) for r in recs)
        dups = sum(c - 1 for c in seen.values() if c > 1)
        if dups:
            problems.append(f"{dups} task(s) ran more than once")
        if len(seen) < expected:
            problems.append(f"{expected - len(seen)} task(s) never ran")
        self.flush()
        return Run(contender.name, recs, t0, marks, expected, enqueue_s, complete, problems, cpu)


def light_group(tenant: str) -> str:
    return "heavy" if tenant in ("heavy", "flood") else "light"


def worker_gaps_ms(recs: list[Rec]) -> list[float]:
    """The queue's overhead per task: on each worker, the gap between one task's end and its next
    start (ms), where the next task was already waiting."""
    gaps: list[float] = []
    by_worker: dict[str, list[Rec]] = defaultdict(list)
    for r in recs:
        by_worker[r.worker].append(r)
    for rs in by_worker.values():
        rs.sort(key=lambda r: r.start)
        gaps += [(b.start - a.end) * 1000 for a, b in itertools.pairwise(rs) if b.t_enq <= a.end]
    return gaps


def analyse(run: Run, *, time_jain: bool = False, light_label: str = "light") -> dict[str, Any]:
    recs = run.recs
    groups: dict[str, list[Rec]] = defaultdict(list)
    for r in recs:
        groups[light_group(r.tenant)].append(r)
    res: dict[str, Any] = {"contender": run.contender, "tasks": len(recs), "expected": run.expected,
                           "complete": run.complete, "problems": run.problems,
                           "enqueue_s": run.enqueue_s}
    for g, rs in sorted(groups.items()):
        res[f"{g}_wait_ms"] = wait_stats([r.wait_ms for r in rs])
    light = groups.get("light", [])
    if recs:
        res["makespan_s"] = max(r.end for r in recs) - run.t0
    if light:
        t_l = run.marks.get(light_label, run.t0)
        last = max(r.end for r in light)
        res["light_done_s"] = last - run.t0
        res["light_done_after_arrival_s"] = last - t_l
        hi = max(r.start for r in light)
        res["heavy_time_share"] = busy_share(recs, t_l, hi, light_group).get("heavy", 0.0)
    res["jain_count"] = contention_jain(recs, run.t0, "count")
    if time_jain:
        res["jain_time"] = contention_jain(recs, run.t0, "time")
    res["per_worker"] = dict(sorted(Counter(r.worker for r in recs).items()))
    gaps = worker_gaps_ms(recs)
    res["gap_ms"] = {"p50": percentile(gaps, 50), "mean": statistics.fmean(gaps) if gaps else float("nan"),
                     "p99": percentile(gaps, 99)}
    res["run_ms_mean"] = statistics.fmean(r.run * 1000 for r in recs) if recs else float("nan")
    if run.worker_cpu_s and recs:
        res["worker_cpu_ms_per_task"] = 1000 * sum(run.worker_cpu_s.values()) / len(recs)
    return res


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repetitions of every figure we print (the runs themselves are kept too)."""
    if len(runs) == 1:
        return {k: v for k, v in runs[0].items()}
    out: dict[str, Any] = {"contender": runs[0]["contender"], "reps": len(runs),
                           "tasks": runs[0]["tasks"], "expected": runs[0]["expected"],
                           "complete": all(r["complete"] for r in runs),
                           "problems": sorted({p for r in runs for p in r["problems"]})}
    for key in ("makespan_s", "light_done_s", "light_done_after_arrival_s", "heavy_time_share", "enqueue_s",
                "run_ms_mean", "worker_cpu_ms_per_task"):
        out[key] = median_of(runs, (key,))
    out["gap_ms"] = {s: median_of(runs, ("gap_ms", s)) for s in ("p50", "mean", "p99")}
    for g in ("light", "heavy"):
        k = f"{g}_wait_ms"
        if k in runs[0]:
            out[k] = {s: median_of(runs, (k, s)) for s in ("n", "p50", "p95", "p99", "max")}
    for k in ("jain_count", "jain_time"):
        if k in runs[0]:
            out[k] = {s: median_of(runs, (k, s)) for s in ("mean", "min", "windows")}
    out["per_worker"] = runs[0]["per_worker"]
    return out
