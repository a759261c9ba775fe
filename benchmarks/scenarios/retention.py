"""Per-tenant state left in Redis after the tenants' work is done (issue 17):
``python3 benchmarks/bench_retention.py [--tenants N] [--retention S] [--wait S] [--queue-option KEY=VALUE ...]``.

Two queues side by side in one database (each its own key prefix): 10 one-task tenants and N
one-task tenants (default 10,000; the issue's figure is for 100,000). Each queue's tasks are pushed
and drained by a burst worker (in this process, default settings); then, optionally, a worker
idles for ``--wait`` seconds (so that a retention window can pass and periodic upkeep can run:
give the window with ``--queue-option``). Then it prints, per tenant beyond the first 10:

- keys left (persistent ones; keys with a TTL, e.g. kept results, are counted apart: they go by
  themselves), and the families they belong to (``P:m:<tenant>``, ...);
- hash fields / set and sorted-set members that name a tenant, by key (``P:queue:stats``,
  ``P:vfinish:<part>``, ...);
- bytes: MEMORY USAGE of the persistent keys, and the INFO used_memory delta;

and the time of ``TaskQueue.get_stats()`` with N tenants against 10 (interleaved calls, medians).

``--retention S`` sets ``queue.tenant_retention_seconds`` to S for both queues; after the N-tenant
drain, once S seconds have passed, an idle worker runs (its heartbeat sweeps) until no tenant is
left marked idle (at most ``--wait`` seconds, default 120 then): the time the sweep took is
reported. The 10-tenant queue is not swept: it is the baseline of ``get_stats`` with 10 tenants'
state (so the growth per tenant can read a hair below 0).
Target (issue 17): 0 keys and 0 fields per tenant once the retention window has passed, and
``get_stats`` within ±50 % of its time with 10 tenants. The counters are exact on the private
redis-server it starts by default. Results: ``benchmarks/results/retention.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from benchmarks.harness import RESULTS_DIR, default_url, report
from benchmarks.harness import procs as hp
from benchmarks.harness import server as srv
from benchmarks.harness import stats as st
from benchmarks.harness.report import out
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task
from fairque_django.core.worker import Worker

DEFAULT_URL = default_url(9)
RESULTS = RESULTS_DIR / "retention.json"
TENANT = re.compile(r"rt:\d+")
TASK_ID = re.compile(r"[0-9a-f]{16,}")
perf = time.perf_counter


@task(name="retention.noop")
def noop(i: int = 0) -> None:
    """One task per tenant; does nothing."""


def make_queue(url: str, prefix: str, options: dict[str, Any]) -> TaskQueue:
    config = FairQueueConfig.from_dict({
        "redis": {"url": url},
        "workers": [{"id": "ret-w", "assigned_users": ["rt:*"]}],
        "queue": {**options, "stats_prefix": prefix},
    }, worker_id="ret-w")
    return TaskQueue(config)


def run_worker(q: TaskQueue, *, burst: bool, seconds: float = 0.0, until: Any = None) -> float:
    """Drain ``q`` with a burst worker, or run an idle one for ``seconds`` (or until ``until()``
    holds, checked every 0.1 s); returns how long it ran."""
    w = Worker(q.config, worker_id="ret-w", install_signal_handlers=False, concurrency=1, burst=burst,
               queue=q)
    t0 = perf()
    if burst:
        w.start()
        return perf() - t0
    th = threading.Thread(target=w.start, daemon=True)
    th.start()
    while perf() - t0 < seconds and not (until is not None and until()):
        time.sleep(0.1)  # polls the condition; the worker runs in its thread
    took = perf() - t0
    w.stop()
    th.join(30)
    return took


def fill_and_drain(q: TaskQueue, tenants: int, chunk: int = 5_000) -> float:
    """Push one task for each of ``tenants`` tenants, drain them; returns the drain's seconds."""
    for start in range(0, tenants, chunk):
        tasks = [noop.create_task((i,), user_id=f"rt:{i}") for i in range(start, min(tenants, start + chunk))]
        assert q.push_batch(tasks)["pushed"] == len(tasks)
    t0 = perf()
    run_worker(q, burst=True)
    return perf() - t0


