"""``manage.py fairque_stats [--json] [--users N]``: counters, per-user backlog and worker health."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.conf import get_queue, redis_display_url
from fairque_django.core.exceptions import FairQueueError
from fairque_django.core.metrics import collect_metrics
from fairque_django.core.protocol import _text
from fairque_django.core.queue import TaskQueue, redis_errors
from fairque_django.core.worker import worker_health

# Counters of the JSON "totals" object (stable keys), in display order for the table.
TOTALS = ("pushed", "completed", "failed", "retried", "dead", "active", "queued", "delayed", "dlq_size")
EXTRA_TOTALS = ("popped", "expired", "requeued", "deleted", "released", "late_acks", "quarantined", "pending")
USER_COUNTERS = ("pushed", "completed", "failed", "dead")


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


def heartbeat_limit(queue: TaskQueue, worker_id: str) -> float:
    """Seconds without a heartbeat after which a worker counts as stale (as ``fairque_health``)."""
    config = queue.config
    try:
        interval = config.get_worker(worker_id).heartbeat_interval_seconds
    except FairQueueError:
        interval = 5.0
    return 3 * min(interval, config.queue.lease_timeout_seconds / 3)


def collect(queue: TaskQueue, max_users: int) -> dict[str, Any]:
    """Everything the command shows, as JSON-ready data with stable keys."""
    stats = queue.get_stats()
    keys = queue.keys
    with redis_errors("fairque_stats"):
        pipe = queue.client.pipeline(transaction=False)
        pipe.zcard(keys.live)
        pipe.zrevrange(keys.live, 0, max(max_users, 1) - 1, withscores=True)
        pipe.zrange(keys.workers, 0, -1)
        users_with_work, live, seen = pipe.execute()
    totals = {name: int(stats.get(f"tasks_{name}", 0)) for name in (*TOTALS, *EXTRA_TOTALS) if name != "dlq_size"}
    totals["dlq_size"] = int(stats["dlq_size"])
    counters: dict[str, dict[str, int]] = stats.get("users", {})
    users = []
    for raw_user, unfinished in live[:max_users]:
        user = _text(raw_user)
        depth = queue.user_depth(user)
        mine = counters.get(user, {})
        users.append({
            "user_id": user,
            **{name: int(mine.get(name, 0)) for name in USER_COUNTERS},
            "unfinished": int(unfinished),
            "ready_critical": depth["critical"],
            "ready_normal": depth["normal"],
            "ready": depth["critical"] + depth["normal"],
        })
    worker_ids = list(queue.config.worker_ids)
    worker_ids += sorted({_text(w) for w in seen} - set(worker_ids))
    workers = []
    for wid in worker_ids:
        record = worker_health(queue, wid)
        if record is None:
            workers.append({"worker_id": wid, "status": "down", "alive": False, "configured": wid in
                            queue.config.worker_ids, "pid": None, "host": None, "heartbeat_age": None,
                            "processed": None, "failed": None, "running": None, "concurrency": None})
            continue
        alive = record["heartbeat_age"] <= heartbeat_limit(queue, wid)
        workers.append({
            "worker_id": wid, "status": "alive" if alive else "stale", "alive": alive,
            "configured": wid in queue.config.worker_ids, "pid": record["pid"], "host": record.get("host"),
            "heartbeat_age": round(record["heartbeat_age"], 3), "processed": record["processed"],
            "failed": record["failed"], "running": len(record["current"]), "concurrency": record["concurrency"],
        })
    metrics = collect_metrics(queue, max(max_users, 1))
    return {
        "metrics": metrics.to_dict(),
        "redis": redis_display_url(queue.client),
        "prefix": queue.config.queue.stats_prefix,
        "timestamp": time.time(),
        "totals": totals,
        "users_with_work": int(users_with_work),
        "users": users,
        "workers": workers,
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
            if w["status"] == "down":
                rows.append([name, "down", "-", "-", "-", "-", "-"])
            else:
                rows.append([name, w["status"], f"{w['pid']} on {w['host']}", f"{w['heartbeat_age']:.1f}s ago",
                             f"{w['processed']:,}", f"{w['failed']:,}", f"{w['running']}/{w['concurrency']}"])
        heads = ["worker", "status", "process", "heartbeat", "processed", "failed", "running"]
        out.append(format_table(heads, rows, right=(4, 5, 6)) if rows else "  (no workers configured)")
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
