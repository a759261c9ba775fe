"""The RQ job function (``rq worker`` imports it by path in its forked work horse)."""

from __future__ import annotations

from .common import run_task


def rq_work(tenant: str, idx: int, t_enq: float, sleep_ms: float) -> None:
    run_task(tenant, idx, t_enq, sleep_ms)
