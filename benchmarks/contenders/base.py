"""The producer side of a contender: :class:`System` (throughput, latency, push, cost scenarios:
``noop`` / ``record`` tasks) and :class:`Contender` (fairness scenarios: per-tenant ``work`` jobs,
two worker processes); the jobs the fairness scenarios enqueue."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.harness.procs import Processes


class System:
    """One contender of the throughput benchmark: how its producer enqueues, how its worker starts."""

    key = ""
    label = ""

    def __init__(self, url: str) -> None:
        self.url = url

    def after_flush(self) -> None:
        """Restore producer-side state a FLUSHDB removed (e.g. Celery's queue binding)."""

    def batch(self, n: int) -> None:
        """The fastest enqueue this system offers, for n noop tasks."""
        raise NotImplementedError

    def one(self, func: str, i: int) -> None:
        """Enqueue a single task (``noop`` or ``record``) the usual way."""
        raise NotImplementedError

    def worker_cmd(self, *, burst: bool = False, profile: str | None = None) -> list[str]:
        raise NotImplementedError

    @property
    def exits_by_itself(self) -> bool:
        return False


@dataclass(slots=True)
class Job:
    tenant: str
    idx: int
    sleep_ms: float
    priority: int = 3
    t_enq: float = 0.0

    @property
    def queue_name(self) -> str:  # RQ / Celery queue of the tenant
        return self.tenant.replace(":", "-")

    @property
    def args(self) -> tuple[str, int, float, float]:
        """The ``work`` task's arguments."""
        return self.tenant, self.idx, self.t_enq, self.sleep_ms


@dataclass(slots=True)
class Step:
    """Jobs enqueued either in one batch call or one call per job."""

    label: str
    jobs: list[Job]
    batch: bool


class Contender:
    """One contender of the fairness benchmark: its worker processes and how jobs are enqueued."""

    name = "?"
    workers = 2

    def __init__(self, url: str) -> None:
        self.url = url

    def worker_cmd(self, label: str, tenants: list[str]) -> list[str]:
        raise NotImplementedError

    def labels(self) -> list[str]:
        return [f"{self.name}-w{i + 1}" for i in range(self.workers)]

    def start(self, procs: Processes, tenants: list[str]) -> None:
        for label in self.labels():
            procs.launch(label, self.worker_cmd(label, tenants), self.url)

    def ready(self) -> int | None:
        """Workers ready, if the contender knows better than the ready set (e.g. RQ's registry)."""
        return None

    def warm_up(self) -> None:
        """Open connections / load scripts before t0 (not measured)."""

    def enqueue_batch(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.enqueue_one(job)

    def enqueue_one(self, job: Job) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


