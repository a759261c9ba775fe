"""fairque_django as a contender: its tasks, its producers and its worker process.

The worker process is :mod:`.fairque_worker` (a module of its own: the worker imports this one
for its tasks, which must be registered once).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.contenders import bodies
from benchmarks.contenders.base import Contender, Job, System
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.registry import task

WORKER_ID = "bench-w1"
PREFIX = "fqbench"
TASK_MODULES = ("benchmarks.contenders.fairque_app",)


@task(name="bench.noop")
def noop(i: int = 0) -> None:
    bodies.noop_body(i)


@task(name="bench.record")
def record(i: int) -> None:
    bodies.record_body(i)


@task(name="bench.sleep")
def sleep_ms(ms: float = 10.0) -> None:
    bodies.sleep_body(ms)


@task(name="bench.work", max_retries=0)
def work(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    bodies.work_body(tenant, idx, t_enq, sleep_ms)


@task(name="bench.work_slot", max_retries=0)
def work_slot(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    """``bench.work`` that also records its slot (thread name)."""
    bodies.work_body(tenant, idx, t_enq, sleep_ms, slot=True)


def open_bench_queue(config: FairQueueConfig, client: Any = None, worker_id: str | None = None) -> Any:
    """The queue of ``config`` on ``client`` (a ``redis.Redis`` or a ``RedisCluster``): every shard of
    ``queue.shards`` through :func:`fairque_django.core.sharded.open_queue` when the library has it,
    else a plain :class:`TaskQueue` (one keyspace shard only)."""
    try:
        from fairque_django.core.sharded import open_queue  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        if config.queue.shards > 1:
            raise RuntimeError(f"queue.shards = {config.queue.shards} needs fairque_django.core.sharded.open_queue, "
                               "which this version of the library does not have") from None
        from fairque_django.core.queue import TaskQueue

        return TaskQueue(config, client, worker_id=worker_id)
    return open_queue(config, client=client, worker_id=worker_id)


def sharded_queues_available() -> bool:
    """Whether this version of the library can open a queue of more than one keyspace shard."""
    try:
        import fairque_django.core.sharded  # noqa: F401  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return False
    return True


def users(n: int, prefix: str = "user:") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def make_config(url: str, assigned: Sequence[str], *, prefix: str = PREFIX, worker_id: str = WORKER_ID,
                concurrency: int = 1, poll_interval: float = 1.0) -> FairQueueConfig:
    return FairQueueConfig.from_dict(
        {
            "redis": {"url": url},
            "workers": [{"id": worker_id, "assigned_users": list(assigned),
                         "max_concurrent_tasks": concurrency, "poll_interval_seconds": poll_interval}],
            "queue": {"stats_prefix": prefix},
        },
        worker_id=worker_id,
    )


# --------------------------------------------------------------------------- producers

class Fairque(System):
    """Throughput contender: one worker process with ``concurrency`` slots serving ``users`` users."""

    def __init__(self, url: str, concurrency: int = 1, n_users: int = 100) -> None:
        super().__init__(url)
        from fairque_django.core.queue import TaskQueue

        self.concurrency = concurrency
        self.key = f"fairque-c{concurrency}"
        self.label = f"fairque (concurrency {concurrency})"
        self.users = users(n_users)
        self.n_users = n_users
        self.queue = TaskQueue(make_config(url, self.users, concurrency=concurrency))
        self.funcs: dict[str, Any] = {"noop": noop, "record": record}

    def batch(self, n: int) -> None:
        users_, k = self.users, self.n_users
        tasks = [noop.create_task((i,), user_id=users_[i % k]) for i in range(n)]
        r = self.queue.push_batch(tasks)
        assert r["pushed"] == n, {k: v for k, v in r.items() if k != "task_ids"}

    def one(self, func: str, i: int) -> None:
        self.queue.push(self.funcs[func].create_task((i,), user_id=self.users[i % self.n_users]))

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "benchmarks.contenders.fairque_worker", "--redis-url", self.url, "--users",
               str(self.n_users), "--concurrency", str(self.concurrency)]
        if burst:
            cmd.append("--burst")
        if profile:
            cmd += ["--profile", profile]
        return cmd


class FairqueDjango(System):
    """fairque_django as a Django project runs it (:mod:`.django_settings`, default settings): tasks
    enqueued with :func:`fairque_django.enqueue_many` (``chunk`` per call, one tenant per call) or
    :func:`fairque_django.enqueue`; the worker started as ``manage.py runfairworker`` starts it."""

    SETTINGS = "benchmarks.contenders.django_settings"

    def __init__(self, url: str, concurrency: int = 1, *, burst: bool = False, tenants: int = 10,
                 chunk: int = 1_000, quiet: bool = False) -> None:
        super().__init__(url)
        setup_django(url)
        from fairque_django import enqueue, enqueue_many

        self.concurrency, self.burst_mode, self.quiet = concurrency, burst, quiet
        self.key = f"fqdj-c{concurrency}" + ("-burst" if burst else "")
        self.label = f"fairque runfairworker --concurrency {concurrency}" + (" --burst" if burst else "")
        self.tenants = users(tenants, "tenant:")
        self.chunk = chunk
        self._enqueue, self._enqueue_many = enqueue, enqueue_many
        self.funcs: dict[str, Any] = {"noop": noop, "record": record}

    def batch(self, n: int) -> None:
        tenants, k, create = self.tenants, len(self.tenants), noop.create_task
        for c, start in enumerate(range(0, n, self.chunk)):
            tasks = [create((i,)) for i in range(start, min(n, start + self.chunk))]
            self._enqueue_many(tasks, user=tenants[c % k])

    def one(self, func: str, i: int) -> None:
        self._enqueue(self.funcs[func].create_task((i,)), user=self.tenants[i % len(self.tenants)])

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        from benchmarks.contenders.django_settings import WORKER_ID as DJ_WORKER

        cmd = [sys.executable, "-m", "django", "runfairworker", DJ_WORKER, "--settings", self.SETTINGS,
               "--concurrency", str(self.concurrency)]
        if burst or self.burst_mode:
            cmd.append("--burst")
        if self.quiet:
            cmd += ["--loglevel", "WARNING"]
        return cmd

    @property
    def exits_by_itself(self) -> bool:
        return self.burst_mode


def setup_django(url: str) -> None:
    """Set up :mod:`.django_settings` in this process (once), on ``url``."""
    import os

    import django
    from django.apps import apps

    if apps.ready:
        return
    os.environ["BENCH_REDIS_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = FairqueDjango.SETTINGS
    django.setup()


class FairqueTenants(Contender):
    """Fairness contender: worker processes configured by ``workers_cfg`` (one slot each)."""

    PREFIX = "fqfair"

    def __init__(self, url: str, name: str, workers_cfg: list[dict[str, Any]], fairness: str = "count",
                 config_dir: Path | None = None, *, queue_url: str | None = None, shards: int = 1,
                 prefix: str | None = None, prefetch: bool = True) -> None:
        """``url``: the Redis of the task records (and, unless ``queue_url`` is given, of the queue:
        ``redis+cluster://`` for a Redis Cluster, whose client both sides build from the
        configuration); ``shards``: ``queue.shards``; ``prefetch=False``: the workers' slots lease
        batches (``--no-prefetch``)."""
        super().__init__(url)
        from fairque_django.core.connection import get_client, reset_clients

        self.name = name
        self.queue_url = queue_url or url
        self.prefetch = prefetch
        self.data = {
            "redis": {"url": self.queue_url},
            "workers": [{"max_concurrent_tasks": 1, **w} for w in workers_cfg],
            "queue": {"stats_prefix": prefix or self.PREFIX, "fairness": fairness, "default_max_retries": 0,
                      "shards": shards},
        }
        self.worker_ids = [w["id"] for w in workers_cfg]
        self.workers = len(workers_cfg)
        self.config_dir = config_dir
        config = FairQueueConfig.from_dict(self.data)
        reset_clients()
        self.client = get_client(config.redis)
        self.queue = open_bench_queue(config, self.client)

    def labels(self) -> list[str]:
        return list(self.worker_ids)

    def worker_cmd(self, label: str, tenants: list[str]) -> list[str]:
        assert self.config_dir is not None, "config_dir: where the workers' configuration is written"
        path = self.config_dir / f"{self.name}.config.json"
        path.write_text(json.dumps(self.data), "utf-8")
        return [sys.executable, "-m", "benchmarks.contenders.fairque_worker", "--config", str(path),
                "--worker-id", label, "--ready"] + ([] if self.prefetch else ["--no-prefetch"])

    def warm_up(self) -> None:
        first = self.queue.shard_queues[0]  # (a cluster client loads a script on every master)
        self.client.script_load(first.scripts.push.script)

    def _task(self, job: Job) -> Any:
        return work.create_task(job.args, user_id=job.tenant, priority=job.priority)

    def enqueue_batch(self, jobs: list[Job]) -> None:
        self.queue.push_batch([self._task(j) for j in jobs])

    def enqueue_one(self, job: Job) -> None:
        self.queue.push(self._task(job))
