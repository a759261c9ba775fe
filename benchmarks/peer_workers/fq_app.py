"""The fairque_django configuration shared by the benchmark's producer and its worker processes.

Producer and worker must agree on the key prefix, the worker id and the users assigned to it
(pushes route each user to the partition of the worker serving it), so both build the config here.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairque_django.core.config import FairQueueConfig

WORKER_ID = "bench-w1"
PREFIX = "fqbench"
TASK_MODULES = ("benchmarks.peer_workers.fq_tasks",)


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
