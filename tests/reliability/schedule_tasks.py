"""The task of the schedule crash test: records each run of a tick in the log Redis."""

from __future__ import annotations

from fairque_django import task
from fairque_django.core.context import running_task

from .tasks import log_client

TICK_RUNS = "rel:sched:runs"  # HASH tick -> completed runs of its task


@task()
def tick() -> None:
    running = running_task()
    assert running is not None
    log_client().hincrby(TICK_RUNS, running.task.metadata["tick"], 1)
