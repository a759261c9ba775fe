"""The fairque_django task (registered with ``@task``; workers import this module)."""

from __future__ import annotations

from fairque_django.core.registry import task

from .common import run_task


@task(max_retries=0)
def fq_work(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    run_task(tenant, idx, t_enq, sleep_ms)
