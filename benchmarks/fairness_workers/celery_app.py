"""The Celery app: ``celery -A benchmarks.fairness_workers.celery_app worker --pool=solo -Q ...``.

Broker = the benchmark's Redis database; results are not stored (nobody reads them).
Everything else is Celery's default (prefetch multiplier 4, early acks).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from .common import mark_ready, run_task

app = Celery("fairness_bench", broker=os.environ.get("FB_REDIS_URL", "redis://127.0.0.1:6379/7"))
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="fb.work")
def celery_work(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    run_task(tenant, idx, t_enq, sleep_ms)


@worker_ready.connect
def _ready(**_: Any) -> None:
    mark_ready()
