"""Celery app of the benchmarks:
``celery -A benchmarks.peer_workers.celery_app worker --pool=solo --concurrency=1``."""

from __future__ import annotations

from celery import Celery

from . import common

app = Celery("bench", broker=common.url())
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,      # no result backend: fire-and-forget, like the other contenders
    worker_hijack_root_logger=False,
    task_default_queue="bench",
)


@app.task(name="bench.noop")
def noop(i: int = 0) -> None:
    common.noop_body(i)


@app.task(name="bench.record")
def record(i: int) -> None:
    common.record_body(i)


@app.task(name="bench.sleep")
def sleep_ms(ms: float = 10.0) -> None:
    common.sleep_body(ms)
