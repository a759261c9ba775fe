"""Where the Redis CPU of a batched task lifecycle goes, script by script (issue 17):
``python3 benchmarks/bench_scripts.py [--tasks N] [--tenants K] [--batch B]``.

A worker's batched path on a private redis-server: ``push_batch`` of 250, then ``pop_many(B)``
and ``complete_and_pop_many`` of B until drained (run times given, metrics buffered and flushed per
chunk), over K tenants. Prints, per task, each command's calls and time from ``INFO
commandstats`` (``EVALSHA`` includes the commands the scripts call, which are also counted under
their own names: the difference is the scripts' own Lua work), then each script's time per task
from a second pass logged by ``SLOWLOG`` with a threshold of 0 (``pop.lua`` per task leased,
``complete.lua`` per task acknowledged, ``push.lua`` per task pushed).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from benchmarks.harness import procs as hp
from benchmarks.harness import server as srv
from benchmarks.scenarios.core_cost import make_config, make_tasks
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.scripts.buffered import MetricsBuffer

CHUNK = 250


def drain(q: TaskQueue, tasks: list[Task], batch: int) -> None:
    """Push ``tasks`` in chunks, each drained in batches with its acks, metrics flushed per chunk."""
    for lo in range(0, len(tasks), CHUNK):
        q.push_batch(tasks[lo:lo + CHUNK])
        got = q.pop_many(batch)
        while got:
            got = q.complete_and_pop_many([(t, 0.0005, None) for t in got], batch)[1]
        q.flush_metrics()


def script_names(q: TaskQueue) -> dict[str, str]:
    """sha1 -> script name, for the scripts the queue has loaded."""
    found: dict[str, str] = {}
    for name, script in vars(q.scripts).items():
        sha = getattr(script, "sha", None)
        if isinstance(sha, str):
            found[sha] = name
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=4_000, help="tasks per pass (default 4,000)")
    ap.add_argument("--tenants", type=int, default=10, help="tenants (default 10)")
    ap.add_argument("--batch", type=int, default=16, help="tasks leased per call (default 16)")
    args = ap.parse_args(argv)
    procs = hp.Processes()
    url = srv.start_private_redis(procs)
    r = srv.connect(url)
    users = [f"u{i}" for i in range(args.tenants)]
    q = TaskQueue(make_config(url, users))
    q.metrics_buffer = MetricsBuffer()
    n = args.tasks
    drain(q, make_tasks(CHUNK, users, tag="warm"), args.batch)  # scripts loaded, rotation warm
    r.config_resetstat()
    drain(q, make_tasks(n, users), args.batch)
    stats: dict[str, Any] = r.info("commandstats")
    print(f"batched lifecycle, {n:,} tasks, {args.tenants} tenants, batches of {args.batch} (INFO commandstats):")
    for name, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:16]:
        print(f"  {name.removeprefix('cmdstat_'):18s} calls/task {v['calls'] / n:6.2f}   us/task {v['usec'] / n:7.2f}")
    inner = sum(v["usec"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_eval"))
    print(f"  commands per task {sum(v['calls'] for v in stats.values()) / n:.2f}; EVALSHA "
          f"{stats.get('cmdstat_evalsha', {}).get('usec', 0) / n:.1f} us/task, of which the commands it calls "
          f"{inner / n:.1f}")
    r.config_set("slowlog-log-slower-than", 0)
    r.config_set("slowlog-max-len", 1_000_000)
    r.slowlog_reset()
    drain(q, make_tasks(n, users, tag="slowlog"), args.batch)
    entries = r.slowlog_get(1_000_000)
    names = script_names(q)
    per: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        words = e["command"].split()
        if words and words[0].lower() == b"evalsha":
            sha = words[1].decode()
            per[names.get(sha, sha[:8])][0] += 1
            per[names.get(sha, sha[:8])][1] += e["duration"]
    print("by script (SLOWLOG, threshold 0; us per task of the pass):")
    for name, (calls, usec) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:18s} calls {calls:5d}   us/call {usec / calls:8.1f}   us/task {usec / n:6.2f}")
    procs.stop_all()
    return 0
