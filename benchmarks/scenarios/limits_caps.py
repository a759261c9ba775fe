"""Tenant limits, scenario 4: a heavy tenant capped at 2 of 8 slots next to 20 light tenants
(issue 15), run with and without the cap.

One worker process started as users start it, ``python -m django runfairworker bench-dj
--concurrency 8`` (production mode: parked slots, prefetch; not ``--burst``), a fresh one per
run, on the Django project of :mod:`benchmarks.contenders.django_settings`. The producer is
this process, through ``fairque_django.get_queue()``. The cap is a runtime limit
(``set_tenant_limits("heavy", concurrency=2)``); the run without it is the same in every other
respect. Every task is ``bench.work_slot`` (:func:`benchmarks.contenders.bodies.work_body`): it records
its tenant, the enqueue time (taken just before the push call), its start, its end and its slot
(thread).

A run:

1. the worker is started and idle (8 warm-up tasks ran, so every slot has parked once);
2. ``heavy`` enqueues its tasks of 500 ms in one batch: more than 8 slots could finish in the
   run, so heavy work is always ready (with the cap: held at 2 leased);
3. 0.25 s later, phase 1 ("trickle"): the 20 light tenants ``light:1..20`` push tasks of 5 ms
   one call each, Poisson arrivals at ``rate`` per second for ``seconds`` (the same seeded
   schedule in both runs of a round), tenants in turn;
4. 0.3 s after the last push of phase 1, phase 2 ("backlog"): every light tenant pushes
   ``backlog`` tasks of 5 ms at once (one call each), more than 6 slots take at once;
5. once every light task has finished, the worker is stopped (SIGTERM; heavy tasks still queued
   are dropped with the database).

Figures of a run (``t_enq``, ``start``, ``end`` as the tasks recorded them, ``time.time()``):

- light wait = start - t_enq per light task; the phase 1 p99 is the figure of the target
  (with the cap at most 5 % of the run without it);
- ready(t) = number of light tasks with t_enq <= t < start (pushed or being pushed, and not
  started: queued, being handed to a slot, or leased by a busy slot's prefetch);
  busy(t) = number of task bodies running (start <= t < end, any tenant);
  P = the instants of the phase at which ready(t) >= 1 (a union of intervals);
  **slot utilisation = integral of busy(t) over P / (8 x |P|)** (target: at least 95 % with
  the cap, in phase 2, where light work queues up; phase 1 is printed too: there P is mostly
  the few milliseconds between a push and the start of its task on a parked slot);
- slot gaps (phase 2): for each slot, the time from the end of one of its task bodies to the
  start of its next one, when light work was ready at that end (the worker's per-task cost:
  record, acknowledge, lease, hand over; a long one would be a slot idling while work is ready);
- heavy throughput = heavy tasks that ended between the first light push and the last light
  start / that time; heavy slots = the heavy tenant's running bodies, averaged over that time.

Rounds are interleaved (capped first in odd rounds, uncapped first in even ones); every figure
is the median over the rounds, ratios are medians of the same-round pairs.
"""

from __future__ import annotations

import bisect
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from benchmarks.contenders import bodies
from benchmarks.harness.procs import Processes, wait_until
from benchmarks.harness.report import verdict
from benchmarks.harness.stats import median, paired_ratio, summarize

SLOTS = 8
CAP = 2
HEAVY_MS = 500.0
LIGHT_MS = 5.0
LIGHT_TENANTS = 20
P99_TARGET = 0.05
UTIL_TARGET = 0.95
SETTINGS = "benchmarks.contenders.django_settings"
FULL: dict[str, Any] = {"seconds": 8.0, "rate": 100.0, "backlog": 30, "rounds": 3}
QUICK: dict[str, Any] = {"seconds": 2.0, "rate": 100.0, "backlog": 15, "rounds": 1}


@dataclass(frozen=True, slots=True)
class Rec:
    tenant: str
    idx: int
    enq: float
    start: float
    end: float
    slot: str

    @property
    def wait_ms(self) -> float:
        return (self.start - self.enq) * 1000.0


@dataclass
class CapRun:
    capped: bool
    recs: list[Rec]
    t0: float  # the heavy batch's enqueue
    phase2_at: float  # the backlog's first push
    n_trickle: int  # light tasks of phase 1 (idx < n_trickle)
    figures: dict[str, Any] = field(default_factory=dict)


