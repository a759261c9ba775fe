"""Celery as a contender: the app, its tasks, its producers.

Worker: ``celery -A benchmarks.contenders.celery_app worker --pool=solo ...``. Broker = the
benchmark's Redis database (``BENCH_REDIS_URL``, read at import); results are not stored (nobody
reads them). Everything else is Celery's default (prefetch multiplier 4, early acks).
Throughput: one queue (``bench``), one worker. Fairness: one queue per tenant, two workers
``-Q heavy,light-1,...``.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery as CeleryApp
from celery.signals import worker_ready

from benchmarks.contenders import bodies
from benchmarks.contenders.base import Contender, Job, System

app = CeleryApp("bench", broker=bodies.url())
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,      # no result backend: fire-and-forget, like the other contenders
    worker_hijack_root_logger=False,
    task_default_queue="bench",
)


@app.task(name="bench.noop")
def noop(i: int = 0) -> None:
    bodies.noop_body(i)


@app.task(name="bench.record")
def record(i: int) -> None:
    bodies.record_body(i)


@app.task(name="bench.sleep")
def sleep_ms(ms: float = 10.0) -> None:
    bodies.sleep_body(ms)


@app.task(name="bench.work")
def work(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    bodies.work_body(tenant, idx, t_enq, sleep_ms)


@worker_ready.connect
def _ready(**_: Any) -> None:
    bodies.mark_ready()


WORKER = [sys.executable, "-m", "celery", "-A", "benchmarks.contenders.celery_app", "worker", "--pool=solo",
          "--loglevel=WARNING"]


class Celery(System):
    """``celery worker --pool=solo`` without gossip, mingle and heartbeat; ``as_users``: ``celery
    worker -P solo -c 1`` (or ``-P threads -c N``) with every other option at its default, tasks
    sent with ``delay``."""

    key = "celery"
    label = "Celery (solo pool)"

    def __init__(self, url: str, threads: int = 0, *, as_users: bool = False) -> None:
        super().__init__(url)
        self.funcs: dict[str, Any] = {"noop": noop, "record": record}
        self.threads, self.as_users = threads, as_users
        if as_users:
            self.key = f"celery-t{threads}" if threads else "celery-solo"
            self.label = f"celery worker -P threads -c {threads}" if threads else "celery worker -P solo -c 1"
        self.after_flush()

    def after_flush(self) -> None:
        # FLUSHDB drops kombu's binding set; the producer's declare cache would not notice and
        # publishes would go to the undeliverable queue. Declare the queue again.
        with app.connection_for_write() as conn:
            app.amqp.queues[app.conf.task_default_queue](conn.default_channel).declare()

    def batch(self, n: int) -> None:
        if self.as_users:
            delay = noop.delay
            for i in range(n):
                delay(i)
            return
        apply = noop.apply_async
        for i in range(n):
            apply((i,))

    def one(self, func: str, i: int) -> None:
        self.funcs[func].apply_async((i,))

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        if self.as_users:  # celery's default queue name is set by the app (task_default_queue)
            pool = ["-P", "threads", "-c", str(self.threads)] if self.threads else ["-P", "solo", "-c", "1"]
            return [sys.executable, "-m", "celery", "-A", "benchmarks.contenders.celery_app", "worker", *pool]
        return [*WORKER, "--concurrency=1", "-Q", "bench", "--without-gossip", "--without-mingle",
                "--without-heartbeat"]


class CeleryTenants(Contender):
    name = "celery"

    def worker_cmd(self, label: str, tenants: list[str]) -> list[str]:
        return [*WORKER, "-Q", ",".join(t.replace(":", "-") for t in tenants), "-n", f"{label}@%h"]

    def warm_up(self) -> None:
        # opens the producer connection and declares the routing of a queue nobody consumes
        work.apply_async(args=("warmup", 0, 0.0, 0.0), queue="fb-warmup")

    def enqueue_one(self, job: Job) -> None:
        work.apply_async(args=job.args, queue=job.queue_name)
