"""The workers: :class:`Worker` (threads) and :class:`AsyncWorker` (one asyncio loop).

Both run tasks through one :class:`~.runner.TaskRunner` and keep their leases and health record
with one :class:`~.heartbeat.Heartbeat`; the thread worker's slots run one loop (:mod:`.slot`)
with prefetching or batching as options; :class:`~.leases.LeaseBook` tracks what a worker holds.
"""

from __future__ import annotations

from .aio_worker import AsyncWorker
from .heartbeat import Heartbeat, worker_health
from .leases import LeaseBook
from .runner import PERMANENT_ERRORS, Failure, Finished, TaskRunner
from .slot import BURST_DELAY_HORIZON, MAX_BATCH, PREFETCH_BATCH_SECONDS, PREFETCH_HOLD_SECONDS
from .threads import Worker

__all__ = [
    "BURST_DELAY_HORIZON",
    "MAX_BATCH",
    "PERMANENT_ERRORS",
    "PREFETCH_BATCH_SECONDS",
    "PREFETCH_HOLD_SECONDS",
    "AsyncWorker",
    "Failure",
    "Finished",
    "Heartbeat",
    "LeaseBook",
    "TaskRunner",
    "Worker",
    "worker_health",
]
