"""Keyspace shards, the idle and wake-up costs: ``python3 benchmarks/bench_shards.py [--quick]``.

For ``queue.shards`` = 1, 4, 12 (each on a private throw-away redis-server, so INFO commandstats
counts this process only):

- *idle cost*: a thread worker (4 slots, ``poll_interval_seconds`` 1, heartbeat every 5 s) with
  nothing to do: the commands per second its client sends (counted on its connections: a script call
  is one; the heartbeat's and the scheduler's included), and of those the script calls (EVALSHA) and
  BLPOPs per second (INFO commandstats), over ``--idle`` seconds;
- *wake-up latency*: a slot waiting in ``wait_and_pop`` (timeout 5 s) and a push from another thread
  into each shard in turn; the time from the push's start to the waiter's return (median and max
  over the pushes). With shards = 1 the waiter parks in the partition and the push hands it the
  task; with shards > 1 it waits on the home wake list and pops after the push's wake-up;
- *busy cost*: a burst worker (4 slots) draining no-op tasks of 40 tenants: the round trips and
  script calls per task and the tasks per second (one process on one core: a client-side figure).

The exit code is 0 whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import redis

from example_project.embedded_redis import start_server
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.handler import TaskHandler
from fairque_django.core.models import Task
from fairque_django.core.sharded import open_queue
from fairque_django.core.shards import ShardMap
from fairque_django.core.worker.threads import Worker

perf = time.perf_counter


def config(url: str, shards: int) -> FairQueueConfig:
    return FairQueueConfig.from_dict({
        "redis": {"url": url},
        "workers": [{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 4, "poll_interval_seconds": 1.0,
                     "heartbeat_interval_seconds": 5.0}],
        "queue": {"shards": shards},
    }, worker_id="w1")


def idle_cost(url: str, shards: int, seconds: float) -> dict[str, float]:
    raw = redis.Redis.from_url(url)
    raw.flushdb()
    cfg = config(url, shards)
    worker = Worker(cfg, worker_id="w1", install_signal_handlers=False)
    count_round_trips()
    th = threading.Thread(target=worker.start)
    th.start()
    time.sleep(1.5)  # started, the first heartbeat done, the slots idle
    raw.config_resetstat()
    before = SENT["n"]
    time.sleep(seconds)
    trips = SENT["n"] - before
    stats = raw.info("commandstats")
    worker.stop()
    th.join(10)
    evalsha = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    blpop = int(stats.get("cmdstat_blpop", {}).get("calls", 0))
    return {"round trips/s": trips / seconds, "scripts/s": evalsha / seconds, "blpop/s": blpop / seconds}


SENT = {"n": 0}


def count_round_trips() -> None:
    """Count what this process's redis-py connections send: one per command or pipeline (a round trip)."""
    cls = redis.connection.AbstractConnection
    send = cls.send_packed_command
    if getattr(send, "counting", False):
        return

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        SENT["n"] += 1
        send(self, command, check_health)

    counted.counting = True  # type: ignore[attr-defined]
    cls.send_packed_command = counted  # type: ignore[method-assign]


class Noop(TaskHandler):
    def _process_task(self, task: Task) -> bool:
        return True


def busy_cost(url: str, shards: int, tasks: int) -> dict[str, float]:
    """A burst worker (4 slots) draining ``tasks`` no-op tasks of 40 tenants: round trips and script
    calls per task, tasks per second."""
    raw = redis.Redis.from_url(url)
    raw.flushdb()
    cfg = config(url, shards)
    q = open_queue(cfg)
    for lo in range(0, tasks, 1000):
        q.push_batch([Task.create(user_id=f"t{i % 40}", payload={}) for i in range(lo, min(tasks, lo + 1000))])
    count_round_trips()
    raw.config_resetstat()
    before = SENT["n"]
    started = perf()
    Worker(cfg, Noop(), worker_id="w1", burst=True, install_signal_handlers=False).start()
    took = perf() - started
    trips = SENT["n"] - before
    evalsha = int(raw.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    return {"trips/task": trips / tasks, "scripts/task": evalsha / tasks, "tasks/s": tasks / took}


def wake_latency(url: str, shards: int, pushes: int) -> dict[str, float]:
    raw = redis.Redis.from_url(url)
    raw.flushdb()
    cfg = config(url, shards)
    waiter, pusher = open_queue(cfg, worker_id="w1"), open_queue(cfg)
    shard_map = ShardMap("fq", shards)
    users = [u for u in (f"u{i}" for i in range(1000)) if shards == 1 or shard_map.of(u) == 0][:1]
    users += [next(u for u in (f"u{i}" for i in range(1000)) if shard_map.of(u) == s) for s in range(1, shards)]
    waiter.wait_and_pop("w1", timeout=0.2)
    times: list[float] = []
    for i in range(pushes):
        user = users[i % len(users)]
        got: dict[str, Any] = {}

        def wait(got: dict[str, Any] = got) -> None:
            got["task"], _ = waiter.wait_and_pop("w1", timeout=5.0)
            got["at"] = perf()

        th = threading.Thread(target=wait)
        th.start()
        time.sleep(0.05)  # the waiter blocks
        started = perf()
        pusher.push(Task.create(user_id=user, payload={}))
        th.join(6)
        assert got.get("task") is not None, "the waiter did not wake"
        times.append((got["at"] - started) * 1000)
        waiter.complete(got["task"])
    return {"median ms": statistics.median(times), "max ms": max(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement per case")
    args = parser.parse_args()
    idle = 3.0 if args.quick else args.idle
    pushes = 12 if args.quick else 48
    tasks = 2000 if args.quick else 10_000
    proc, port, _ = start_server()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        print(f"{'shards':>6} | {'idle round trips/s':>18} | {'scripts/s':>9} | {'BLPOPs/s':>8} | "
              f"{'wake median ms':>14} | {'wake max ms':>11} | {'busy trips/task':>15} | {'scripts/task':>12} | "
              f"{'tasks/s':>7}")
        for shards in (1, 4, 12):
            cost = idle_cost(url, shards, idle)
            wake = wake_latency(url, shards, pushes)
            busy = busy_cost(url, shards, tasks)
            print(f"{shards:>6} | {cost['round trips/s']:>18.1f} | {cost['scripts/s']:>9.1f} | "
                  f"{cost['blpop/s']:>8.1f} | {wake['median ms']:>14.2f} | {wake['max ms']:>11.2f} | "
                  f"{busy['trips/task']:>15.2f} | {busy['scripts/task']:>12.2f} | {busy['tasks/s']:>7.0f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    main()
