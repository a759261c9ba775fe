"""Observing a queue: ONE read model (:func:`collect_metrics` -> :class:`QueueMetrics`) used by the
admin dashboard, ``fairque_stats``, ``fairque_health``, the health view, Prometheus and the alert
rules; the series kept for it (:mod:`.samples`); the liveness rule (:mod:`.liveness`); starvation by
configuration (:mod:`.starved`); browsing the dead-letter queue (:mod:`.dlq`) and one tenant's
tasks and limits (:mod:`.tenant`). No Django imports.

Modules, in the order data flows: ``values`` (reply decoding) -> ``samples`` (histograms,
throughput, counter snapshots, chart points) and ``liveness`` -> ``rows`` -> ``starved`` ->
``snapshot`` (the reads) -> ``health`` (probes); ``dlq`` and ``tenant`` stand aside.
"""

from ..scripts.commands import STAT_FIELDS
from .dlq import DeadLetters, DLQFacets, DLQPage
from .health import health_status, light_snapshot, unserved_assignments
from .liveness import (
    ALIVE,
    DOWN,
    LIVENESS,
    NEVER_SEEN,
    STALE,
    Liveness,
    beat_interval,
    down_after,
    mark_stopped,
    orphan_after,
    parse_record,
    stale_after,
    worker_liveness,
    worker_states,
)
from .rows import OTHER, ShardMetrics, TenantMetrics, WorkerMetrics
from .samples import (
    BUCKETS_MS,
    HISTORY_MINUTES,
    SAMPLE_FIELDS,
    SAMPLE_INTERVAL,
    CounterWindow,
    Histogram,
    load_history,
    record_history,
    throughput_estimate,
    trim_throughput,
)
from .snapshot import QueueMetrics, collect_metrics
from .starved import OrphanedPartition, StarvedPartition, UnservedAssignment, describe_starved
from .tenant import PRIORITY_LANES, TenantDetail, TenantTask, TenantTasks, TenantView

__all__ = [
    "ALIVE",
    "BUCKETS_MS",
    "DOWN",
    "HISTORY_MINUTES",
    "LIVENESS",
    "NEVER_SEEN",
    "OTHER",
    "PRIORITY_LANES",
    "SAMPLE_FIELDS",
    "SAMPLE_INTERVAL",
    "STALE",
    "STAT_FIELDS",
    "CounterWindow",
    "DLQFacets",
    "DLQPage",
    "DeadLetters",
    "Histogram",
    "Liveness",
    "OrphanedPartition",
    "QueueMetrics",
    "ShardMetrics",
    "StarvedPartition",
    "TenantDetail",
    "TenantMetrics",
    "TenantTask",
    "TenantTasks",
    "TenantView",
    "UnservedAssignment",
    "WorkerMetrics",
    "beat_interval",
    "collect_metrics",
    "describe_starved",
    "down_after",
    "health_status",
    "light_snapshot",
    "load_history",
    "mark_stopped",
    "orphan_after",
    "parse_record",
    "record_history",
    "stale_after",
    "throughput_estimate",
    "trim_throughput",
    "unserved_assignments",
    "worker_liveness",
    "worker_states",
]
