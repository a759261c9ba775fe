"""The dashboard's snapshot and monitoring panel: firing alerts and two small charts (ready depth
and median wait per tenant over the last hour), drawn server-side as inline SVG -- no JavaScript.

:func:`dashboard_snapshot` is the dashboard's one read of the queue's state: it covers the users
table, the rates, the alert rules (their tenants, counter windows and recorded states) and the
starvation banner. The chart points come from :func:`~fairque_django.core.observe.record_history`
(one per minute, 60 kept), written by the workers' alert evaluator and, at most once a minute, by
this panel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Final

from ..alerts import alert_rules, current_alerts
from ..conf import get_setting
from ..core.config import POOL_PARTITION
from ..core.observe import (
    HISTORY_MINUTES,
    OrphanedPartition,
    QueueMetrics,
    StarvedPartition,
    collect_metrics,
    load_history,
    record_history,
)
from ..core.observe.alert_rules import AlertRule, required_top_n, required_windows
from ..core.observe.fanout import QueueShards
from .format import format_age, when

__all__ = ["RATE_WINDOW", "build_chart", "dashboard_snapshot", "monitoring_context", "nice_ceiling", "orphan_banner",
           "starved_banner"]

RATE_WINDOW: Final = 60.0  # seconds of counter increase behind the dashboard's per-minute rates
CHART_TENANTS: Final = 6
WIDTH: Final = 560
HEIGHT: Final = 150
PAD_LEFT: Final = 48
PAD_RIGHT: Final = 10
PAD_TOP: Final = 10
PAD_BOTTOM: Final = 22
# Colour-blind-friendly palette (Okabe-Ito).
COLORS: Final = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"
    return f"{value:g}"


def build_chart(history: list[dict[str, Any]], key: str, tenants: list[str], *, now: float, unit: str = "",
                minutes: int = HISTORY_MINUTES) -> dict[str, Any]:
    """SVG geometry of one chart: a polyline per tenant (broken where a point is missing)."""
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    start = now - minutes * 60
    values = [float(p["tenants"][t][key]) for p in history for t in tenants
              if t in p["tenants"] and p["tenants"][t].get(key) is not None]
    top = nice_ceiling(max(values, default=0.0))

    def xy(t: float, v: float) -> str:
        x = PAD_LEFT + max(0.0, min(1.0, (t - start) / (minutes * 60))) * plot_w
        y = PAD_TOP + plot_h - (v / top) * plot_h
        return f"{x:.1f},{y:.1f}"

    series = []
    for i, tenant in enumerate(tenants):
        segments: list[list[str]] = [[]]
        last: float | None = None
        for point in history:
            row = point["tenants"].get(tenant)
            value = row.get(key) if row else None
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(xy(point["t"], float(value)))
            last = float(value)
        lines = [" ".join(s) for s in segments if len(s) > 1]
        dots = [s[0] for s in segments if len(s) == 1]
        series.append({"tenant": tenant, "color": COLORS[i % len(COLORS)], "lines": lines,
                       "dots": [{"x": d.split(",")[0], "y": d.split(",")[1]} for d in dots],
                       "last": None if last is None else _fmt(last, unit)})
    y_ticks = [{"y": f"{PAD_TOP + plot_h - f * plot_h:.1f}", "label": _fmt(top * f, unit)} for f in (0.0, 0.5, 1.0)]
    x_ticks = [{"x": f"{PAD_LEFT + (1 - m / minutes) * plot_w:.1f}", "label": "now" if m == 0 else f"-{m} min"}
               for m in range(minutes, -1, -15)]
    return {"width": WIDTH, "height": HEIGHT, "series": series, "y_ticks": y_ticks, "x_ticks": x_ticks,
            "left": PAD_LEFT, "right": WIDTH - PAD_RIGHT, "top": PAD_TOP, "bottom": HEIGHT - PAD_BOTTOM,
            "label_y": HEIGHT - 6, "max_label": _fmt(top, unit), "empty": not values}


def starved_banner(parts: list[StarvedPartition]) -> list[dict[str, Any]]:
    """One banner line per partition whose waiting tenants no live worker may take."""
    return [{"partition": "no worker (pool)" if p.partition == POOL_PARTITION else p.partition,
             "owner_status": p.owner_status, "assigned": ", ".join(p.assigned),
             "tenants": list(p.tenants[:10]), "more": max(0, len(p.tenants) - 10),
             "lower_bound": p.scanned < p.waiting, "start": list(p.start)} for p in parts]


def orphan_banner(parts: list[OrphanedPartition]) -> list[dict[str, Any]]:
    """One banner line per orphaned partition: whose workers are silent and who serves it instead."""
    return [{"partition": "no worker (pool)" if p.partition == POOL_PARTITION else p.partition,
             "servers": [{"id": w, "status": s} for w, s in zip(p.servers, p.statuses, strict=True)],
             "served_by": list(p.served_by), "waiting": p.waiting} for p in parts]


def dashboard_snapshot(queue: QueueShards, users: int = 0, rules: Sequence[AlertRule] | None = None) -> QueueMetrics:
    """The one snapshot a dashboard render reads: at least ``users`` tenants (and as many as the
    alert rules look at), the rate window and the rules' counter windows, the recorded alert states."""
    rules = alert_rules() if rules is None else rules
    top_n = max(users, required_top_n(rules, get_setting("METRICS_TOP_TENANTS")))
    return collect_metrics(queue, top_n, windows=(RATE_WINDOW, *required_windows(rules)), alerts=True)


def monitoring_context(queue: QueueShards, metrics: QueueMetrics | None = None) -> dict[str, Any]:
    """Template context of the panel (``alerts``, ``alert_rules``, ``charts``, ``chart_points``) and
    of the starvation, stall and orphan banners (``starved``, ``stalled``, ``orphaned``), from
    ``metrics`` (default: a fresh :func:`dashboard_snapshot`)."""
    rules = alert_rules()
    if metrics is None:
        metrics = dashboard_snapshot(queue, rules=rules)
    record_history(queue, metrics)  # a point per minute even when no worker evaluates alerts
    alerts = current_alerts(queue, rules, metrics) if rules else []
    history = load_history(queue, now=metrics.timestamp)
    peak: dict[str, int] = {}
    for point in history:
        for tenant, row in point["tenants"].items():
            peak[tenant] = max(peak.get(tenant, 0), int(row["ready"]))
    tenants = sorted(peak, key=lambda t: (-peak[t], t))[:CHART_TENANTS]
    now = metrics.timestamp
    charts = [
        {"id": "fq-chart-depth", "title": "Ready tasks per tenant, last hour",
         **build_chart(history, "ready", tenants, now=now)},
        {"id": "fq-chart-wait", "title": "Median wait (ready to leased) per tenant and minute, last hour",
         **build_chart(history, "wait_p50_ms", tenants, now=now, unit="ms")},
    ]
    firing = [a for a in alerts if a["firing"]]
    for a in firing:
        a["since_when"] = when(a["since"])
        a["since_age"] = format_age(time.time() - a["since"]) if a["since"] else None
    return {"alerts": firing, "alert_rules": alerts, "charts": charts, "starved": starved_banner(metrics.starved),
            "stalled": [s.to_dict() for s in metrics.stalled],
            "orphaned": orphan_banner(metrics.orphaned),
            "chart_points": len(history), "chart_tenants": tenants,
            "throughput_minute": metrics.throughput_last_minute, "throughput_hour": metrics.throughput_last_hour}
