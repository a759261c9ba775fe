"""``manage.py fairque_stats [--json] [--users N]``: counters, per-user backlog and worker health."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.caches import redis_display_url
from fairque_django.conf import get_queue
from fairque_django.core.errors import FairQueueError
from fairque_django.core.observe import collect_metrics
from fairque_django.core.observe.fanout import QueueShards
from fairque_django.core.observe.stalled import describe_stalled

# Counters of the JSON "totals" object (stable keys), in display order for the table.
TOTALS = ("pushed", "completed", "failed", "retried", "dead", "active", "queued", "delayed", "dlq_size")
EXTRA_TOTALS = ("popped", "expired", "requeued", "deleted", "cancelled", "released", "late_acks", "quarantined",
                "repaired", "pending")
USER_COUNTERS = (("pushed", "enqueued"), ("completed", "completed"), ("failed", "failed"), ("dead", "dead"))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, indent: str = "  ",
                 right: Sequence[int] = ()) -> str:
    """A plain-text table; columns listed in ``right`` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(lines)


def collect(queue: QueueShards, max_users: int) -> dict[str, Any]:
    """Everything the command shows, as JSON-ready data with stable keys, from one snapshot."""
    metrics = collect_metrics(queue, max(max_users, 1))
    stats = metrics.stats()
    totals = {name: int(stats.get(f"tasks_{name}", 0)) for name in (*TOTALS, *EXTRA_TOTALS) if name != "dlq_size"}
    totals["dlq_size"] = metrics.dlq_size
    users = [{
        "user_id": row.tenant,
        **{name: getattr(row, attr) for name, attr in USER_COUNTERS},
        "unfinished": row.unfinished,
        "ready_critical": row.critical,
        "ready_normal": row.normal,
        "ready": row.ready,
    } for row in metrics.tenants[:max_users]]
    workers = []
    for w in metrics.workers:  # the shared liveness labels (core.observe.LIVENESS)
        record = w.record is not None  # a health record is on file (alive, or stale before it expires)
        workers.append({
            "worker_id": w.worker_id, "status": w.status, "alive": w.alive, "configured": w.configured,
            "pid": w.pid, "host": w.host if record else None,
            "heartbeat_age": None if w.heartbeat_age is None else round(w.heartbeat_age, 3),
            "processed": w.processed if record else None, "failed": w.failed if record else None,
            "running": w.busy_slots if record else None, "concurrency": w.slots if record else None,
        })
    return {
        "metrics": metrics.to_dict(),
        "redis": redis_display_url(queue.home_queue.client),
        "prefix": queue.config.queue.stats_prefix,
        "timestamp": time.time(),
        "totals": totals,
        "users_with_work": metrics.tenants_with_work,
        "users": users,
        "workers": workers,
        # the tasks live workers run, with what they reported (fairque_django.set_progress) or None
        "running": [{"worker_id": w.worker_id, "task_id": c.get("task_id"), "user_id": c.get("user"),
                     "func": c.get("func"), "progress": c.get("progress")} for w in metrics.workers for c in w.current],
        "problems": [*metrics.problems, *(describe_stalled([s]) for s in metrics.stalled)],
    }


class Command(BaseCommand):
    help = ("Show queue counters, the users with unfinished work (and how much is ready) and whether "
            "each worker is alive.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
        parser.add_argument("--users", type=int, default=20, metavar="N",
                            help="show at most N users, most unfinished work first (default 20; 0: none)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["users"] < 0:
            raise CommandError("--users must be 0 or more")
        try:
            data = collect(get_queue(), options["users"])
        except FairQueueError as exc:
            raise CommandError(f"cannot read the queue's statistics: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
        else:
            self.stdout.write(self.render(data))

    def render(self, data: dict[str, Any]) -> str:
        t = data["totals"]
        out = [f"FairQueue at {data['redis']}, key prefix {{{data['prefix']}}}", "", "Totals"]
        heads = ["pushed", "completed", "failed", "retried", "dead", "active", "queued", "delayed", "DLQ size"]
        out.append(format_table(heads, [[f"{t[k]:,}" for k in TOTALS]], right=range(len(heads))))
        out += ["", self._users_title(data)]
        if data["users"]:
            heads = ["user", "pushed", "completed", "failed", "dead", "unfinished", "ready", "critical"]
            rows = [[u["user_id"], f"{u['pushed']:,}", f"{u['completed']:,}", f"{u['failed']:,}", f"{u['dead']:,}",
                     f"{u['unfinished']:,}", f"{u['ready']:,}", f"{u['ready_critical']:,}"] for u in data["users"]]
            out.append(format_table(heads, rows, right=range(1, len(heads))))
            out += ["", "Wait (ready to leased) and run times, p50 / p95 estimated from the histogram buckets"]
            hists = {t["tenant"]: t for t in data["metrics"]["tenants"]}
            out += [self._histogram_line(hists[u["user_id"]]) for u in data["users"] if u["user_id"] in hists]
        out += ["", "Workers"]
        rows = []
        for w in data["workers"]:
            name = w["worker_id"] + ("" if w["configured"] else " (not configured)")
            age = "-" if w["heartbeat_age"] is None else f"{w['heartbeat_age']:.1f}s ago"
            if w["pid"] is None:
                rows.append([name, w["status"], "-", age, "-", "-", "-"])
            else:
                rows.append([name, w["status"], f"{w['pid']} on {w['host']}", age,
                             f"{w['processed']:,}", f"{w['failed']:,}", f"{w['running']}/{w['concurrency']}"])
        heads = ["worker", "status", "process", "heartbeat", "processed", "failed", "running"]
        out.append(format_table(heads, rows, right=(4, 5, 6)) if rows else "  (no workers configured)")
        reported = [r for r in data["running"] if r["progress"]]
        if reported:
            out += ["", "Progress of running tasks"]
            out += [f"  {r['task_id']} {r['func'] or 'payload task'} ({r['user_id']}) on {r['worker_id']}: "
                    f"{r['progress']['percent']}% {r['progress']['message']}".rstrip() for r in reported]
        if data["problems"]:
            out += ["", "Problems (corrupt values read as 0 or unknown; stalled tenants)"]
            out += [f"  {p}" for p in data["problems"]]
        return "\n".join(out)

    @staticmethod
    def _histogram_line(tenant: dict[str, Any]) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"

        w, r = tenant["wait"], tenant["run"]
        return (f"  {tenant['tenant']}: wait p50 {ms(w['p50_ms'])}, p95 {ms(w['p95_ms'])} (n={w['count']:,}); "
                f"run p50 {ms(r['p50_ms'])}, p95 {ms(r['p95_ms'])} (n={r['count']:,})")

    @staticmethod
    def _users_title(data: dict[str, Any]) -> str:
        total, shown = data["users_with_work"], len(data["users"])
        if total == 0:
            return "Users with unfinished work: none"
        more = f", showing the {shown} with the most" if shown < total else ""
        return f"Users with unfinished work: {total:,}{more} (ready = waiting in their queue now)"
