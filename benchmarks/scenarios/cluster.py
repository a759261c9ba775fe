"""Scale-out on a Redis Cluster (issue 18): how the Redis work of a run splits across the masters,
Redis CPU per task on the cluster vs one Redis, and fairness on the cluster.

One run starts its own servers on loopback ports (nothing else talks to them, so server-wide
counters see only the benchmark):

  cluster   3 masters, ``redis-server --cluster-enabled yes``, the 16,384 slots split in three
            even ranges (as ``redis-cli --cluster create`` splits them), joined with CLUSTER MEET;
            the clients are redis-py ``RedisCluster``s
  single    one plain redis-server: the baseline
  records   one more plain redis-server for the task bodies' records and counters
            (:mod:`benchmarks.contenders.bodies`), so that they never count on the servers measured

Both sides open their queue from a configuration whose ``redis.url`` is ``redis+cluster://...``
for the cluster (the library builds its ``RedisCluster`` client, as ``runfairworker`` does from
Django settings) with :func:`benchmarks.contenders.fairque_app.open_bench_queue` (the library's
``open_queue`` when it has one: every shard of ``queue.shards``; else a ``TaskQueue``, one shard
only). Targets: ``cluster-s12`` (the cluster, ``queue.shards = 12``), ``single-s1`` (the
single Redis, ``shards = 1``: today's layout) and, for context, ``cluster-s1`` (the cluster with
``shards = 1``: everything on the master owning ``{fq}``) and, in part B only, ``single-s1-batch``
(the single Redis with ``--no-prefetch`` workers: a sharded prefix's worker does not prefetch, its
slots lease batches of short tasks, so this separates the batch mode from the sharding) and
``single-s12`` (the single Redis with ``shards = 12``: separates the sharding from the cluster).

A. Command split and Redis CPU per task (each target, each drain mode, ``reps`` times interleaved).
   ``tasks`` no-op tasks for ``tenants`` tenants (``tenant:0..``, round robin) are pushed with
   ``push_batch`` (``chunk`` per call, mixed tenants) while no worker runs; then ``workers`` worker
   processes (``benchmarks/contenders/fairque_worker.py``: the core ``Worker`` as ``runfairworker``
   runs it, ``concurrency`` slots each, assigned ``tenant:*``) drain them:
     prod   production mode, as users run it (prefetching slots, idle slots parked on wake-ups)
     burst  ``--burst`` (leases batches of short tasks, exits when nothing is left): a separate line
   Every master gets CONFIG RESETSTAT before the push; its INFO commandstats (every command a
   script runs counts under its own name besides the EVALSHA; the benchmark's INFO/CONFIG calls
   are left out) and INFO cpu (``used_cpu_sys + used_cpu_user``) are read after the push and once
   the last task completed (+0.3 s for its ack), before the workers stop; each server's idle CPU
   (its own background: serverCron, a cluster's bus) is sampled for 1 s before. Reported per master:
   commands and CPU; the split's max deviation from even (``max |c_i - mean| / mean``, target
   +-20 %); Redis CPU per task (push + drain, all masters) and its ratio cluster-s12 / single-s1
   (medians of same-rep ratios; target <= 1.2x), also with the idle background subtracted (the
   idle rate times the run's wall time: what does not grow with the tasks). Which master each
   shard's hash tag lands on, and how many tenants each shard has, is printed too: 12 tags over 3
   even slot ranges need not be 4/4/4.

B. Fairness: the noisy-neighbour scenario of the fairness suite (``bench_fairness.py`` scenario 1:
   ``heavy`` pushes 3,000 x 1 ms in one batch, then 20 light tenants 5 x 1 ms each, one push per
   task; two worker processes, one slot each, ``steal_targets: ["*"]``) on each target,
   interleaved, ``reps`` times: light-tenant p99 wait on each and the ratio cluster-s12 /
   single-s1 (median of same-rep ratios; target <= 1.5x).

    python3 benchmarks/bench_cluster.py            # about 4 minutes
    python3 benchmarks/bench_cluster.py --quick    # under a minute
    python3 benchmarks/bench_cluster.py --only A --targets cluster-s12,single-s1 --modes prod

Results: ``benchmarks/results/cluster.json`` (``cluster_quick.json`` with --quick); plot (when
matplotlib is installed, full runs or --plots): ``docs/images/bench_cluster.png``. Numbers are
printed; nothing is asserted (exit code 0 whatever they are).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.contenders import bodies
from benchmarks.contenders.fairque_app import noop, open_bench_queue, sharded_queues_available
from benchmarks.harness import IMAGES, RESULTS_DIR
from benchmarks.harness.procs import Processes, install_signal_handlers
from benchmarks.harness.report import run_meta, table, write_json
from benchmarks.harness.report import verdict as common_verdict
from benchmarks.harness.server import PrivateCluster, start_private_cluster, start_private_redis
from benchmarks.harness.stats import median, paired_ratio
from benchmarks.scenarios.fairness_runner import (
    PROCS,
    Bench,
    Run,
    Steps,
    contention_jain,
    flood_steps,
    fq_shared,
    noisy_steps,
    wait_stats,
    worker_gaps_ms,
)
from benchmarks.scenarios.fairness_runner import cli as runner_cli
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.connection import build_client

MODES = ("prod", "burst")
PREFIX = "fq"  # the default queue.stats_prefix: where its shards' hash tags land is what users get
FULL: dict[str, Any] = {
    "tasks": 20_000, "tenants": 200, "chunk": 1_000, "workers": 2, "concurrency": 2, "reps": 2, "modes": MODES,
    "noisy": {"heavy": 3000, "light_tenants": 20, "light_each": 5, "heavy_ms": 1.0, "light_ms": 1.0, "reps": 3},
    "expensive": {"heavy": 600, "light_tenants": 20, "light_each": 5, "heavy_ms": 10.0, "light_ms": 1.0, "reps": 3},
    "flood": {"flood": 2000, "others": 10, "each": 10, "ms": 1.0, "reps": 3}}
QUICK: dict[str, Any] = {
    "tasks": 2_000, "tenants": 200, "chunk": 1_000, "workers": 2, "concurrency": 2, "reps": 1, "modes": ("prod",),
    "noisy": {"heavy": 600, "light_tenants": 20, "light_each": 5, "heavy_ms": 1.0, "light_ms": 1.0, "reps": 1},
    "expensive": {"heavy": 150, "light_tenants": 20, "light_each": 5, "heavy_ms": 10.0, "light_ms": 1.0, "reps": 1},
    "flood": {"flood": 400, "others": 10, "each": 10, "ms": 1.0, "reps": 1}}
TARGETS = {"split_deviation": 0.20, "cpu_ratio": 1.2, "light_p99_ratio": 1.5}
DRAIN_TIMEOUT_S = 120.0
IDLE_SAMPLE_S = 1.0
IGNORED = ("info", "config", "ping", "flushdb", "dbsize", "echo", "client", "hello", "auth", "select")
perf = time.perf_counter


@dataclass(frozen=True)
class Target:
    name: str
    cluster: bool
    shards: int
    prefetch: bool = True  # False: the workers' slots lease batches (--no-prefetch), as a sharded worker's do

    @property
    def label(self) -> str:
        return f"{'cluster (3 masters)' if self.cluster else 'single Redis'}, shards={self.shards}"


ALL_TARGETS = (Target("cluster-s12", True, 12), Target("single-s1", False, 1), Target("cluster-s1", True, 1),
               Target("single-s1-batch", False, 1, prefetch=False), Target("single-s12", False, 12))
B_ONLY = {"single-s1-batch", "single-s12"}  # part A's burst mode already compares batch leasing on both sides


def out(line: str = "") -> None:
    print(line, flush=True)


def deviation(values: Sequence[float]) -> float:
    """Max deviation from an even split: ``max |v - mean| / mean``."""
    if not values or sum(values) <= 0:
        return float("nan")
    mean = sum(values) / len(values)
    return max(abs(v - mean) for v in values) / mean


def commandstats(node: redis.Redis, field: str = "calls") -> dict[str, float]:
    """Calls (or another field of INFO commandstats: ``usec``) per command since the last CONFIG
    RESETSTAT (the benchmark's own calls left out)."""
    calls: dict[str, float] = {}
    for key, value in node.info("commandstats").items():
        name = key.removeprefix("cmdstat_")
        if isinstance(value, dict) and not name.startswith(IGNORED):
            calls[name] = float(value.get(field, 0))
    return calls


def cpu_seconds(node: redis.Redis) -> float:
    info = node.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Servers:
    """The servers of the run (module docstring) and the one place that knows their URLs."""

    def __init__(self, procs: Processes, masters: int, balance_tags: int = 0) -> None:
        pinned = None
        if balance_tags:  # shard n's hash tag on master n * masters // shards: shards/masters tags each
            from redis.crc import key_slot

            from fairque_django.core.shards import ShardMap

            pinned = {key_slot(k.base.encode()): n * masters // balance_tags
                      for n, k in enumerate(ShardMap(PREFIX, balance_tags).keys)}
        self.cluster: PrivateCluster = start_private_cluster(procs, masters, pinned=pinned)
        self.single_url = start_private_redis(procs, db=0)
        self.records_url = start_private_redis(procs, db=1)
        self.records = redis.Redis.from_url(self.records_url)
        self.single = redis.Redis.from_url(self.single_url)

    def queue_url(self, target: Target) -> str:
        """The ``redis.url`` of a target's configuration (``redis+cluster://``: a Redis Cluster)."""
        return self.cluster.config_url if target.cluster else self.single_url

    def masters(self, target: Target) -> dict[str, redis.Redis]:
        """The servers a target's queue runs on, by name (``port``)."""
        if target.cluster:
            return {str(p): self.cluster.node(p) for p in self.cluster.ports}
        return {"single": self.single}

    def flush(self, target: Target) -> None:
        """FLUSHDB on the target's servers (all the benchmark's own) and the records database."""
        for node in self.masters(target).values():
            node.flushdb()
        self.records.flushdb()

    def shard_layout(self, target: Target, tenants: Sequence[str]) -> dict[str, Any]:
        """Which master each shard's hash tag lands on, and the tenants of each shard."""
        from redis.crc import key_slot

        from fairque_django.core.shards import ShardMap

        shard_map = ShardMap(PREFIX, target.shards)
        per_shard = [0] * target.shards
        for tenant in tenants:
            per_shard[shard_map.of(tenant)] += 1
        if not target.cluster:
            return {"shard_master": ["single"] * target.shards, "tenants_per_shard": per_shard,
                    "home_master": "single"}
        owner = {str(p): 0 for p in self.cluster.ports}
        shard_master = [str(self.cluster.slot_owner(key_slot(k.base.encode()))) for k in shard_map.keys]
        for shard, master in enumerate(shard_master):
            owner[master] += per_shard[shard]
        home = str(self.cluster.slot_owner(key_slot(shard_map.home.base.encode())))
        return {"shard_master": shard_master, "tenants_per_shard": per_shard, "tenants_per_master": owner,
                "shards_per_master": {m: shard_master.count(m) for m in owner}, "home_master": home}


class ClusterBench:
    def __init__(self, servers: Servers, sizes: dict[str, Any], targets: Sequence[Target],
                 modes: Sequence[str]) -> None:
        self.s = servers
        self.sizes = sizes
        self.targets = list(targets)
        self.modes = list(modes)
        self.tenants = [f"tenant:{i}" for i in range(sizes["tenants"])]
        self.results: dict[str, Any] = {}
        self.sharded = sharded_queues_available()

    def runnable(self, target: Target) -> bool:
        return target.shards == 1 or self.sharded

    def config_data(self, target: Target) -> dict[str, Any]:
        sz = self.sizes
        return {
            "redis": {"url": self.s.queue_url(target)},
            "workers": [{"id": f"cw{i + 1}", "assigned_users": ["tenant:*"], "max_concurrent_tasks": sz["concurrency"]}
                        for i in range(sz["workers"])],
            "queue": {"stats_prefix": PREFIX, "shards": target.shards, "default_max_retries": 0},
        }

    # ------------------------------------------------------------------ A: command split, CPU per task
    def cost_run(self, target: Target, mode: str) -> dict[str, Any]:
        sz, n = self.sizes, self.sizes["tasks"]
        self.s.flush(target)
        data = self.config_data(target)
        path = PROCS.logdir / f"cluster-{target.name}.config.json"
        path.write_text(json.dumps(data), "utf-8")
        config = FairQueueConfig.from_dict(data)
        client = build_client(config.redis)  # as the library builds it from the settings (a RedisCluster)
        queue = open_bench_queue(config, client)
        nodes = self.s.masters(target)
        tenants, k = self.tenants, len(self.tenants)
        chunks = [[noop.create_task((i,), user_id=tenants[i % k]) for i in range(lo, min(n, lo + sz["chunk"]))]
                  for lo in range(0, n, sz["chunk"])]
        idle0 = {name: cpu_seconds(node) for name, node in nodes.items()}
        time.sleep(IDLE_SAMPLE_S)  # the servers' own background (serverCron; a cluster's bus), nothing queued
        idle = {name: (cpu_seconds(node) - idle0[name]) / IDLE_SAMPLE_S for name, node in nodes.items()}
        for node in nodes.values():
            node.config_resetstat()
        cpu0 = {name: cpu_seconds(node) for name, node in nodes.items()}
        wall0 = time.monotonic()
        started = perf()
        pushed = sum(int(queue.push_batch(chunk)["pushed"]) for chunk in chunks)
        push_s = perf() - started
        cmd_push = {name: commandstats(node) for name, node in nodes.items()}
        cpu_push = {name: cpu_seconds(node) - cpu0[name] for name, node in nodes.items()}
        cmd = [sys.executable, "-m", "benchmarks.contenders.fairque_worker", "--config", str(path)]
        if mode == "burst":
            cmd.append("--burst")
        problems: list[str] = []
        try:
            for w in data["workers"]:
                PROCS.group.launch(w["id"], [*cmd, "--worker-id", w["id"]], self.s.records_url,
                                   env={"BENCH_TOTAL": str(n)})
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            done = 0
            while time.monotonic() < deadline:
                done = int(self.s.records.get(bodies.DONE) or 0)
                if done >= n:
                    break
                if mode == "prod" and PROCS.dead():
                    problems.append(f"a worker exited early (logs in {PROCS.logdir})")
                    break
                time.sleep(0.02)
            else:
                problems.append(f"{done} of {n} tasks done after {DRAIN_TIMEOUT_S:.0f} s")
            time.sleep(0.3)  # the last acks
            cmd_all = {name: commandstats(node) for name, node in nodes.items()}
            usec_all = {name: commandstats(node, "usec") for name, node in nodes.items()}
            cpu_all = {name: cpu_seconds(node) - cpu0[name] for name, node in nodes.items()}
            wall = time.monotonic() - wall0
        finally:
            PROCS.stop_all()
            with contextlib.suppress(Exception):
                queue.close()
            client.close()
        first, last = (float(self.s.records.get(key) or "nan") for key in (bodies.FIRST, bodies.LAST))
        per_master: dict[str, dict[str, Any]] = {}
        for name in nodes:
            push_calls, all_calls = sum(cmd_push[name].values()), sum(cmd_all[name].values())
            per_master[name] = {
                "commands": all_calls, "commands_push": push_calls, "commands_drain": all_calls - push_calls,
                "evalsha": cmd_all[name].get("evalsha", 0.0), "cpu_s": cpu_all[name], "cpu_push_s": cpu_push[name],
                "top": dict(sorted(cmd_all[name].items(), key=lambda kv: -kv[1])[:8]),
                "usec": dict(sorted(usec_all[name].items(), key=lambda kv: -kv[1])[:8]),
            }
        commands = [float(m["commands"]) for m in per_master.values()]
        cpu = [float(m["cpu_s"]) for m in per_master.values()]
        return {
            "target": target.name, "mode": mode, "tasks": n, "pushed": pushed, "push_s": push_s,
            "push_rate": pushed / push_s if push_s > 0 else float("nan"),
            "drain_rate": n / (last - first) if last > first else float("nan"),
            "per_master": per_master, "commands_total": sum(commands), "commands_per_task": sum(commands) / n,
            "cpu_us_per_task": 1e6 * sum(cpu) / n, "cpu_push_us_per_task": 1e6 * sum(cpu_push.values()) / n,
            "idle_cpu_per_s": idle, "wall_s": wall,
            "cpu_net_us_per_task": 1e6 * (sum(cpu) - wall * sum(idle.values())) / n,
            "split_deviation": deviation(commands) if len(commands) > 1 else float("nan"),
            "cpu_split_deviation": deviation(cpu) if len(cpu) > 1 else float("nan"),
            "problems": problems,
        }

    def part_a(self) -> None:
        sz = self.sizes
        out(f"\n== A. command split and Redis CPU per task: {sz['tasks']:,} no-op tasks for {sz['tenants']} tenants "
            f"(push_batch of {sz['chunk']:,}), drained by {sz['workers']} worker processes x {sz['concurrency']} "
            f"slots; {sz['reps']} rep(s), interleaved")
        layouts = {}
        for t in self.targets:
            if t.name in B_ONLY:
                continue
            layout = self.s.shard_layout(t, self.tenants)
            layouts[t.name] = layout
            if t.cluster and t.shards > 1:
                out(f"  {t.name}: shard -> master {layout['shard_master']}; shards per master "
                    f"{layout['shards_per_master']}; tenants per shard {layout['tenants_per_shard']}; tenants per "
                    f"master {layout['tenants_per_master']} (deviation "
                    f"{100 * deviation(list(layout['tenants_per_master'].values())):.0f} %); home keys on "
                    f"{layout['home_master']}")
            elif t.cluster:
                out(f"  {t.name}: every key on master {layout['home_master']}")
        runs: dict[str, list[dict[str, Any]]] = {}
        for rep in range(sz["reps"]):
            for mode in self.modes:
                for t in self.targets:
                    if t.name in B_ONLY:
                        continue
                    key = f"{t.name}/{mode}"
                    if not self.runnable(t):
                        if rep == 0:
                            out(f"    {key}: skipped (queue.shards = {t.shards} needs the sharded queue, "
                                "fairque_django.core.sharded, which this library version does not have)")
                        continue
                    try:
                        r = self.cost_run(t, mode)
                    except Exception as exc:  # one failing target must not hide the others
                        out(f"    [{rep + 1}] {key}: FAILED: {type(exc).__name__}: {exc}")
                        continue
                    runs.setdefault(key, []).append(r)
                    split = " / ".join(f"{m['commands']:,.0f}" for m in r["per_master"].values())
                    out(f"    [{rep + 1}] {key:<18} push {r['push_rate']:,.0f}/s, drain {r['drain_rate']:,.0f}/s; "
                        f"{r['commands_per_task']:.1f} cmds/task, Redis CPU {r['cpu_us_per_task']:.0f} us/task; "
                        f"commands per master {split}"
                        + (f" (deviation {100 * r['split_deviation']:.1f} %)" if len(r["per_master"]) > 1 else "")
                        + (f"  PROBLEMS: {r['problems']}" if r["problems"] else ""))
        summary: dict[str, Any] = {}
        for key, rs in runs.items():
            masters = list(rs[0]["per_master"])
            summary[key] = {
                "reps": len(rs),
                **{f: median(r[f] for r in rs) for f in ("push_rate", "drain_rate", "commands_per_task",
                                                         "cpu_us_per_task", "cpu_push_us_per_task",
                                                         "cpu_net_us_per_task", "split_deviation",
                                                         "cpu_split_deviation")},
                "idle_cpu_ms_per_s": median(1000 * sum(r["idle_cpu_per_s"].values()) for r in rs),
                "commands_per_master": {m: median(r["per_master"][m]["commands"] for r in rs) for m in masters},
                "cpu_s_per_master": {m: median(r["per_master"][m]["cpu_s"] for r in rs) for m in masters},
            }
        rows = []
        for key, s in summary.items():
            rows.append([key, s["drain_rate"], s["commands_per_task"], s["cpu_us_per_task"], s["cpu_net_us_per_task"],
                         s["idle_cpu_ms_per_s"],
                         " / ".join(f"{v:,.0f}" for v in s["commands_per_master"].values()),
                         f"{100 * s['split_deviation']:.1f} %" if not math.isnan(s["split_deviation"]) else "-",
                         " / ".join(f"{v:.2f}" for v in s["cpu_s_per_master"].values()),
                         f"{100 * s['cpu_split_deviation']:.1f} %" if not math.isnan(s["cpu_split_deviation"])
                         else "-"])
        out("")
        table(["target/mode", "drain/s", "cmds/task", "Redis CPU us/task", "less idle", "idle ms/s",
               "commands per master", "deviation",
               "CPU s per master", "CPU deviation"], rows, title="  medians over reps")
        checks: dict[str, Any] = {}
        for mode in self.modes:
            c12, s1 = runs.get(f"cluster-s12/{mode}"), runs.get(f"single-s1/{mode}")
            if c12:
                dev = summary[f"cluster-s12/{mode}"]["split_deviation"]
                checks[f"split_{mode}"] = verdict(
                    f"A. cluster shards=12 ({mode}): commands per master, max deviation from even", dev,
                    TARGETS["split_deviation"], "<=",
                    detail=" / ".join(f"{v:,.0f}" for v in summary[f"cluster-s12/{mode}"]["commands_per_master"]
                                      .values()))
            if c12 and s1:
                ratio = same_rep_ratio(c12, s1, lambda r: r["cpu_us_per_task"])
                net = same_rep_ratio(c12, s1, lambda r: r["cpu_net_us_per_task"])
                checks[f"cpu_ratio_{mode}"] = verdict(
                    f"A. Redis CPU per task ({mode}), cluster shards=12 / single shards=1", ratio, TARGETS["cpu_ratio"],
                    "<=", "x", detail=f"{summary[f'cluster-s12/{mode}']['cpu_us_per_task']:.0f} vs "
                                      f"{summary[f'single-s1/{mode}']['cpu_us_per_task']:.0f} us; the servers' idle "
                                      f"background subtracted: {net:.2f}x")
                checks[f"cpu_net_ratio_{mode}"] = {"value": net}
            c1 = runs.get(f"cluster-s1/{mode}")
            if c1 and s1:
                r1 = same_rep_ratio(c1, s1, lambda r: r["cpu_us_per_task"])
                out(f"A. (context) Redis CPU per task ({mode}), cluster shards=1 / single shards=1: {r1:.2f}x")
                checks[f"cpu_ratio_cluster_s1_{mode}"] = {"value": r1}
        self.results["A"] = {"sizes": {k: v for k, v in sz.items() if k not in ("noisy", "modes")}, "layouts": layouts,
                             "summary": summary, "runs": runs, "checks": checks}

    # ------------------------------------------------------------------ B: fairness on the cluster
    def part_b(self) -> None:
        sz = self.sizes["noisy"]
        out(f"\n== B. noisy neighbour (fairness scenario 1): heavy pushes {sz['heavy']:,} x {sz['heavy_ms']:g} ms, "
            f"then {sz['light_tenants']} light tenants x {sz['light_each']} x {sz['light_ms']:g} ms; 2 workers x 1 "
            f"slot, steal_targets ['*']; {sz['reps']} rep(s), interleaved")
        runs = self.fairness_runs(self.targets, sz["reps"], lambda: noisy_steps(sz))
        summary = {name: {"light_p99_ms": median(r["light_wait_ms"]["p99"] for r in rs),
                          "light_p50_ms": median(r["light_wait_ms"]["p50"] for r in rs),
                          "heavy_p50_ms": median(r["heavy_wait_ms"]["p50"] for r in rs),
                          "makespan_s": median(r["makespan_s"] for r in rs),
                          "gap_ms_mean": median(r["gap_ms_mean"] for r in rs),
                          "jain": median(r.get("jain", float("nan")) for r in rs), "reps": len(rs)}
                   for name, rs in runs.items()}
        checks: dict[str, Any] = {}
        c12, s1 = runs.get("cluster-s12"), runs.get("single-s1")
        if c12 and s1:
            a12, a1 = summary["cluster-s12"], summary["single-s1"]
            ratio = same_rep_ratio(c12, s1, light_p99)
            checks["light_p99_ratio"] = verdict(
                "B. noisy neighbour light p99 wait, cluster shards=12 / single shards=1", ratio,
                TARGETS["light_p99_ratio"], "<=", "x",
                detail=f"{a12['light_p99_ms']:.0f} vs {a1['light_p99_ms']:.0f} ms; makespan "
                       f"{a12['makespan_s']:.2f} vs {a1['makespan_s']:.2f} s")
        for key, x, y, what in (
                ("light_p99_ratio_cluster_s1", "cluster-s1", "single-s1", "cluster shards=1 / single shards=1"),
                ("light_p99_ratio_vs_single_batch", "cluster-s12", "single-s1-batch",
                 "cluster shards=12 / single shards=1 with batch-leasing slots (--no-prefetch, as a sharded "
                 "worker's slots lease)"),
                ("light_p99_ratio_single_s12", "single-s12", "single-s1",
                 "single Redis shards=12 / single shards=1 (the sharding alone, no cluster)")):
            xs, ys = runs.get(x), runs.get(y)
            if xs and ys:
                r = same_rep_ratio(xs, ys, light_p99)
                out(f"B. (context) light p99 wait, {what}: {r:.2f}x")
                checks[key] = {"value": r}
        self.results["B"] = {"sizes": sz, "summary": summary, "runs": runs, "checks": checks}


    def fairness_runs(self, targets: Sequence[Target], reps: int, steps: Callable[[], Steps],
                      heavy: str = "heavy", fairness: str = "count") -> dict[str, list[dict[str, Any]]]:
        """``reps`` interleaved runs of a fairness scenario (``steps()``: fresh steps and tenants per run)
        on each target, two worker processes of one slot each (``steal_targets: ["*"]``); each run's
        :func:`analyse_noisy`, by target, printed as it ends."""
        bench = Bench(self.s.records_url)
        bench.out = lambda line="": None  # type: ignore[method-assign]  # (this module prints its own lines)
        runs: dict[str, list[dict[str, Any]]] = {}
        for rep in range(reps):
            for t in targets:
                if not self.runnable(t):
                    if rep == 0:
                        out(f"    {t.name}: skipped (needs the sharded queue)")
                    continue
                self.s.flush(t)
                contender = fq_shared(self.s.records_url, fairness, name=t.name, queue_url=self.s.queue_url(t),
                                      shards=t.shards, prefix=PREFIX, prefetch=t.prefetch)
                try:
                    run = bench.run(contender, *steps())
                except Exception as exc:
                    out(f"    [{rep + 1}] {t.name}: FAILED: {type(exc).__name__}: {exc}")
                    continue
                a = analyse_noisy(run, t.shards, heavy)
                runs.setdefault(t.name, []).append(a)
                lw = a["light_wait_ms"]
                out(f"    [{rep + 1}] {t.name:<12} light wait p50/p99/max {lw['p50']:.0f}/{lw['p99']:.0f}/"
                    f"{lw['max']:.0f} ms, {heavy} p50 {a['heavy_wait_ms']['p50']:.0f} ms, makespan "
                    f"{a['makespan_s']:.2f} s, worker gap per task {a['gap_ms_mean']:.2f} ms"
                    + (f", Jain {a['jain']:.3f}" if "jain" in a else "")
                    + (f"  PROBLEMS: {run.problems}" if run.problems else ""))
                if "heavy_shard" in a:
                    hs, other = a["light_wait_ms_heavy_shard"], a["light_wait_ms_other_shards"]
                    out(f"        light p99 in {heavy}'s shard ({a['light_tenants_in_heavy_shard']} tenants) "
                        f"{hs['p99']:.0f} ms, in the other shards {other['p99']:.0f} ms; light max wait by shard "
                        f"({heavy}'s: {a['heavy_shard']}): " + ", ".join(
                            f"{shard}: {w:.0f}" for shard, w in a["light_wait_max_ms_by_shard"].items()))
        return runs

    # ------------------------------------------------------------------ C: the suite's other scenarios
    def part_c(self) -> None:
        """The fairness suite's scenarios 2 (expensive neighbour, fairness "count" and "time") and 3
        (critical flood) on the cluster (``shards = 12``) and on one Redis (``shards = 1``): light-tenant
        p99 wait on each, and their ratio (target <= 1.5x, as for scenario 1)."""
        targets = [t for t in self.targets if t.name in ("cluster-s12", "single-s1")]
        e, f = self.sizes["expensive"], self.sizes["flood"]

        scenarios: list[tuple[str, str, Callable[[], Steps], str, str, int]] = [
            ("2-count", f"expensive neighbour, fairness \"count\": heavy {e['heavy']:,} x {e['heavy_ms']:g} ms, "
             f"{e['light_tenants']} light tenants x {e['light_each']} x {e['light_ms']:g} ms",
             lambda: noisy_steps(e), "heavy", "count", e["reps"]),
            ("2-time", "expensive neighbour, fairness \"time\" (the same tasks)", lambda: noisy_steps(e), "heavy",
             "time", e["reps"]),
            ("3", f"critical flood: 'flood' pushes {f['flood']:,} CRITICAL x {f['ms']:g} ms, then {f['others']} "
             f"tenants x {f['each']} normal", lambda: flood_steps(f), "flood", "count", f["reps"]),
        ]
        results: dict[str, Any] = {}
        for key, title, steps, heavy, fairness, reps in scenarios:
            out(f"\n== C. scenario {key}: {title}; 2 workers x 1 slot; {reps} rep(s), interleaved")
            runs = self.fairness_runs(targets, reps, steps, heavy, fairness)
            entry: dict[str, Any] = {"runs": runs, "summary": {
                name: {"light_p99_ms": median(r["light_wait_ms"]["p99"] for r in rs),
                       "makespan_s": median(r["makespan_s"] for r in rs), "reps": len(rs)}
                for name, rs in runs.items()}}
            c12, s1 = runs.get("cluster-s12"), runs.get("single-s1")
            if c12 and s1:
                a12, a1 = entry["summary"]["cluster-s12"], entry["summary"]["single-s1"]
                entry["check"] = verdict(
                    f"C. scenario {key} light p99 wait, cluster shards=12 / single shards=1",
                    same_rep_ratio(c12, s1, light_p99), TARGETS["light_p99_ratio"], "<=", "x",
                    detail=f"{a12['light_p99_ms']:.0f} vs {a1['light_p99_ms']:.0f} ms; makespan "
                           f"{a12['makespan_s']:.2f} vs {a1['makespan_s']:.2f} s")
            results[key] = entry
        self.results["C"] = {"sizes": {"expensive": e, "flood": f}, "scenarios": results}


def analyse_noisy(run: Run, shards: int = 1, heavy_tenant: str = "heavy") -> dict[str, Any]:
    """Light and heavy waits and the makespan of a noisy-neighbour run (and the fairness suite's
    contention Jain index when numpy is installed); with ``shards`` > 1, the light waits of the
    tenants in the heavy tenant's shard and in the others apart."""
    light = [r.wait_ms for r in run.recs if r.tenant != heavy_tenant]
    heavy = [r.wait_ms for r in run.recs if r.tenant == heavy_tenant]
    res: dict[str, Any] = {"tasks": len(run.recs), "expected": run.expected, "problems": run.problems,
                           "light_wait_ms": wait_stats(light), "heavy_wait_ms": wait_stats(heavy),
                           "makespan_s": max(r.end for r in run.recs) - run.t0 if run.recs else float("nan")}
    if shards > 1:
        from fairque_django.core.shards import ShardMap

        of = ShardMap(PREFIX, shards).of
        home = of(heavy_tenant)
        res["heavy_shard"] = home
        res["light_tenants_in_heavy_shard"] = len({r.tenant for r in run.recs if r.tenant != heavy_tenant
                                                   and of(r.tenant) == home})
        res["light_wait_ms_heavy_shard"] = wait_stats([r.wait_ms for r in run.recs
                                                       if r.tenant != heavy_tenant and of(r.tenant) == home])
        res["light_wait_ms_other_shards"] = wait_stats([r.wait_ms for r in run.recs if of(r.tenant) != home])
        by_shard: dict[int, list[float]] = {}
        for r in run.recs:
            if r.tenant != heavy_tenant:
                by_shard.setdefault(of(r.tenant), []).append(r.wait_ms)
        res["light_wait_max_ms_by_shard"] = {shard: max(w) for shard, w in sorted(by_shard.items())}
    gaps = worker_gaps_ms(run.recs)
    res["gap_ms_mean"] = statistics.fmean(gaps) if gaps else float("nan")
    with contextlib.suppress(ImportError):  # numpy
        res["jain"] = contention_jain(run.recs, run.t0, "count")["mean"]
    return res


def same_rep_ratio(xs: Sequence[dict[str, Any]], ys: Sequence[dict[str, Any]],
                   value: Callable[[dict[str, Any]], float]) -> float:
    """Median of ``value(x) / value(y)`` over the same repetition's runs of two targets."""
    pairs = list(zip(xs, ys, strict=False))
    return paired_ratio([value(a) for a, _ in pairs], [value(b) for _, b in pairs])


def light_p99(run: dict[str, Any]) -> float:
    return float(run["light_wait_ms"]["p99"])


def verdict(name: str, value: float, target: float, op: str, unit: str = "", detail: str = "") -> dict[str, Any]:
    return common_verdict(name, value, target, op, unit, detail)


def plot(results: dict[str, Any], images: Path = IMAGES) -> list[Path]:
    """docs/images/bench_cluster.png: Redis commands and CPU per master of each target, one row per
    drain mode (one bar per master: the cluster's three, the single Redis's one)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.get("A", {}).get("summary", {})
    modes = [m for m in MODES if any(k.endswith(f"/{m}") for k in summary)]
    if not modes:
        return []
    images.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(modes), 2, figsize=(12, 4 * len(modes)), squeeze=False)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    tasks = results["A"]["sizes"]["tasks"]
    for row, mode in zip(axes, modes, strict=True):
        items = [(k, v) for k, v in summary.items() if k.endswith(f"/{mode}")]
        for axis, field, title in ((row[0], "commands_per_master", "Redis commands per master"),
                                   (row[1], "cpu_s_per_master", "Redis CPU seconds per master")):
            x = 0.0
            ticks, labels = [], []
            for key, item in items:
                vals = list(item[field].values())
                for i, v in enumerate(vals):
                    axis.bar(x + i * 0.8, v, 0.8, color=colours[i % len(colours)])
                ticks.append(x + (len(vals) - 1) * 0.4)
                dev = item["split_deviation" if field == "commands_per_master" else "cpu_split_deviation"]
                name = key.removesuffix(f"/{mode}")
                labels.append(name + ("" if math.isnan(dev) or name.endswith("-s1") else
                                      f"\n{100 * dev:.0f} % from even"))
                x += len(vals) * 0.8 + 1.0
            axis.set_xticks(ticks, labels, fontsize=8)
            axis.set_title(f"{title}, {tasks:,} tasks, {mode} workers", fontsize=10)
    fig.tight_layout()
    path = images / "bench_cluster.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 tasks, prod mode, a small noisy neighbour")
    ap.add_argument("--only", default="A,B,C", help="parts: A (command split, CPU per task), B (fairness: the "
                    "noisy neighbour), C (fairness: the suite's scenarios 2 and 3)")
    ap.add_argument("--targets", default=None,
                    help=f"comma-separated subset of {', '.join(t.name for t in ALL_TARGETS)} (default: all; --quick: "
                         "all but single-s1-batch and single-s12)")
    ap.add_argument("--modes", default=None, help="drain modes of part A: prod (as users run it), burst "
                    "(default: both; --quick: prod)")
    ap.add_argument("--tasks", type=int, default=None, help="tasks of part A")
    ap.add_argument("--reps", type=int, default=None, help="repetitions of part A")
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--balance-tags", action="store_true",
                    help="give the slot of each of the 12 shards' hash tags to master n * masters // 12 (shards / "
                         "masters tags each, as an operator could reshard them) instead of the even slot ranges' "
                         "owner: the split that the tenants' own spread leaves")
    ap.add_argument("--plots", action="store_true", help="write the plot in --quick mode too")
    ap.add_argument("--output", type=Path, default=None, help="JSON results path")
    args = ap.parse_args(argv)
    sizes = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.tasks:
        sizes["tasks"] = args.tasks
    if args.reps:
        sizes["reps"] = args.reps
    parts = {p.strip().upper() for p in args.only.split(",") if p.strip()}
    names = ([x.strip() for x in args.targets.split(",") if x.strip()] if args.targets else
             [t.name for t in ALL_TARGETS if not (args.quick and t.name in B_ONLY)])
    targets = [t for t in ALL_TARGETS if t.name in names]
    wanted = {x.strip() for x in args.modes.split(",")} if args.modes else set(sizes["modes"])
    modes = [m for m in MODES if m in wanted]
    output = args.output or RESULTS_DIR / ("cluster_quick.json" if args.quick else "cluster.json")
    install_signal_handlers()
    started = perf()
    servers_procs = Processes()  # the servers outlive every run's worker processes (PROCS)
    try:
        servers = Servers(servers_procs, args.masters, 12 if args.balance_tags else 0)
        bench = ClusterBench(servers, sizes, targets, modes)
        meta = run_meta(servers.single_url, mode="quick" if args.quick else "full", sizes=sizes,
                        targets=[t.name for t in targets], modes=modes, masters=args.masters,
                        cluster_ports=servers.cluster.ports, sharded_queue=bench.sharded,
                        balance_tags=args.balance_tags)
        with contextlib.suppress(Exception):
            import subprocess

            meta["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                            cwd=Path(__file__).resolve().parent, check=False).stdout.strip()
        load = meta.get("load_avg")
        out(f"cluster benchmark ({meta['mode']}): Redis {meta.get('redis_version')}, a {args.masters}-master cluster "
            f"on ports {servers.cluster.ports} + a single redis-server, Python {meta['python']}, {meta['cpus']} CPUs"
            + (f" (load average {load[0]:.1f})" if load else "") + f", commit {meta.get('commit', '?')}; sharded queue "
            + ("available" if bench.sharded else "NOT available (shards=1 only)")
            + ("; the 12 shards' tags balanced over the masters (--balance-tags)" if args.balance_tags else "")
            + f"; logs in {PROCS.logdir}")
        if "A" in parts:
            bench.part_a()
        if "B" in parts:
            bench.part_b()
        if "C" in parts:
            bench.part_c()
        if args.plots or not args.quick:
            for path in plot(bench.results):
                out(f"plot written to {path}")
    finally:
        PROCS.stop_all()
        servers_procs.close()
    results = {"meta": meta, **bench.results}
    meta["elapsed_s"] = perf() - started
    out(f"\ntotal {meta['elapsed_s']:.0f} s")
    write_json(output, results)
    out(f"results written to {output}")
    return 0


def cli() -> None:
    """The command line: report, never fail the build."""
    runner_cli(main)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
