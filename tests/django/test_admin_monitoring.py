"""The dashboard's monitoring panel: firing alerts and server-side SVG charts (no JavaScript)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.template.loader import render_to_string
from django.test import Client, override_settings
from django.urls import reverse

from fairque_django import conf
from fairque_django.admin.monitoring import build_chart, monitoring_context, nice_ceiling
from fairque_django.alerts import AlertEvaluator
from fairque_django.conf import get_queue
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue

pytestmark = pytest.mark.django_db

ALERTS = [{"name": "dlq", "type": "dlq_size_above", "threshold": 0, "severity": "critical",
           "description": "Someone should look at the dead tasks"},
          {"name": "depth", "type": "total_depth_above", "threshold": 1000}]


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[TaskQueue]:
    with override_settings(FAIRQUE={**settings.FAIRQUE, "ALERTS": ALERTS}):
        conf.install_providers()
        conf.reset()
        yield get_queue()
    conf.reset()


@pytest.fixture
def viewer(client: Client) -> Client:
    user: User = User.objects.create_user("v", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_fairqueue",
                                                     content_type__app_label="fairque_django"))
    client.force_login(user)
    return client


def make_dead(queue: TaskQueue) -> None:
    queue.push(Task.create(user_id="user:1", payload={"x": 1}, max_retries=0))
    task = queue.pop("worker-001")
    assert task is not None and queue.fail(task, "boom", retry=False) == "dead"


def dashboard(viewer: Client) -> Any:
    response = viewer.get(reverse("admin:fairque_dashboard"))
    assert response.status_code == 200
    return response


def test_dashboard_lists_firing_alerts(viewer: Client, queue: TaskQueue) -> None:
    body = dashboard(viewer).content.decode()
    assert "No alert is firing (4 rules checked)." in body  # the two above, built-in tenant-starved, partition-stalled
    make_dead(queue)
    AlertEvaluator(queue, guard=False).run()  # as a worker would: records since when it fires
    response = dashboard(viewer)
    body = response.content.decode()
    assert [a["name"] for a in response.context["alerts"]] == ["dlq"]
    row = re.search(r'<tr class="fq-alert fq-alert-critical" data-rule="dlq">(.*?)</tr>', body, re.S)
    assert row is not None
    assert "the dead-letter queue holds 1 task(s) (threshold 0)" in row.group(1)
    assert "Someone should look at the dead tasks" in row.group(1) and " ago</span>" in row.group(1)
    assert "Alerts — 1 firing" in body


def test_dashboard_without_rules_checks_the_builtin_rule(viewer: Client, queue: TaskQueue) -> None:
    without = {k: v for k, v in settings.FAIRQUE.items() if k != "ALERTS"}
    with override_settings(FAIRQUE=without):
        response = dashboard(viewer)
    assert "No alert is firing (2 rules checked)." in response.content.decode()
    assert [a["name"] for a in response.context["alert_rules"]] == ["tenant-starved", "partition-stalled"]


def test_charts_are_inline_svg_from_minute_snapshots(viewer: Client, queue: TaskQueue) -> None:
    for _ in range(3):
        queue.push(Task.create(user_id="user:2", payload={}))
    queue.push(Task.create(user_id="user:3", payload={}))
    body = dashboard(viewer).content.decode()  # the page stores the first point
    assert queue.client.zcard(queue.keys.history) == 1
    dashboard(viewer)
    assert queue.client.zcard(queue.keys.history) == 1  # at most one point per minute
    queue.client.delete(queue.keys.guard(queue.keys.history))  # a minute later...
    task = queue.pop("worker-001")
    assert task is not None
    queue.complete(task)
    response = dashboard(viewer)
    body = response.content.decode()
    assert response.context["chart_points"] == 2 and response.context["chart_tenants"] == ["user:2", "user:3"]
    depth_svg = re.search(r'<svg class="fq-chart" id="fq-chart-depth".*?</svg>', body, re.S)
    wait_svg = re.search(r'<svg class="fq-chart" id="fq-chart-wait".*?</svg>', body, re.S)
    assert depth_svg is not None and wait_svg is not None
    assert depth_svg.group(0).count("<polyline") == 2  # one line per tenant
    assert "<title>user:2</title>" in depth_svg.group(0)
    assert "<circle" in wait_svg.group(0)  # one wait point so far (the pop between the snapshots)
    assert "-60 min" in depth_svg.group(0) and ">now<" in depth_svg.group(0)
    panel = render_to_string("fairque_django/admin/monitoring.html", monitoring_context(queue))
    assert "<script" not in panel and "onclick" not in panel  # works without JavaScript


def test_chart_geometry() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 230)] == [1, 1, 5, 10, 10, 20, 500]
    now = 10_000.0
    history = [{"t": now - 1800, "tenants": {"a": {"ready": 4, "wait_p50_ms": None}}},
               {"t": now - 1740, "tenants": {"a": {"ready": 5, "wait_p50_ms": 20.0}}},
               {"t": now, "tenants": {"a": {"ready": 0, "wait_p50_ms": 5.0}, "b": {"ready": 1, "wait_p50_ms": None}}}]
    depth = build_chart(history, "ready", ["a", "b"], now=now)
    assert depth["max_label"] == "5" and not depth["empty"]
    a_line, b_dot = depth["series"][0], depth["series"][1]
    assert len(a_line["lines"]) == 1 and a_line["lines"][0].count(",") == 3 and a_line["last"] == "0"
    assert b_dot["lines"] == [] and len(b_dot["dots"]) == 1  # a single point is drawn as a dot
    wait = build_chart(history, "wait_p50_ms", ["a"], now=now, unit="ms")
    assert len(wait["series"][0]["lines"]) == 1 and wait["series"][0]["last"] == "5 ms"  # None: a gap
    assert wait["y_ticks"][-1]["label"] == "20 ms"


def test_panel_context_is_bounded(queue: TaskQueue) -> None:
    for i in range(12):
        queue.push(Task.create(user_id=f"user:{i % 5 + 1}", payload={}))
    ctx = monitoring_context(queue)
    assert len(ctx["chart_tenants"]) <= 6 and len(ctx["charts"]) == 2


# --- one set of liveness labels, and starvation by configuration ---------------------------------

def _prometheus_samples(client: Client, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/fairque/metrics")
    assert response.status_code == 200, response.content
    return {tuple(sorted(s.labels.items())): s.value for fam in text_string_to_metric_families(
        response.content.decode()) for s in fam.samples if s.name == name}


def _labels_everywhere(viewer: Client) -> dict[str, dict[str, str]]:
    """Each worker id's liveness label as the dashboard, fairque_stats --json, Prometheus, the
    health view and fairque_health --json show it."""
    import io
    import json

    from django.core.management import call_command

    out: dict[str, dict[str, str]] = {}
    response = dashboard(viewer)
    out["dashboard"] = {w["row"].worker_id: w["row"].status for w in response.context["workers"]}
    html = response.content.decode()
    for wid, status in out["dashboard"].items():
        row = rf'data-status="{status}">\s*<th scope="row" class="nowrap"><span class="fq-trunc" title="{wid}">{wid}'
        assert re.search(row, html), (wid, status)
    buf = io.StringIO()
    call_command("fairque_stats", "--json", stdout=buf)
    out["fairque_stats"] = {w["worker_id"]: w["status"] for w in json.loads(buf.getvalue())["workers"]}
    samples = _prometheus_samples(viewer, "fairque_worker_status")
    out["prometheus"] = {dict(k)["worker"]: dict(k)["status"] for k, v in samples.items() if v == 1.0}
    health = json.loads(viewer.get("/fairque/health").content)
    counts = {label: 0 for label in ("alive", "stale", "down", "never seen")}
    for status in out["dashboard"].values():
        counts[status] += 1
    assert health["workers_by_status"] == counts  # the health view has counts only (no worker names)
    out["fairque_health"] = {}
    for wid in out["dashboard"]:
        buf = io.StringIO()
        with pytest.raises(SystemExit):
            call_command("fairque_health", wid, "--json", stdout=buf)
        out["fairque_health"][wid] = json.loads(buf.getvalue())["status"]
    return out


def test_a_stopped_worker_and_a_never_started_one_read_the_same_label_everywhere(
        viewer: Client, queue: TaskQueue) -> None:
    from tests.support import eventually, running_worker

    with running_worker(conf.get_config(), "worker-001"):
        eventually(lambda: queue.client.exists(queue.keys.worker("worker-001")), what="a heartbeat")
        running = _labels_everywhere(viewer)
    stopped = _labels_everywhere(viewer)
    for view, labels in running.items():
        assert labels == {"worker-001": "alive", "worker-002": "never seen"}, view
    for view, labels in stopped.items():
        assert labels == {"worker-001": "down", "worker-002": "never seen"}, view


NO_STEAL = [{"id": "worker-001", "assigned_users": ["org:*"]},
            {"id": "worker-002", "assigned_users": ["user:*"], "steal_targets": ["org:*"]}]


NO_TAKEOVER = {**settings.FAIRQUE["queue"], "orphan_takeover": False}


def test_starved_tenants_banner_alert_and_metric(viewer: Client, queue: TaskQueue) -> None:
    from tests.support import eventually, running_worker

    with override_settings(FAIRQUE={**settings.FAIRQUE, "workers": NO_STEAL, "ALERTS": [], "queue": NO_TAKEOVER}):
        conf.reset()
        q = get_queue()
        q.push(Task.create(user_id="user:7", payload={}))
        q.push(Task.create(user_id="org:1", payload={}))
        with running_worker(conf.get_config(), "worker-001"):
            eventually(lambda: q.user_depth("org:1")["normal"] == 0
                       and q.client.exists(q.keys.worker("worker-001")), what="org:1 served")
            response = dashboard(viewer)
            assert response.context["starved"] == [{
                "partition": "worker-002", "owner_status": "never seen", "assigned": "user:*",
                "tenants": ["user:7"], "more": 0, "lower_bound": False, "start": ["worker-002"]}]
            banner = re.search(r'<ul class="messagelist" id="fq-starved">(.*?)</ul>', response.content.decode(), re.S)
            assert banner is not None
            assert "user:7" in banner.group(1) and "manage.py runfairworker worker-002" in banner.group(1)
            states = {s.name: s for s in AlertEvaluator(q, guard=False).run() or []}
            starved = states["tenant-starved"]  # built in: on without any configured rule
            assert starved.firing and starved.details["tenants"] == ["user:7"]
            assert starved.details["start"] == ["worker-002"] and "worker-002" in starved.message
            samples = _prometheus_samples(viewer, "fairque_starved_tenants")
            assert samples == {(("partition", "worker-002"),): 1.0}
            firing = _prometheus_samples(viewer, "fairque_alert_firing")
            assert firing[(("alert", "tenant-starved"), ("severity", "critical"), ("type", "unserved_tenants"))] == 1
        # a worker that may take user:* (worker-002 itself) ends it
        with running_worker(conf.get_config(), "worker-002"):
            eventually(lambda: q.user_depth("user:7")["normal"] == 0, what="user:7 served")
            assert "fq-starved" not in dashboard(viewer).content.decode()
            states = {s.name: s for s in AlertEvaluator(q, guard=False).run() or []}
            assert not states["tenant-starved"].firing
    conf.reset()


def test_orphaned_partition_banner_and_takeover(viewer: Client, queue: TaskQueue) -> None:
    """Orphan takeover (on by default): worker-002 never started, so worker-001 serves its tenant
    user:7; the dashboard lists worker-002's partition as orphaned and served by worker-001, and
    nothing as starved."""
    from tests.support import eventually, running_worker

    with override_settings(FAIRQUE={**settings.FAIRQUE, "workers": NO_STEAL, "ALERTS": []}):
        conf.reset()
        q = get_queue()
        q.push(Task.create(user_id="user:7", payload={}))
        with running_worker(conf.get_config(), "worker-001"):
            eventually(lambda: q.user_depth("user:7")["normal"] == 0, timeout=30, what="user:7 taken over")
            response = dashboard(viewer)
            assert response.context["starved"] == []
            silent = [{"id": "worker-002", "status": "never seen"}]  # it also serves the pool (it steals org:*)
            assert response.context["orphaned"] == [
                {"partition": "worker-002", "servers": silent, "served_by": ["worker-001"], "waiting": 0},
                {"partition": "no worker (pool)", "servers": silent, "served_by": ["worker-001"], "waiting": 0}]
            banner = re.search(r'<ul class="messagelist" id="fq-orphaned">(.*?)</ul>', response.content.decode(), re.S)
            assert banner is not None and "worker-002" in banner.group(1) and "worker-001" in banner.group(1)
            states = {s.name: s for s in AlertEvaluator(q, guard=False).run() or []}
            assert not states["tenant-starved"].firing
            assert q.get_stats()["tasks_orphan_served"] == 1
    conf.reset()


def test_a_live_stealer_means_not_starved(viewer: Client, queue: TaskQueue) -> None:
    """worker-001 may steal user:* (the README's configuration): user:* tenants are not starved
    while it is alive, even with worker-002 never started."""
    from fairque_django.core.observe import collect_metrics

    readme = [{"id": "worker-001", "assigned_users": ["org:*"], "steal_targets": ["user:*"]},
              {"id": "worker-002", "assigned_users": ["user:*"], "steal_targets": ["org:*"]}]
    with override_settings(FAIRQUE={**settings.FAIRQUE, "workers": readme}):
        conf.reset()
        q = get_queue()
        q.push(Task.create(user_id="user:7", payload={}))
        before = collect_metrics(q).starved  # nobody alive: both partitions' tenants wait
        assert [(p.partition, p.tenants) for p in before] == [("worker-002", ("user:7",))]
        q.client.hset(q.keys.worker("worker-001"), "last_seen", f"{__import__('time').time():.3f}")
        q.client.zadd(q.keys.workers, {"worker-001": __import__("time").time()})
        assert collect_metrics(q).starved == []
        assert "fq-starved" not in dashboard(viewer).content.decode()
    conf.reset()


def test_one_dashboard_render_reads_each_structure_once(viewer: Client, queue: TaskQueue,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One render takes one snapshot: the leases are scanned once (each leased task read once),
    every worker record and the alert states once."""
    from redis.client import Pipeline

    from fairque_django.core.worker import Worker

    for i in range(3):
        queue.push(Task.create(user_id=f"user:{i + 1}", payload={}))
    leased = queue.pop("worker-001")
    assert leased is not None
    Worker(conf.get_config(), worker_id="worker-001", install_signal_handlers=False).publish_health([leased])
    commands: list[tuple[str, ...]] = []

    def counting(original: Any) -> Any:
        def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
            commands.append(tuple(a.decode() if isinstance(a, bytes) else str(a) for a in args))
            return original(self, *args, **kwargs)
        return execute

    monkeypatch.setattr(Pipeline, "pipeline_execute_command", counting(Pipeline.pipeline_execute_command))
    monkeypatch.setattr(redis.Redis, "execute_command", counting(redis.Redis.execute_command))
    response = dashboard(viewer)
    monkeypatch.undo()

    def on(key: str) -> list[str]:
        return [c[0].upper() for c in commands if len(c) > 1 and c[1] == key]

    assert sorted(on(queue.keys.leases)) == ["ZCARD", "ZRANGE"]  # counted once, scanned once
    assert on(queue.keys.task(leased.task_id)) == ["HMGET"]  # its user and worker, in one read
    for wid in ("worker-001", "worker-002"):
        assert on(queue.keys.worker(wid)) == ["HGETALL"], wid
    assert on(queue.keys.alerts) == ["HGETALL"]
    assert sorted(on(queue.keys.stats)) == ["HMGET"] * 4  # the totals once, then each tenant's counters
    assert [c[0].upper() for c in commands].count("TIME") == 1
    rows = {w["row"].worker_id: w["row"] for w in response.context["workers"]}
    assert rows["worker-001"].leased == 1 and rows["worker-001"].busy_slots == 1