def family(key: str) -> str:
    """The key's name with tenant ids, task ids and a tenant id's length (``result:<n>:<tenant>``)
    replaced by placeholders."""
    name = TASK_ID.sub("<id>", TENANT.sub("<tenant>", key))
    return re.sub(r":\d+:<tenant>", ":<n>:<tenant>", name)


def census(r: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key of one queue: persistent and expiring keys, entries, entries naming a tenant,
    MEMORY USAGE, by key family."""
    keys = [k.decode() for k in r.scan_iter(match=f"{{{prefix}}}:*", count=2_000)]
    fams: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, float] = defaultdict(float)
    for start in range(0, len(keys), 1_000):
        batch = keys[start:start + 1_000]
        pipe = r.pipeline(transaction=False)
        for k in batch:
            pipe.type(k)
            pipe.pttl(k)
            pipe.memory_usage(k, samples=0)
        meta = pipe.execute()
        for i, k in enumerate(batch):
            kind, ttl, size = meta[3 * i].decode(), int(meta[3 * i + 1]), int(meta[3 * i + 2] or 0)
            expiring = ttl > 0
            entries, named = entry_counts(r, k, kind)
            f = fams[family(k) + (" (expires)" if expiring else "")]
            f["keys"] += 1
            f["entries"] += entries
            f["bytes"] += size
            f["tenant_entries"] += entries if TENANT.search(k) else named
            scope = "expiring" if expiring else "persistent"
            totals[f"{scope}_keys"] += 1
            totals[f"{scope}_bytes"] += size
            totals[f"{scope}_entries"] += entries
            if not expiring:
                totals["tenant_keys"] += 1 if TENANT.search(k) else 0
                totals["tenant_entries_in_shared_keys"] += 0 if TENANT.search(k) else named
    return {"totals": dict(totals), "families": {k: dict(v) for k, v in sorted(fams.items())}}


def entry_counts(r: redis.Redis, key: str, kind: str) -> tuple[int, int]:
    """(entries of the key, entries that name a tenant) -- fields, members or list items."""
    items: Any
    if kind == "hash":
        items = r.hkeys(key)
    elif kind == "zset":
        items = r.zrange(key, 0, -1)
    elif kind == "set":
        items = r.smembers(key)
    elif kind == "list":
        return int(r.llen(key)), 0
    else:
        return 1, 0
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in items]
    return len(names), sum(1 for n in names if TENANT.search(n))


def time_stats(queues: dict[str, TaskQueue], calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in queues}
    for q in queues.values():
        q.get_stats()  # warm: scripts, connection
    for i in range(calls):
        for name in list(queues)[i % 2:] + list(queues)[:i % 2]:
            t0 = perf()
            queues[name].get_stats()
            times[name].append(perf() - t0)
    return times


def parse_options(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, default=10_000, help="one-task tenants (default 10,000; issue: 100,000)")
    ap.add_argument("--quick", action="store_true", help="1,000 tenants (smoke run)")
    ap.add_argument("--wait", type=float, default=0.0,
                    help="after the drain, a worker idles this many seconds before the census (retention window)")
    ap.add_argument("--retention", type=float, default=None, metavar="S",
                    help="queue.tenant_retention_seconds for both queues; the N-tenant queue is then swept by an "
                         "idle worker once S seconds have passed (up to --wait, default 120 s)")
    ap.add_argument("--queue-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a `queue` setting for both queues (JSON value), e.g. a retention window; repeatable")
    ap.add_argument("--stats-calls", type=int, default=20, help="get_stats calls per queue (interleaved)")
    ap.add_argument("--private-server", action=argparse.BooleanOptionalAction, default=True,
                    help="a throw-away redis-server of our own (default on)")
    ap.add_argument("--redis-url", default=DEFAULT_URL,
                    help=f"with --no-private-server: the Redis (its DB is flushed; default {DEFAULT_URL})")
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.quick:
        args.tenants, args.stats_calls = 1_000, 6
    options = parse_options(args.queue_option)
    if args.retention is not None:
        options["tenant_retention_seconds"] = args.retention
        if args.wait <= 0:
            args.wait = 120.0
    procs = hp.Processes()
    if args.private_server:
        args.redis_url = srv.start_private_redis(procs, srv.url_db(args.redis_url))
    problem = srv.require_redis(args.redis_url)
    if problem:
        out(f"benchmark skipped: {problem}")
        return 0
    r = srv.connect(args.redis_url)
    server = srv.Server(r)
    srv.flush_db(args.redis_url)
    n: int = args.tenants
    cases = {"10": 10, str(n): n}
    queues = {name: make_queue(args.redis_url, f"fqret{name}", options) for name in cases}
    meta = report.run_meta(args.redis_url, tenants=n, wait_s=args.wait, queue_options=options,
                           private_server=args.private_server)
    out(f"per-tenant state after the work is done: 10 vs {n:,} one-task tenants, queue options {options or 'default'}, "
        f"wait {args.wait:g} s (Redis {meta.get('redis_version')}"
        f"{', private server' if args.private_server else ', SHARED server: used_memory is not exact'})")
    res: dict[str, Any] = {}
    try:
        # untimed warm-up: scripts loaded, connections and allocations made, then flushed
        fill_and_drain(make_queue(args.redis_url, "fqretwarm", options), 10)
        srv.flush_db(args.redis_url)
        for name, tenants in cases.items():
            m0 = server.used_memory()
            drain_s = fill_and_drain(queues[name], tenants)
            sweep: dict[str, Any] = {}
            if args.retention is not None and name != "10":
                q = queues[name]
                left_at_drain = int(r.zcard(q.keys.idle))
                time.sleep(args.retention)  # the window passes for the last tenant drained
                before = server.commandstats()
                took = run_worker(q, burst=False, seconds=args.wait, until=lambda q=q: r.zcard(q.keys.idle) == 0)
                delta = srv.stats_delta(before, server.commandstats())
                script_usec = srv.server_exec_usec(delta, scripted=True)
                inner = sum(v["calls"] for k, v in delta.items() if k not in srv.SCRIPT_CMDS)
                sweep = {"idle_marks_at_drain_end": left_at_drain, "sweep_s": took,
                         "idle_marks_left": int(r.zcard(q.keys.idle)),
                         "sweep_script_usec_per_tenant": script_usec / max(1, left_at_drain),
                         "sweep_commands_per_tenant": inner / max(1, left_at_drain)}
                out(f"   sweep: {left_at_drain:,} tenants marked idle when the drain ended; an idle worker's heartbeat "
                    f"swept them in {took:.1f} s after the {args.retention:g} s window, {sweep['idle_marks_left']:,} "
                    f"left; Redis time in scripts {sweep['sweep_script_usec_per_tenant']:.1f} us and "
                    f"{sweep['sweep_commands_per_tenant']:.1f} commands per tenant (the idle worker's own pops "
                    f"and beats included)")
            elif args.wait > 0 and args.retention is None:
                run_worker(queues[name], burst=False, seconds=args.wait)
            stats = queues[name].get_stats()
            m1 = server.used_memory()
            res[name] = {"tenants": tenants, "drain_s": drain_s, "used_memory_delta": m1 - m0, **sweep,
                         "completed": stats.get("tasks_completed"), **census(r, f"fqret{name}")}
            out(f"   {tenants:,} tenants drained in {drain_s:.1f} s ({stats.get('tasks_completed')} completed); "
                f"{res[name]['totals']}")
        times = time_stats(queues, args.stats_calls)
    finally:
        with contextlib.suppress(redis.RedisError):
            srv.flush_db(args.redis_url)
        procs.close()
    small, big = res["10"], res[str(n)]
    extra = n - 10

    def per(field: str) -> float:
        grown: float = big["totals"].get(field, 0.0) - small["totals"].get(field, 0.0)
        return grown / extra

    t10, tn = st.median(times["10"]) * 1e3, st.median(times[str(n)]) * 1e3
    summary = {
        "persistent_keys_per_tenant": per("persistent_keys"),
        # what names a tenant in the N-tenant queue, / N (not a growth: the 10-tenant queue may hold its
        # tenants' state while the N-tenant one was swept)
        "tenant_named_keys_per_tenant": big["totals"].get("tenant_keys", 0.0) / n,
        "tenant_fields_in_shared_keys_per_tenant": big["totals"].get("tenant_entries_in_shared_keys", 0.0) / n,
        "persistent_entries_per_tenant": per("persistent_entries"),
        "persistent_bytes_per_tenant": per("persistent_bytes"),
        "expiring_keys_per_tenant": per("expiring_keys"),
        "used_memory_per_tenant": (big["used_memory_delta"] - small["used_memory_delta"]) / extra,
        # the same less what the expiring keys (kept results) take: what stays for good
        "used_memory_persistent_per_tenant": (big["used_memory_delta"] - small["used_memory_delta"]) / extra
        - per("expiring_bytes"),
        "get_stats_ms_10": t10, f"get_stats_ms_{n}": tn, "get_stats_ratio": tn / t10,
    }
    out()
    rows = []
    for fam, f in big["families"].items():
        f10 = small["families"].get(fam, {})
        rows.append([fam, f["keys"], (f["keys"] - f10.get("keys", 0)) / extra, f["entries"],
                     (f["tenant_entries"] - f10.get("tenant_entries", 0)) / extra,
                     (f["bytes"] - f10.get("bytes", 0)) / extra])
    table = report.table(["key family", "keys", "keys/tenant", "entries", "entries naming a tenant, /tenant",
                          "MEMORY USAGE B/tenant"], rows,
                         title=f"After {n:,} one-task tenants were drained (per tenant = growth over the "
                               f"10-tenant queue / {extra:,})")
    out()
    out(f"per tenant, forever (persistent keys): {summary['tenant_named_keys_per_tenant']:.2f} keys named after it, "
        f"{summary['tenant_fields_in_shared_keys_per_tenant']:.2f} fields/members naming it in shared keys, "
        f"{summary['persistent_bytes_per_tenant']:.0f} B (MEMORY USAGE); all persistent entries "
        f"{summary['persistent_entries_per_tenant']:.2f}; used_memory {summary['used_memory_per_tenant']:.0f} B "
        f"({summary['used_memory_persistent_per_tenant']:.0f} B without the {summary['expiring_keys_per_tenant']:.2f} "
        f"expiring keys per tenant, e.g. kept results)")
    out(f"get_stats: {tn:.2f} ms with {n:,} tenants vs {t10:.2f} ms with 10 ({tn / t10:.2f}x; "
        f"median of {args.stats_calls} interleaved calls)")
    verdicts = [
        report.verdict("keys left per tenant", summary["tenant_named_keys_per_tenant"], 0.0, "<="),
        report.verdict("fields left per tenant in shared keys", summary["tenant_fields_in_shared_keys_per_tenant"],
                       0.0, "<="),
        report.verdict(f"get_stats time, {n:,} tenants / 10 tenants", tn / t10, 1.5, "<=", "x"),
    ]
    report.write_json(args.output, {"meta": meta, "summary": summary, "cases": res, "verdicts": verdicts,
                                    "get_stats_s": times, "table": table})
    out(f"\nresults written to {args.output}")
    return 0
