#!/usr/bin/env python
"""Fairness benchmark: how long light tenants wait next to a noisy one, on four queues.

Contenders, all on the same Redis database, each with two worker processes that run one task
at a time (worker code in ``benchmarks/fairness_workers/``):

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
``fb:rec``).  The enqueue time is taken just before the enqueue call (for a batch: before the
batch call), so a wait includes the enqueue itself.  Workers are started and idle before the
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
default (``--redis-url``); it is flushed before and after every run (that database only).
Results: ``benchmarks/results/fairness.json`` (``fairness_quick.json`` with --quick); plots
(full runs, or --plots): ``docs/images/fairness_noisy_neighbour.png`` and
``docs/images/fairness_light_wait.png``.  Exit code 0 whatever the results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
if (__name__ == "__main__" and PEERS_PY.exists() and Path(sys.prefix).resolve() != PEERS_PY.parent.parent.resolve()
        and not os.environ.get("FB_NO_REEXEC")):
    # the peers (RQ, Celery, matplotlib) live in the benchmarks' own virtualenv
    print(f"re-running with the peers' virtualenv {PEERS_PY}", flush=True)
    os.environ["FB_NO_REEXEC"] = "1"
    os.execv(str(PEERS_PY), [str(PEERS_PY), str(Path(__file__).resolve()), *sys.argv[1:]])

from benchmarks.bench_common import (  # noqa: E402 - needs the sys.path set-up above
    Proc,
    Processes,
    flush_db,
    install_signal_handlers,
    percentile,
    redact,
    run_meta,
    write_json,
)
from benchmarks.bench_common import verdict as common_verdict  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/7"
RESULTS_DIR = HERE / "results"
IMAGES = ROOT / "docs" / "images"
PREFIX = "fqfair"
FIFO_KEY = "fb:fifo"
WINDOW_S = 0.100
WINDOW_STEP_S = 0.010
RUN_TIMEOUT_S = 170.0

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
TARGETS = {"s1_light_p99_vs_fifo": 0.05, "s1_jain": 0.95, "s1_makespan_vs_fifo": 1.10, "s4_makespan": 1.10}

perf = time.perf_counter

# =========================================================================== processes


class Procs:
    """The worker processes of the current run, on top of ``bench_common.Processes``: every
    child leads its own process group, so stopping it also stops what it forked (RQ's work
    horses); everything is stopped after each run, at exit and on SIGTERM/SIGINT."""

    def __init__(self) -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix="fairness-bench-"))  # kept for post-mortems
        self.group = Processes(log_dir=self.logdir)

    @property
    def procs(self) -> list[Proc]:
        return list(self.group.procs)

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        return self.group.start(name, cmd, env=env)

    def dead(self) -> list[Proc]:
        return [p for p in self.group.procs if not p.alive()]

    def cpu(self) -> dict[str, float]:
        return {p.name: p.cpu_seconds() for p in self.group.procs}

    def stop_all(self, grace: float = 8.0) -> None:
        procs = self.procs
        for p in procs:  # SIGTERM them all first, so they drain in parallel
            if p.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)  # the group this child leads
        deadline = time.monotonic() + grace
        for p in procs:
            self.group.stop(p, timeout=max(0.1, deadline - time.monotonic()))


PROCS = Procs()


# =========================================================================== statistics

def wait_stats(waits_ms: list[float]) -> dict[str, float]:
    return {"n": len(waits_ms), "p50": percentile(waits_ms, 50), "p95": percentile(waits_ms, 95),
            "p99": percentile(waits_ms, 99), "max": max(waits_ms) if waits_ms else float("nan")}


def jain(xs: list[float]) -> float:
    s2 = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * s2) if s2 > 0 else 1.0


def water_fill(caps: list[float], total: float) -> list[float]:
    """Max-min fair split of ``total`` among claimants capped at ``caps``."""
    order = sorted(range(len(caps)), key=lambda i: caps[i])
    out = [0.0] * len(caps)
    remaining = total
    for k, i in enumerate(order):
        share = remaining / (len(caps) - k)
        take = min(caps[i], share)
        out[i] = take
        remaining -= take
    return out


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


def median_of(runs: list[dict[str, Any]], path: tuple[str, ...]) -> float:
    vals = []
    for run in runs:
        v: Any = run
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and not math.isnan(v):
            vals.append(float(v))
    return statistics.median(vals) if vals else float("nan")


# =========================================================================== jobs

@dataclass(slots=True)
class Job:
    tenant: str
    idx: int
    sleep_ms: float
    priority: int = 3
    t_enq: float = 0.0

    @property
    def queue_name(self) -> str:  # RQ / Celery queue of the tenant
        return self.tenant.replace(":", "-")


@dataclass(slots=True)
class Step:
    """Jobs enqueued either in one batch call or one call per job."""

    label: str
    jobs: list[Job]
    batch: bool


# =========================================================================== contenders

class Contender:
    name = "?"
    workers = 2

    def __init__(self, url: str) -> None:
        self.url = url

    def env(self, label: str) -> dict[str, str]:
        """Added to the worker's environment (bench_common adds PYTHONPATH for the repo)."""
        return {"FB_REDIS_URL": self.url, "FB_WORKER": label}

    def start(self, tenants: list[str]) -> None:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Open connections / load scripts before t0 (not measured)."""

    def enqueue_batch(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.enqueue_one(job)

    def enqueue_one(self, job: Job) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FairqueContender(Contender):
    def __init__(self, url: str, name: str, workers_cfg: list[dict[str, Any]],
                 fairness: str = "count") -> None:
        super().__init__(url)
        from fairque_django.core.config import FairQueueConfig
        from fairque_django.core.connection import get_client, reset_clients
        from fairque_django.core.queue import TaskQueue

        self.name = name
        self.data = {
            "redis": {"url": url},
            "workers": [{"max_concurrent_tasks": 1, **w} for w in workers_cfg],
            "queue": {"stats_prefix": PREFIX, "fairness": fairness, "default_max_retries": 0},
        }
        self.worker_ids = [w["id"] for w in workers_cfg]
        self.workers = len(workers_cfg)
        config = FairQueueConfig.from_dict(self.data)
        reset_clients()
        self.queue = TaskQueue(config, get_client(config.redis))
        from benchmarks.fairness_workers.tasks import fq_work

        self.fn = fq_work

    def start(self, tenants: list[str]) -> None:
        path = PROCS.logdir / f"{self.name}.config.json"
        path.write_text(json.dumps(self.data), "utf-8")
        for wid in self.worker_ids:
            PROCS.start(f"{self.name}-{wid}",
                        [sys.executable, "-m", "benchmarks.fairness_workers.fairque_worker", wid, str(path)],
                        self.env(wid))

    def warm_up(self) -> None:
        self.queue.client.script_load(self.queue.scripts.push.script)

    def _task(self, job: Job) -> Any:
        return self.fn.create_task((job.tenant, job.idx, job.t_enq, job.sleep_ms), user_id=job.tenant,
                                   priority=job.priority)

    def enqueue_batch(self, jobs: list[Job]) -> None:
        self.queue.push_batch([self._task(j) for j in jobs])

    def enqueue_one(self, job: Job) -> None:
        self.queue.push(self._task(job))


class FifoContender(Contender):
    name = "fifo"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import redis

        self.r = redis.Redis.from_url(url)

    def start(self, tenants: list[str]) -> None:
        for i in range(self.workers):
            PROCS.start(f"fifo-w{i + 1}", [sys.executable, "-m", "benchmarks.fairness_workers.fifo_worker", FIFO_KEY],
                        self.env(f"fifo-w{i + 1}"))

    def warm_up(self) -> None:
        self.r.ping()

    @staticmethod
    def _body(job: Job) -> str:
        return json.dumps({"tenant": job.tenant, "idx": job.idx, "t_enq": job.t_enq, "sleep_ms": job.sleep_ms})

    def enqueue_batch(self, jobs: list[Job]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for job in jobs:
            pipe.lpush(FIFO_KEY, self._body(job))
        pipe.execute()

    def enqueue_one(self, job: Job) -> None:
        self.r.lpush(FIFO_KEY, self._body(job))


class RQContender(Contender):
    name = "rq"

    def __init__(self, url: str, fork: bool = False) -> None:
        super().__init__(url)
        self.fork = fork
        if fork:
            self.name = "rq-fork"
        import redis
        from rq import Queue

        from benchmarks.fairness_workers.rq_tasks import rq_work

        self.r = redis.Redis.from_url(url)
        self.Queue = Queue
        self.fn = rq_work
        self.queues: dict[str, Any] = {}

    def q(self, name: str) -> Any:
        if name not in self.queues:
            self.queues[name] = self.Queue(name, connection=self.r)
        return self.queues[name]

    def start(self, tenants: list[str]) -> None:
        names = [t.replace(":", "-") for t in tenants]
        for i in range(self.workers):
            label = f"rq-w{i + 1}"
            extra = [] if self.fork else ["--worker-class", "rq.worker.SimpleWorker"]
            PROCS.start(label, [sys.executable, "-m", "rq.cli", "worker", *names, "-u", self.url,
                                "--dequeue-strategy", "round_robin", "--logging_level", "WARNING", *extra,
                                "-n", f"{label}-{os.getpid()}-{int(time.time() * 1000)}"],
                        self.env(label))

    def ready(self) -> int:
        return int(self.r.scard("rq:workers"))

    def warm_up(self) -> None:
        self.r.ping()

    def enqueue_batch(self, jobs: list[Job]) -> None:
        by_queue: dict[str, list[Any]] = defaultdict(list)
        for j in jobs:
            by_queue[j.queue_name].append(
                self.Queue.prepare_data(self.fn, args=(j.tenant, j.idx, j.t_enq, j.sleep_ms)))
        for name, datas in by_queue.items():
            self.q(name).enqueue_many(datas)

    def enqueue_one(self, job: Job) -> None:
        self.q(job.queue_name).enqueue(self.fn, job.tenant, job.idx, job.t_enq, job.sleep_ms)


class CeleryContender(Contender):
    name = "celery"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        os.environ["FB_REDIS_URL"] = url  # read when the app module is imported
        from benchmarks.fairness_workers.celery_app import app, celery_work

        self.app = app
        self.fn = celery_work

    def start(self, tenants: list[str]) -> None:
        names = ",".join(t.replace(":", "-") for t in tenants)
        for i in range(self.workers):
            label = f"celery-w{i + 1}"
            PROCS.start(label, [sys.executable, "-m", "celery", "-A", "benchmarks.fairness_workers.celery_app",
                                "worker", "--pool=solo", "-Q", names, "-n", f"{label}@%h",
                                "--loglevel=WARNING"],
                        self.env(label))

    def warm_up(self) -> None:
        # opens the producer connection and declares the routing of a queue nobody consumes
        self.fn.apply_async(args=("warmup", 0, 0.0, 0.0), queue="fb-warmup")

    def enqueue_one(self, job: Job) -> None:
        self.fn.apply_async(args=(job.tenant, job.idx, job.t_enq, job.sleep_ms), queue=job.queue_name)



def fq_shared(url: str, fairness: str = "count", name: str = "fairque") -> FairqueContender:
    return FairqueContender(url, name, [{"id": "fq-w1", "steal_targets": ["*"]},
                                        {"id": "fq-w2", "steal_targets": ["*"]}], fairness)


# =========================================================================== runner

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
        from benchmarks.fairness_workers.common import READY, RECORDS

        expected = sum(len(s.jobs) for s in steps)
        self.flush()
        problems: list[str] = []
        try:
            contender.start(tenants)
            deadline = time.monotonic() + 60
            while True:
                n = contender.ready() if isinstance(contender, RQContender) else int(self.r.scard(READY))
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


# =========================================================================== analysis

def light_group(tenant: str) -> str:
    return "heavy" if tenant in ("heavy", "flood") else "light"


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
    # queue overhead per task: on each worker, the gap between one task's end and its next start
    gaps: list[float] = []
    by_worker: dict[str, list[Rec]] = defaultdict(list)
    for r in recs:
        by_worker[r.worker].append(r)
    for rs in by_worker.values():
        rs.sort(key=lambda r: r.start)
        gaps += [(b.start - a.end) * 1000 for a, b in itertools.pairwise(rs) if b.t_enq <= a.end]
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


# =========================================================================== scenarios

def noisy_steps(sz: dict[str, Any]) -> tuple[list[Step], list[str]]:
    heavy = [Job("heavy", i, sz["heavy_ms"]) for i in range(sz["heavy"])]
    lights = [f"light:{t + 1}" for t in range(sz["light_tenants"])]
    light_jobs = [Job(t, i, sz["light_ms"]) for t in lights for i in range(sz["light_each"])]
    return [Step("heavy", heavy, True), Step("light", light_jobs, False)], ["heavy", *lights]


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
        """``name: value vs target PASS/MISS`` (bench_common's format), printed and kept."""
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
        out.append(lambda: FifoContender(u))
        if self.have["rq"]:
            out.append(lambda: RQContender(u, fork=self.rq_fork))
        if self.have["celery"]:
            out.append(lambda: CeleryContender(u))
        if scenario == 1:
            out.append(lambda: FairqueContender(u, "fairque-split", [
                {"id": "fq-w1", "assigned_users": ["heavy"], "steal_targets": ["light:*"]},
                {"id": "fq-w2", "assigned_users": ["light:*"], "steal_targets": ["heavy"]}]))
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
        sz = self.sizes["s1"]
        out = self.b.out
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
        for make in (lambda: fq_shared(self.url), lambda: FifoContender(self.url)):
            c = make()
            flood = [Job("flood", i, sz["ms"], priority=6) for i in range(sz["flood"])]
            others = [f"t:{k + 1}" for k in range(sz["others"])]
            ojobs = [Job(t, i, sz["ms"]) for t in others for i in range(sz["each"])]
            run = self.b.run(c, [Step("flood", flood, True), Step("light", ojobs, False)], ["flood", *others])
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
            "shared": lambda: FairqueContender(u, "fq-shared", [{"id": "fq-w1", "steal_targets": ["*"]},
                                                                {"id": "fq-w2", "steal_targets": ["*"]}]),
            "disjoint": lambda: FairqueContender(u, "fq-disjoint", [
                {"id": "fq-w1", "assigned_users": ["a:*"], "steal_targets": ["b:*"]},
                {"id": "fq-w2", "assigned_users": ["b:*"], "steal_targets": ["a:*"]}]),
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


# =========================================================================== plots

DISPLAY = {
    "fairque": "fairque_django", "fairque-count": "fairque_django\n(count)",
    "fairque-time": "fairque_django\n(fairness=time)",
    "fairque-split": "fairque_django\n(split workers)", "fifo": "FIFO list", "rq": "RQ round_robin\n(SimpleWorker)",
    "rq-fork": "RQ round_robin\n(forking)", "celery": "Celery\nqueue/tenant",
}
COLOURS = {"fairque": "#2ca02c", "fairque-count": "#2ca02c", "fairque-time": "#98df8a", "fairque-split": "#bcbd22",
           "fifo": "#7f7f7f", "rq": "#d62728", "rq-fork": "#ff9896", "celery": "#9467bd"}


def plot(scen: Scenarios, out: Callable[[str], None]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        out("  (matplotlib missing: no plots)")
        return []
    IMAGES.mkdir(parents=True, exist_ok=True)
    written = []
    heavy_c, light_c = "#d62728", "#1f77b4"
    if "fairque" in scen.plot_runs and "fifo" in scen.plot_runs:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), sharex=True, sharey=True)
        xmax = max(max(r.end for r in scen.plot_runs[k].recs) - scen.plot_runs[k].t0 for k in ("fifo", "fairque"))
        for ax, key, title in ((axes[0], "fifo", "Plain FIFO: one Redis list for everybody"),
                               (axes[1], "fairque", "fairque_django: round-robin across tenants")):
            run = scen.plot_runs[key]
            by: dict[str, list[float]] = defaultdict(list)
            for r in run.recs:
                by[r.tenant].append(r.end - run.t0)
            t_light = run.marks.get("light", run.t0) - run.t0
            end = max(r.end for r in run.recs) - run.t0
            for tenant, ends in sorted(by.items(), key=lambda kv: kv[0] == "heavy"):
                ends.sort()
                xs = [0.0, *ends]
                ys = [0.0, *[100.0 * (i + 1) / len(ends) for i in range(len(ends))]]
                is_heavy = tenant == "heavy"
                ax.step(xs, ys, where="post", color=heavy_c if is_heavy else light_c,
                        lw=3 if is_heavy else 1.1, alpha=1.0 if is_heavy else 0.6, zorder=3 if is_heavy else 2)
            ax.axvline(t_light, color="grey", ls=":", lw=1)
            ax.annotate("light tenants enqueue", xy=(t_light, 104), xytext=(t_light + 0.03 * end, 104),
                        color="grey", fontsize=9, va="center")
            light = [r for r in run.recs if r.tenant != "heavy"]
            done = max(r.end for r in light) - run.t0
            p99 = percentile([r.wait_ms for r in light], 99)
            early = done < 0.5 * xmax  # text right of the light block, else left of it below the heavy line
            ax.annotate(f"all light tenants done at {done:.2f} s\nlight p99 wait {p99:,.0f} ms",
                        xy=(done, 100), xytext=(done + 0.08 * xmax, 62) if early else (done - 0.05 * xmax, 12),
                        ha="left" if early else "right",
                        arrowprops={"arrowstyle": "->", "color": light_c}, color=light_c, fontsize=10)
            ax.set_title(f"{title}\nmakespan {end:.2f} s", fontsize=11)
            ax.set_xlabel("seconds since the first enqueue")
            ax.set_ylim(-3, 110)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("tasks served so far (% of the tenant's own tasks)")
        n_heavy = sum(1 for r in scen.plot_runs["fifo"].recs if r.tenant == "heavy")
        n_light_t = len({r.tenant for r in scen.plot_runs["fifo"].recs if r.tenant != "heavy"})
        n_light = len(scen.plot_runs["fifo"].recs) - n_heavy
        handles = [Line2D([], [], color=heavy_c, lw=3, label=f"heavy tenant ({n_heavy:,} tasks)"),
                   Line2D([], [], color=light_c, lw=1.1,
                          label=f"{n_light_t} light tenants ({n_light // max(1, n_light_t)} tasks each)")]
        axes[1].legend(handles=handles, loc="lower right")
        fig.suptitle("Noisy neighbour: cumulative tasks served per tenant (2 workers, 1 ms tasks)", fontsize=13)
        fig.tight_layout()
        path = IMAGES / "fairness_noisy_neighbour.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    panels = [(sc, label) for sc, label in (("scenario_1", "1. noisy neighbour (all tasks 1 ms)"),
                                            ("scenario_2", "2. expensive neighbour (heavy 10 ms, light 1 ms)"))
              if scen.results.get(sc, {}).get("contenders")]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.4), sharey=True, squeeze=False)
        lo, hi = math.inf, 0.0
        for ax, (sc, label) in zip(axes[0], panels, strict=True):
            rows = [(n, r["light_wait_ms"]["p99"]) for n, r in scen.results[sc]["contenders"].items()
                    if not math.isnan(r.get("light_wait_ms", {}).get("p99", math.nan))]
            for i, (name, v) in enumerate(rows):
                ax.bar(i, v, 0.7, color=COLOURS.get(name, "#17becf"))
                ax.text(i, v * 1.1, f"{v:,.0f} ms", ha="center", va="bottom", fontsize=9,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                lo, hi = min(lo, v), max(hi, v)
            ax.set_xticks(range(len(rows)), [DISPLAY.get(n, n) for n, _ in rows], fontsize=9)
            fifo = scen.results[sc]["contenders"].get("fifo", {}).get("light_wait_ms", {}).get("p99")
            if sc == "scenario_1" and fifo:
                target = fifo * TARGETS["s1_light_p99_vs_fifo"]
                ax.axhline(target, color="#2ca02c", ls="--", lw=1.2, zorder=0)
                ax.legend(handles=[Line2D([], [], color="#2ca02c", ls="--", lw=1.2,
                                          label=f"target for fairque_django: 5% of FIFO ({target:,.0f} ms)")],
                          loc="upper right", fontsize=9)
                lo = min(lo, target)
            ax.set_title(label, fontsize=11)
            ax.grid(axis="y", alpha=0.3, which="both")
        axes[0][0].set_yscale("log")
        axes[0][0].set_ylim(lo / 3, hi * 4)
        axes[0][0].set_ylabel("light tenants' p99 wait, enqueue -> start (ms, log scale)")
        fig.suptitle("How long light tenants wait next to a noisy tenant (p99, lower is better; 2 workers each)",
                     fontsize=12)
        fig.tight_layout()
        path = IMAGES / "fairness_light_wait.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


# =========================================================================== main

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
    ap.add_argument("--redis-url", default=os.environ.get("FAIRQUE_FAIRNESS_REDIS_URL", DEFAULT_URL),
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
            written = plot(scen, bench.out)
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


if __name__ == "__main__":
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
    sys.exit(0)
