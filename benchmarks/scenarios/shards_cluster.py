"""Keyspace shards on a Redis Cluster: ``python3 benchmarks/bench_shards_cluster.py [--shards 12]
[--tasks 20000] [--even]``.

Starts a 3-master cluster on loopback ports (example_project/embedded_cluster.py), pushes ``--tasks`` no-op
tasks of 200 tenants, drains them with one thread worker (4 slots, burst mode) and prints the Redis
commands each master ran (INFO commandstats, the commands inside scripts included) and their
deviation from an even split. ``--even``: a prefix whose shard tags' slots put as many shards on
each master (the default prefix ``fq`` puts 3, 4 and 5 of 12 on them).

The exit code is 0 whatever the results: benchmarks report, they do not assert.
"""

from __future__ import annotations

import argparse
import time

from redis.cluster import RedisCluster

from benchmarks.scenarios.shards import Noop
from example_project.embedded_cluster import Cluster, start_cluster
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.keys import Keys
from fairque_django.core.models import Task
from fairque_django.core.sharded import open_queue
from fairque_django.core.worker.threads import Worker

TENANTS = 200


def even_prefix(cluster: Cluster, client: RedisCluster, shards: int) -> str:
    """A prefix whose shard tags' slots put the same number of shards on every master."""
    for i in range(100_000):
        prefix = f"fq{i}"
        owners = [cluster.owner(client.keyslot(Keys(prefix, s).base)).port for s in range(shards)]
        if len({owners.count(n.port) for n in cluster.masters}) == 1:
            return prefix
    return "fq"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--even", action="store_true", help="a prefix placing the shards evenly")
    args = parser.parse_args()
    cluster = start_cluster(masters=3)
    try:
        client = RedisCluster(host="127.0.0.1", port=cluster.masters[0].port)
        prefix = even_prefix(cluster, client, args.shards) if args.even else "fq"
        config = FairQueueConfig.from_dict({
            "workers": [{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 4}],
            "queue": {"shards": args.shards, "stats_prefix": prefix}}, worker_id="w1")
        queue = open_queue(config, client)
        for node in cluster.masters:
            node.client().config_resetstat()
        for lo in range(0, args.tasks, 1000):
            queue.push_batch([Task.create(user_id=f"tenant{i % TENANTS}", payload={})
                              for i in range(lo, min(args.tasks, lo + 1000))])
        started = time.perf_counter()
        Worker(config, Noop(), worker_id="w1", queue=queue, burst=True, install_signal_handlers=False).start()
        took = time.perf_counter() - started
        calls = [sum(int(v["calls"]) for k, v in node.client().info("commandstats").items()
                     if not k.startswith(("cmdstat_info", "cmdstat_config"))) for node in cluster.masters]
        placed = [sum(1 for q in queue.shard_queues if cluster.owner(client.keyslot(q.keys.base)) is node)
                  for node in cluster.masters]
        mean = sum(calls) / len(calls)
        print(f"shards {args.shards}, prefix {prefix!r}: {queue.get_stats()['tasks_completed']} tasks drained in "
              f"{took:.1f} s ({args.tasks / took:.0f}/s)")
        print(f"shards per master: {placed}; commands per master: {calls} (total {sum(calls)}); deviation from "
              f"even: {', '.join(f'{(x - mean) / mean * 100:+.1f} %' for x in calls)}")
        client.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
