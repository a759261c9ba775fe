"""Throughput benchmark, scenarios B (enqueue -> start latency with an idle worker) and C (push,
one by one and batched); see :mod:`.throughput`."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from benchmarks.harness import procs as hp
from benchmarks.harness import report
from benchmarks.harness import server as srv
from benchmarks.harness import stats as st
from benchmarks.harness.report import out
from benchmarks.scenarios.throughput_cost import STARTUP_TIMEOUT, TARGETS

perf = time.perf_counter


class LatencyPushScenarios:
    """Scenarios B and C; mixed into :class:`.throughput.Bench`."""

    # ---- B. latency --------------------------------------------------------------------
    def scenario_b(self) -> None:
        cfg = self.sizes["B"]
        keys = ["fairque-c1", "fairque-c4", "raw", "huey", "rq", "celery"]
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        reps = cfg.get("reps", self.reps)
        t_start = perf()
        out(f"== B. latency: idle worker, enqueue -> task start, {cfg['n']} tasks spaced "
            f"{cfg['spacing'] * 1000:.0f} ms; {reps} repetition(s)")
        for rep in range(reps):
            for key in self.rotated(keys, rep):
                run = self.latency_once(key, cfg)
                runs[key].append(run)
                if run["ok"]:
                    out(f"   rep {rep + 1} {key:11} p50 {run['ms']['p50']:.2f} ms, p99 {run['ms']['p99']:.2f} ms")
                else:
                    out(f"   rep {rep + 1} {key:11} FAILED ({run['error']})")
        elapsed = perf() - t_start
        summary: dict[str, dict[str, Any]] = {}
        rows: list[list[Any]] = []
        for key in keys:
            good = [r for r in runs[key] if r["ok"]]
            med = st.median_summary([r["ms"] for r in good])
            pooled = st.summarize([x for r in good for x in r["samples_ms"]])
            summary[key] = {"label": self.system(key).label, "ms": med, "pooled_ms": pooled,
                            "failures": [r["error"] for r in runs[key] if not r["ok"]]}
            backlog = bool(med) and med["p50"] > cfg["spacing"] * 1000
            summary[key]["backlog"] = backlog
            rows.append([self.system(key).label, med.get("p50"), med.get("p95"), med.get("p99"), med.get("max"),
                         med.get("mean"), pooled.get("p99"),
                         "queueing: slower than 1 task/spacing" if backlog else ""])
        out()
        self.tables["B"] = report.table(["contender", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms",
                                     "pooled p99 ms", "note"], rows,
                                    title=f"B. enqueue -> start latency (median over {reps} repetitions "
                                          f"of the per-run percentiles; pooled = all runs' samples)")
        self.results["B"] = {"sizes": cfg, "reps": reps, "elapsed_s": elapsed, "contenders": summary,
                             "runs": {k: [{kk: vv for kk, vv in r.items() if kk != "samples_ms"} for r in v]
                                      for k, v in runs.items()}}
        out()
        paired = [a["ms"]["p50"] / b["ms"]["p50"] for a, b in zip(runs["fairque-c1"], runs["huey"], strict=True)
                  if a["ok"] and b["ok"]]
        if paired:
            out("B fairque p50 / Huey p50 within each repetition: " + ", ".join(f"{x:.2f}" for x in paired)
                + f" (median {statistics.median(paired):.2f})")
            self.results["B"]["paired_p50_vs_huey"] = paired
        fq, hu = summary["fairque-c1"]["ms"], summary["huey"]["ms"]
        if fq and hu:
            self.verdict("B fairque p50 latency / Huey p50", fq["p50"] / hu["p50"], TARGETS["latency_p50_vs_huey"],
                         "<=", "x", f"{fq['p50']:.2f} vs {hu['p50']:.2f} ms")
            self.verdict("B fairque p99 latency / Huey p99", fq["p99"] / hu["p99"], TARGETS["latency_p99_vs_huey"],
                         "<", "x", f"{fq['p99']:.2f} vs {hu['p99']:.2f} ms")
        out(f"(B took {elapsed:.0f} s)")

    def latency_once(self, key: str, cfg: dict[str, Any]) -> dict[str, Any]:
        s = self.system(key)
        n, warm, spacing = cfg["n"], cfg["warmup"], cfg["spacing"]
        self.flush()
        proc = self.start_worker(s)
        run: dict[str, Any] = {"ok": False, "error": None}
        try:
            for i in range(warm):  # connections, imports, script loading; negative ids
                s.one("record", -1 - i)
                time.sleep(0.01)
            if not hp.wait_until(lambda: self.r.hlen("bench:lat") >= warm or not proc.alive(), STARTUP_TIMEOUT):
                run["error"] = f"worker did not start: {proc.tail(5)!r}"
                return run
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
            if not hp.wait_until(lambda: self.r.hlen("bench:lat") >= warm + n, 30.0, 0.01):
                run["error"] = f"{self.r.hlen('bench:lat') - warm}/{n} tasks started"
                return run
            starts = {int(k): float(v) for k, v in self.r.hgetall("bench:lat").items()}
            samples = [(starts[i] - enq[i]) * 1000.0 for i in range(n)]
            run.update(ok=True, ms=st.summarize(samples), samples_ms=samples)
            return run
        finally:
            self.stop_worker(s, proc)

    # ---- C. push -----------------------------------------------------------------------
    def scenario_c(self) -> None:
        cfg = self.sizes["C"]
        n1, nb, nchunks = cfg["single"], cfg["batch"], cfg["chunks"]
        step = n1 // nchunks
        t_start = perf()
        out(f"== C. push: {n1:,} one-by-one enqueues per contender (chunks of {step}, interleaved), "
            f"batches of {nb:,}; {self.reps} repetition(s)")
        single_keys = ["raw", "fairque-c1", "huey", "rq", "celery"]
        systems = {k: self.system(k) for k in single_keys}
        # warm up every producer (connections, script loading, imports)
        self.flush()
        for s in systems.values():
            for i in range(5):
                s.one("noop", i)
            s.batch(10)
        single: dict[str, list[float]] = {k: [] for k in single_keys}
        single_rt: dict[str, list[float]] = {k: [] for k in single_keys}
        for rep in range(self.reps):
            self.flush()
            gc.collect()
            times = {k: 0.0 for k in single_keys}
            trips = {k: 0 for k in single_keys}
            for c in range(nchunks):
                for key in self.rotated(single_keys, rep + c):
                    s = systems[key]
                    one = s.one
                    with srv.count_round_trips() as rt:
                        t0 = perf()
                        for i in range(c * step, (c + 1) * step):
                            one("noop", i)
                        times[key] += perf() - t0
                    trips[key] += rt[0]
            for key in single_keys:
                single[key].append(nchunks * step / times[key])
                single_rt[key].append(trips[key] / (nchunks * step))
        batch_keys = ["raw", "fairque-c1", "rq"]
        batch: dict[str, list[float]] = {k: [] for k in batch_keys}
        for rep in range(self.reps):
            for key in self.rotated(batch_keys, rep):
                self.flush()
                gc.collect()
                t0 = perf()
                systems[key].batch(nb)
                batch[key].append(nb / (perf() - t0))
        self.flush()
        elapsed = perf() - t_start
        names = {"raw": ("raw LPUSH (JSON message)", "raw pipelined LPUSH"),
                 "fairque-c1": ("fairque push", "fairque push_batch"),
                 "huey": ("Huey enqueue", None), "rq": ("RQ enqueue", "RQ enqueue_many (pipeline)"),
                 "celery": ("Celery apply_async", None)}
        rows: list[list[Any]] = []
        res: dict[str, Any] = {"single": {}, "batch": {}}
        raw1 = st.median(single["raw"])
        for key in single_keys:
            rate = st.median(single[key])
            trips_per_task = min(single_rt[key])
            res["single"][key] = {"label": names[key][0], "rate": rate, "runs": single[key],
                                  "vs_raw": rate / raw1, "round_trips_per_task": trips_per_task}
            rows.append([names[key][0], n1, rate, 1e6 / rate, rate / raw1, trips_per_task])
        rawb = st.median(batch["raw"])
        for key in batch_keys:
            rate = st.median(batch[key])
            res["batch"][key] = {"label": names[key][1], "rate": rate, "runs": batch[key], "vs_raw": rate / rawb}
            rows.append([names[key][1], nb, rate, 1e6 / rate, rate / rawb, None])
        out()
        self.tables["C"] = report.table(["enqueue", "tasks", "tasks/s", "us/task", "x raw", "round trips/task"], rows,
                                    title=f"C. push (median of {self.reps}; task creation included for every "
                                          "contender; x raw = vs the raw line of the same kind)")
        fqb, rqb = st.median(batch["fairque-c1"]), st.median(batch["rq"])
        paired_rq = st.median([f / r for f, r in zip(batch["fairque-c1"], batch["rq"], strict=True)])
        paired_raw = st.median([f / r for f, r in zip(batch["fairque-c1"], batch["raw"], strict=True)])
        res.update(elapsed_s=elapsed, sizes=cfg, reps=self.reps, batch_vs_rq=paired_rq, batch_vs_raw=paired_raw)
        self.results["C"] = res
        out()
        self.verdict("C fairque push_batch / RQ enqueue_many", paired_rq, TARGETS["batch_vs_rq"], ">=", "x",
                     f"{fqb:,.0f} vs {rqb:,.0f} tasks/s")
        self.verdict("C fairque push_batch / raw pipelined LPUSH", paired_raw, TARGETS["batch_vs_raw"], ">=", "x",
                     f"{fqb:,.0f} vs {rawb:,.0f} tasks/s")
        out(f"(C took {elapsed:.0f} s)")