def covered(ready: Iterable[tuple[float, float]], busy: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """(|P|, integral of busy(t) over P): P the instants covered by at least one ``ready``
    interval [a, b), busy(t) how many ``busy`` intervals [a, b) cover t. One sweep."""
    events: list[tuple[float, int, int]] = []
    for a, b in ready:
        if b > a:
            events += [(a, 1, 0), (b, -1, 0)]
    for a, b in busy:
        if b > a:
            events += [(a, 0, 1), (b, 0, -1)]
    events.sort()
    length = area = 0.0
    n_ready = n_busy = 0
    last = events[0][0] if events else 0.0
    for t, d_ready, d_busy in events:
        if n_ready > 0:
            length += t - last
            area += (t - last) * n_busy
        n_ready += d_ready
        n_busy += d_busy
        last = t
    return length, area


def utilisation(recs: Sequence[Rec], light: Sequence[Rec]) -> dict[str, float]:
    """Slot utilisation while light work is ready (see the module docstring)."""
    length, area = covered(((r.enq, r.start) for r in light), ((r.start, r.end) for r in recs))
    return {"ready_s": length, "busy_slot_s": area, "idle_slot_s": SLOTS * length - area,
            "utilisation": area / (SLOTS * length) if length > 0 else float("nan")}


def merged(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def slot_gaps(recs: Sequence[Rec], light: Sequence[Rec]) -> dict[str, float]:
    """Per slot, end of a body -> start of the slot's next body, when light work was ready at
    that end (see the module docstring)."""
    ready = merged((r.enq, r.start) for r in light)
    starts = [a for a, _ in ready]
    by_slot: dict[str, list[Rec]] = {}
    for r in recs:
        by_slot.setdefault(r.slot, []).append(r)
    gaps = []
    for own in by_slot.values():
        own.sort(key=lambda r: r.start)
        for prev, nxt in itertools.pairwise(own):
            i = bisect.bisect_right(starts, prev.end) - 1
            if i >= 0 and prev.end < ready[i][1]:
                gaps.append((nxt.start - prev.end) * 1000.0)
    g = summarize(gaps)
    g["over_20ms"] = sum(1 for x in gaps if x > 20.0)
    g["total_ms"] = sum(gaps)
    return g


def analyse(run: CapRun) -> dict[str, Any]:
    recs = run.recs
    light = [r for r in recs if r.tenant != "heavy"]
    heavy = [r for r in recs if r.tenant == "heavy"]
    p1 = [r for r in light if r.idx < run.n_trickle]
    p2 = [r for r in light if r.idx >= run.n_trickle]
    lo, hi = min(r.enq for r in light), max(r.start for r in light)
    span = hi - lo
    heavy_done = sum(1 for r in heavy if lo <= r.end <= hi)
    heavy_busy = sum(max(0.0, min(r.end, hi) - max(r.start, lo)) for r in heavy)
    leased_max = max_overlap([(r.start, r.end) for r in heavy])
    return {
        "light_wait_ms": summarize([r.wait_ms for r in p1]),
        "backlog_wait_ms": summarize([r.wait_ms for r in p2]),
        "trickle": utilisation(recs, p1),
        "backlog": utilisation(recs, p2),
        "gaps_ms": slot_gaps(recs, p2),
        "heavy_tasks_per_s": heavy_done / span,
        "heavy_slots_mean": heavy_busy / span,
        "heavy_running_max": leased_max,
        "window_s": span,
        "light_tasks": len(light),
    }


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


class CapBench:
    """Runs the scenario on ``url`` (flushed before every run) with worker processes of ``procs``."""

    def __init__(self, url: str, raw: redis.Redis, procs: Processes, out: Callable[[str], None] = print) -> None:
        from benchmarks.contenders.fairque_app import setup_django, work_slot

        setup_django(url)
        from fairque_django import get_queue

        self.url, self.raw, self.procs, self.out = url, raw, procs, out
        self.queue = get_queue()
        self.work = work_slot

    def _task(self, tenant: str, idx: int, ms: float) -> Any:
        return self.work.create_task((tenant, idx, time.time(), ms), user_id=tenant)

    def _records(self) -> list[Rec]:
        recs = []
        for line in self._lines():
            tenant, idx, enq, start, end, _worker, slot = line.split("\t")
            recs.append(Rec(tenant, int(idx), float(enq), float(start), float(end), slot))
        return recs

    def _start_worker(self) -> Any:
        from benchmarks.contenders.django_settings import WORKER_ID

        cmd = [sys.executable, "-m", "django", "runfairworker", WORKER_ID, "--settings", SETTINGS,
               "--concurrency", str(SLOTS), "--loglevel", "WARNING"]
        proc = self.procs.launch("runfairworker", cmd, self.url, env={"DJANGO_SETTINGS_MODULE": SETTINGS})
        for i in range(SLOTS):  # warm up: every slot runs a task, then parks
            self.queue.push(self._task("warm", i, 20.0))
        if not wait_until(lambda: self.raw.llen(bodies.RECORDS) >= SLOTS or not proc.alive(), 60.0, 0.02) \
                or not proc.alive():
            raise RuntimeError(f"runfairworker did not start: {proc.tail(10)}")
        time.sleep(0.3)
        self.raw.delete(bodies.RECORDS)
        return proc

    def run(self, capped: bool, sz: dict[str, Any], seed: int) -> CapRun:
        self.raw.flushdb()
        q = self.queue
        if capped:
            q.set_tenant_limits("heavy", concurrency=CAP)
        proc = self._start_worker()
        try:
            rng = random.Random(seed)
            arrivals, t = [], 0.0
            while True:
                t += rng.expovariate(sz["rate"])
                if t >= sz["seconds"]:
                    break
                arrivals.append(t)
            heavy_n = int(SLOTS * (sz["seconds"] + 4.0) / (HEAVY_MS / 1000.0))
            t0 = time.time()
            q.push_batch([self._task("heavy", i, HEAVY_MS) for i in range(heavy_n)])
            time.sleep(0.25)
            lights = [f"light:{k + 1}" for k in range(LIGHT_TENANTS)]
            base = time.monotonic()
            for i, at in enumerate(arrivals):
                delay = base + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                q.push(self._task(lights[i % LIGHT_TENANTS], i, LIGHT_MS))
            time.sleep(0.3)
            n1 = len(arrivals)
            phase2 = time.time()
            idx = n1
            for _ in range(sz["backlog"]):
                for tenant in lights:
                    q.push(self._task(tenant, idx, LIGHT_MS))
                    idx += 1
            total = idx
            if not wait_until(lambda: self._light_done() >= total or not proc.alive(), 120.0, 0.05):
                raise RuntimeError(f"light tasks unfinished: {self._light_done()} of {total}")
            if capped:
                limits = q.get_tenant_limits("heavy")
                assert limits["concurrency"] == CAP, limits
        finally:
            self.procs.stop(proc, timeout=15.0)
        return CapRun(capped, self._records(), t0, phase2, n1)

    def _lines(self) -> list[str]:
        return [x.decode() if isinstance(x, bytes) else str(x) for x in self.raw.lrange(bodies.RECORDS, 0, -1)]

    def _light_done(self) -> int:
        return sum(1 for line in self._lines() if not line.startswith("heavy\t"))


def report_line(name: str, a: dict[str, Any]) -> str:
    w, b = a["light_wait_ms"], a["backlog_wait_ms"]
    return (f"{name:<9} light wait ms p50/p95/p99/max {w['p50']:.1f}/{w['p95']:.1f}/{w['p99']:.1f}/{w['max']:.1f}"
            f" (n={w['n']}); backlog p99 {b['p99']:.0f} ms; utilisation while light work ready: trickle "
            f"{100 * a['trickle']['utilisation']:.1f} % of {1000 * a['trickle']['ready_s']:.0f} ms, backlog "
            f"{100 * a['backlog']['utilisation']:.1f} % of {1000 * a['backlog']['ready_s']:.0f} ms; heavy "
            f"{a['heavy_tasks_per_s']:.2f} tasks/s, {a['heavy_slots_mean']:.2f} slots (max {a['heavy_running_max']}); "
            f"phase 2 slot gaps ms mean/p99/max {a['gaps_ms']['mean']:.2f}/{a['gaps_ms']['p99']:.1f}/"
            f"{a['gaps_ms']['max']:.1f}, {a['gaps_ms']['over_20ms']} over 20 ms, {a['gaps_ms']['total_ms']:.0f} ms "
            f"in all of {1000 * a['backlog']['idle_slot_s']:.0f} idle slot-ms")


def bench_caps(url: str, raw: redis.Redis, procs: Processes, quick: bool, rounds: int | None = None,
               plot: bool = True) -> dict[str, Any]:
    """Scenario 4 (see the module docstring): prints every run, the medians and the verdicts."""
    sz = dict(QUICK if quick else FULL)
    if rounds:
        sz["rounds"] = rounds
    print(f"\n== heavy tenant ({HEAVY_MS:.0f} ms tasks) capped at {CAP} of {SLOTS} slots vs uncapped; "
          f"{LIGHT_TENANTS} light tenants ({LIGHT_MS:.0f} ms tasks): phase 1 Poisson {sz['rate']:.0f}/s for "
          f"{sz['seconds']:.0f} s, phase 2 a backlog of {sz['backlog']} tasks per light tenant; runfairworker "
          f"--concurrency {SLOTS}; {sz['rounds']} interleaved round(s)", flush=True)
    print("   utilisation = integral over P of busy(t) / (8 x |P|); P = instants when at least one light task "
          "was pushed and not started (t_enq <= t < start), busy(t) = task bodies running", flush=True)
    bench = CapBench(url, raw, procs)
    runs: dict[bool, list[CapRun]] = {True: [], False: []}
    for r in range(sz["rounds"]):
        for capped in ((True, False) if r % 2 == 0 else (False, True)):
            run = bench.run(capped, sz, seed=1000 + r)
            run.figures = analyse(run)
            runs[capped].append(run)
            print(f"  [{r + 1}] " + report_line("capped" if capped else "uncapped", run.figures), flush=True)
    raw.flushdb()
    med: dict[str, dict[str, float]] = {}
    for capped, name in ((True, "capped"), (False, "uncapped")):
        figs = [x.figures for x in runs[capped]]
        med[name] = {
            "light_p50_ms": median(f["light_wait_ms"]["p50"] for f in figs),
            "light_p99_ms": median(f["light_wait_ms"]["p99"] for f in figs),
            "light_max_ms": median(f["light_wait_ms"]["max"] for f in figs),
            "backlog_p99_ms": median(f["backlog_wait_ms"]["p99"] for f in figs),
            "util_trickle": median(f["trickle"]["utilisation"] for f in figs),
            "util_backlog": median(f["backlog"]["utilisation"] for f in figs),
            "heavy_tasks_per_s": median(f["heavy_tasks_per_s"] for f in figs),
            "heavy_slots_mean": median(f["heavy_slots_mean"] for f in figs),
            "heavy_running_max": max(f["heavy_running_max"] for f in figs),
            "gap_mean_ms": median(f["gaps_ms"]["mean"] for f in figs),
            "gap_p99_ms": median(f["gaps_ms"]["p99"] for f in figs),
            "gaps_over_20ms": sum(f["gaps_ms"]["over_20ms"] for f in figs),
        }
    for name, m in med.items():
        print(f"  median {name:<9} light p50/p99/max {m['light_p50_ms']:.1f}/{m['light_p99_ms']:.1f}/"
              f"{m['light_max_ms']:.1f} ms; backlog p99 {m['backlog_p99_ms']:.0f} ms; utilisation trickle "
              f"{100 * m['util_trickle']:.1f} %, backlog {100 * m['util_backlog']:.1f} %; heavy "
              f"{m['heavy_tasks_per_s']:.2f} tasks/s ({m['heavy_slots_mean']:.2f} slots, at most "
              f"{m['heavy_running_max']:.0f} running); phase 2 slot gaps mean {m['gap_mean_ms']:.2f} ms, p99 "
              f"{m['gap_p99_ms']:.1f} ms, {m['gaps_over_20ms']:.0f} over 20 ms (all rounds)", flush=True)
    cap_f = [x.figures for x in runs[True]]
    unc_f = [x.figures for x in runs[False]]
    ratio = paired_ratio([f["light_wait_ms"]["p99"] for f in cap_f], [f["light_wait_ms"]["p99"] for f in unc_f])
    checks = {
        "light_p99_ratio": verdict("light p99 wait (phase 1), capped / uncapped", 100 * ratio, 100 * P99_TARGET,
                                   "<=", "%", detail=f"{med['capped']['light_p99_ms']:.1f} ms / "
                                          f"{med['uncapped']['light_p99_ms']:.1f} ms, medians"),
        "utilisation": verdict("slot utilisation while light work is ready (phase 2, capped)",
                               100 * med["capped"]["util_backlog"], 100 * UTIL_TARGET, ">=", "%",
                               detail=f"uncapped {100 * med['uncapped']['util_backlog']:.1f} %; phase 1 capped "
                                      f"{100 * med['capped']['util_trickle']:.1f} %, uncapped "
                                      f"{100 * med['uncapped']['util_trickle']:.1f} %"),
        "heavy_within_cap": verdict("heavy tasks running at once, capped (most seen)",
                                    med["capped"]["heavy_running_max"], CAP, "<="),
    }
    hratio = paired_ratio([f["heavy_tasks_per_s"] for f in cap_f], [f["heavy_tasks_per_s"] for f in unc_f])
    print(f"heavy throughput, capped / uncapped: {hratio:.2f}x ({med['capped']['heavy_tasks_per_s']:.2f} vs "
          f"{med['uncapped']['heavy_tasks_per_s']:.2f} tasks/s; {CAP}/{SLOTS} of the slots would be "
          f"{CAP / SLOTS:.2f}x)", flush=True)
    result = {"sizes": sz, "medians": med, "checks": checks, "heavy_throughput_ratio": hratio,
              "runs": {k: [x.figures for x in v] for k, v in (("capped", runs[True]), ("uncapped", runs[False]))}}
    if plot:
        from benchmarks.harness.plots import caps_plot

        mid = {k: sorted(v, key=lambda x: x.figures["light_wait_ms"]["p99"])[len(v) // 2] for k, v in runs.items()}
        for path in caps_plot(mid[True], mid[False], med, sz, SLOTS, CAP):
            print(f"plot written to {path}", flush=True)
    return result
