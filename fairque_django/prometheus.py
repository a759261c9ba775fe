"""Prometheus exposition of a :class:`~fairque_django.core.observe.QueueMetrics` snapshot.

Needs the optional ``prometheus-client`` package (``pip install "fairque-django[prometheus]"``);
importing this module without it raises ImportError. A fresh :class:`CollectorRegistry` with one
custom collector is built per scrape, so nothing is kept in process memory and every worker,
web process and scrape sees the same numbers (they come from Redis).

Tenant labels are bounded: the ``top_n`` tenants with the most unfinished work get their own
``tenant`` label, every other tenant is summed into ``tenant="other"``. With several keyspace shards
(``queue.shards`` > 1) the queue depth and the tenants with work are also exposed per shard
(``shard`` label, families of their own: the merged series keep their names and labels). The metric names and
labels are listed in ``docs/monitoring.md`` and in :data:`METRIC_NAMES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .core.observe import LIVENESS, STAT_FIELDS, Histogram, QueueMetrics
from .core.observe.alert_rules import AlertRule
from .core.observe.alerts import StoredAlert

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "FairQueueCollector", "build_registry", "render"]

# generate_latest writes the classic text format (0.0.4); newer clients' CONTENT_TYPE_LATEST
# announces version 1.0.0, which older Prometheus servers do not know.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

METRIC_NAMES: Final = (
    "fairque_tenant_depth", "fairque_tenant_unfinished_tasks", "fairque_tenant_oldest_wait_seconds",
    "fairque_tenant_tasks_enqueued_total", "fairque_tenant_tasks_completed_total",
    "fairque_tenant_tasks_failed_total", "fairque_tenant_tasks_dead_total",
    "fairque_task_wait_seconds", "fairque_task_run_seconds", "fairque_other_tenants", "fairque_tenants_with_work",
    "fairque_queue_depth", "fairque_dlq_size", "fairque_tasks_total", "fairque_throughput_tasks",
    "fairque_worker_up", "fairque_worker_status", "fairque_worker_heartbeat_age_seconds", "fairque_worker_busy_slots",
    "fairque_worker_slots", "fairque_worker_processed_total", "fairque_worker_failed_total",
    "fairque_alert_firing", "fairque_starved_tenants",
    "fairque_tenant_leased", "fairque_tenant_cap", "fairque_tenant_paused", "fairque_tenant_held",
    "fairque_tenants_paused", "fairque_tenants_held", "fairque_shard_queue_depth", "fairque_shard_tenants_with_work",
)
HELD_REASONS: Final = ("paused", "cap", "rate")
QUEUE_LANES: Final = ("ready", "delayed", "leased")  # the lane label of the queue depth (QueueMetrics' fields)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus clients write it (``0.005``, ``300.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    return [(_le(bound), float(n)) for bound, n in hist.cumulative()]


class FairQueueCollector(Collector):
    """Yields the metric families of one snapshot (and of the recorded alert states)."""

    def __init__(self, metrics: QueueMetrics, rules: Iterable[AlertRule] = (),
                 alerts: Mapping[str, StoredAlert] | None = None) -> None:
        self.metrics = metrics
        self.rules = tuple(rules)
        self.alerts = alerts or {}

    def describe(self) -> Iterable[Metric]:
        return []  # no up-front description: the registry is built for one scrape

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield from self._tenants(m)
        yield from self._queue(m)
        yield from self._workers(m)
        alert = GaugeMetricFamily("fairque_alert_firing", "1 while the alert rule fires (as last recorded by "
                                  "the workers), else 0", labels=["alert", "type", "severity"])
        for rule in self.rules:
            stored = self.alerts.get(rule.name)
            alert.add_metric([rule.name, rule.type, rule.severity], 1.0 if stored and stored.firing else 0.0)
        yield alert

    @staticmethod
    def _tenants(m: QueueMetrics) -> Iterator[Metric]:
        rows = m.all_tenant_rows()
        depth = GaugeMetricFamily("fairque_tenant_depth", "Tasks of a tenant by lane: critical and normal "
                                  "(ready), delayed (scheduled or retry back-off), leased (running)",
                                  labels=["tenant", "lane"])
        unfinished = GaugeMetricFamily("fairque_tenant_unfinished_tasks", "Tasks of a tenant not finished yet "
                                       "(ready, delayed or leased)", labels=["tenant"])
        oldest = GaugeMetricFamily("fairque_tenant_oldest_wait_seconds", "How long the next ready task of the "
                                   "tenant has been waiting (tenants with ready tasks, not 'other')",
                                   labels=["tenant"])
        counters = {name: CounterMetricFamily(f"fairque_tenant_tasks_{name}", help_text, labels=["tenant"])
                    for name, help_text in (
                        ("enqueued", "Tasks enqueued for the tenant"),
                        ("completed", "Tasks of the tenant completed"),
                        ("failed", "Failed attempts of the tenant's tasks (retried or not)"),
                        ("dead", "Tasks of the tenant moved to the dead-letter queue"))}
        wait = HistogramMetricFamily("fairque_task_wait_seconds", "Time from ready to leased (queue wait)",
                                     labels=["tenant"])
        run = HistogramMetricFamily("fairque_task_run_seconds", "Run time of completed tasks", labels=["tenant"])
        for row in rows:
            for lane, n in row.depth.items():
                depth.add_metric([row.tenant, lane], float(n))
            unfinished.add_metric([row.tenant], float(row.unfinished))
            if row.oldest_wait_seconds is not None:
                oldest.add_metric([row.tenant], row.oldest_wait_seconds)
            for name, family in counters.items():
                family.add_metric([row.tenant], float(getattr(row, name)))
            wait.add_metric([row.tenant], _buckets(row.wait), row.wait.sum_seconds)
            run.add_metric([row.tenant], _buckets(row.run), row.run.sum_seconds)
        yield from (depth, unfinished, oldest, *counters.values(), wait, run)
        yield from FairQueueCollector._limits(m)
        yield GaugeMetricFamily("fairque_other_tenants", "Tenants with work aggregated under tenant=\"other\"",
                                value=float(m.other.tenants if m.other is not None else 0))

    @staticmethod
    def _limits(m: QueueMetrics) -> Iterator[Metric]:
        """Per-tenant limits and state of the top tenants (never ``other``), and the global counts."""
        leased = GaugeMetricFamily("fairque_tenant_leased", "Tasks of the tenant leased now, fleet-wide (what its "
                                   "concurrency cap counts)", labels=["tenant"])
        cap = GaugeMetricFamily("fairque_tenant_cap", "The tenant's concurrency cap in force (tenants with a cap)",
                                labels=["tenant"])
        paused = GaugeMetricFamily("fairque_tenant_paused", "1 while the tenant is paused, else 0", labels=["tenant"])
        held = GaugeMetricFamily("fairque_tenant_held", "1 for the reason the tenant is held out of its rotation "
                                 "with work queued (paused, cap, rate), 0 for the others", labels=["tenant", "reason"])
        for row in m.tenants:
            leased.add_metric([row.tenant], float(row.running))
            if row.cap is not None:
                cap.add_metric([row.tenant], float(row.cap))
            paused.add_metric([row.tenant], 1.0 if row.paused else 0.0)
            for reason in HELD_REASONS:
                held.add_metric([row.tenant, reason], 1.0 if row.held == reason else 0.0)
        yield from (leased, cap, paused, held)
        yield GaugeMetricFamily("fairque_tenants_paused", "Tenants paused now (all of them)",
                                value=float(m.tenants_paused))
        yield GaugeMetricFamily("fairque_tenants_held", "Tenants held out of their rotation with work queued, by "
                                "pause, cap or rate (all of them)", value=float(m.tenants_held))

    @staticmethod
    def _queue(m: QueueMetrics) -> Iterator[Metric]:
        yield GaugeMetricFamily("fairque_tenants_with_work", "Tenants with unfinished tasks",
                                value=float(m.tenants_with_work))
        depth = GaugeMetricFamily("fairque_queue_depth", "Tasks of all tenants by state: ready (in a lane), "
                                  "delayed, leased", labels=["lane"])
        for lane in QUEUE_LANES:
            depth.add_metric([lane], float(getattr(m, lane)))
        yield depth
        if m.shards:  # several keyspace shards: each one's part too
            shard_depth = GaugeMetricFamily("fairque_shard_queue_depth", "Tasks of all tenants in a keyspace shard "
                                            "by state: ready (in a lane), delayed, leased (queue.shards > 1)",
                                            labels=["shard", "lane"])
            shard_tenants = GaugeMetricFamily("fairque_shard_tenants_with_work", "Tenants with unfinished tasks "
                                              "in a keyspace shard (queue.shards > 1)", labels=["shard"])
            for part in m.shards:
                shard = str(part.shard)
                for lane in QUEUE_LANES:
                    shard_depth.add_metric([shard, lane], float(getattr(part, lane)))
                shard_tenants.add_metric([shard], float(part.tenants_with_work))
            yield from (shard_depth, shard_tenants)
        yield GaugeMetricFamily("fairque_dlq_size", "Tasks in the dead-letter queue", value=float(m.dlq_size))
        events = CounterMetricFamily("fairque_tasks", "Task events of all tenants since the stats were created",
                                     labels=["event"])
        for name in STAT_FIELDS:
            events.add_metric([name], float(m.totals.get(name, 0)))
        yield events
        tput = GaugeMetricFamily("fairque_throughput_tasks", "Tasks completed in the last minute (window=1m) or "
                                 "hour (window=1h)", labels=["window"])
        tput.add_metric(["1m"], m.throughput_last_minute)
        tput.add_metric(["1h"], m.throughput_last_hour)
        yield tput

    @staticmethod
    def _workers(m: QueueMetrics) -> Iterator[Metric]:
        up = GaugeMetricFamily("fairque_worker_up", "1 while the worker is alive, else 0", labels=["worker"])
        status = GaugeMetricFamily("fairque_worker_status", "1 for the worker's liveness label (alive, stale, "
                                   "down, never seen), 0 for the others", labels=["worker", "status"])
        age = GaugeMetricFamily("fairque_worker_heartbeat_age_seconds", "Seconds since the worker's last "
                                "heartbeat (workers with one on record)", labels=["worker"])
        busy = GaugeMetricFamily("fairque_worker_busy_slots", "Tasks the worker is running", labels=["worker"])
        slots = GaugeMetricFamily("fairque_worker_slots", "Tasks the worker can run at once", labels=["worker"])
        processed = CounterMetricFamily("fairque_worker_processed", "Tasks the worker process completed since "
                                        "it started (live workers)", labels=["worker"])
        failed = CounterMetricFamily("fairque_worker_failed", "Failed attempts in the worker process since it "
                                     "started (live workers)", labels=["worker"])
        for w in m.workers:
            up.add_metric([w.worker_id], 1.0 if w.alive else 0.0)
            for label in LIVENESS:
                status.add_metric([w.worker_id, label], 1.0 if w.status == label else 0.0)
            if w.heartbeat_age is not None:
                age.add_metric([w.worker_id], w.heartbeat_age)
            busy.add_metric([w.worker_id], float(w.busy_slots))
            slots.add_metric([w.worker_id], float(w.slots))
            if w.alive:
                processed.add_metric([w.worker_id], float(w.processed))
                failed.add_metric([w.worker_id], float(w.failed))
        yield from (up, status, age, busy, slots, processed, failed)
        starved = GaugeMetricFamily("fairque_starved_tenants", "Waiting tenants of a partition that no live worker "
                                    "may take (its worker is not alive and no live worker may steal them)",
                                    labels=["partition"])
        for part in m.starved:
            starved.add_metric([part.partition], float(len(part.tenants)))
        yield starved


def build_registry(metrics: QueueMetrics, rules: Iterable[AlertRule] = (),
                   alerts: Mapping[str, StoredAlert] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FairQueueCollector(metrics, rules, alerts))
    return registry


def render(metrics: QueueMetrics, rules: Iterable[AlertRule] = (),
           alerts: Mapping[str, StoredAlert] | None = None) -> bytes:
    """The text exposition format of one snapshot."""
    return generate_latest(build_registry(metrics, rules, alerts))
