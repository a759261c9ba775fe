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
from fairque_django.admin_monitoring import build_chart, monitoring_context, nice_ceiling
from fairque_django.alerts import AlertEvaluator
from fairque_django.conf import get_queue
from fairque_django.core.metrics import history_key
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
    assert "No alert is firing (3 rules checked)." in body  # the two above and the built-in tenant-starved
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
    assert "No alert is firing (1 rule checked)." in response.content.decode()
    assert [a["name"] for a in response.context["alert_rules"]] == ["tenant-starved"]


def test_charts_are_inline_svg_from_minute_snapshots(viewer: Client, queue: TaskQueue) -> None:
    for _ in range(3):
        queue.push(Task.create(user_id="user:2", payload={}))
    queue.push(Task.create(user_id="user:3", payload={}))
    body = dashboard(viewer).content.decode()  # the page stores the first point
    assert queue.client.zcard(history_key(queue.keys)) == 1
    dashboard(viewer)
    assert queue.client.zcard(history_key(queue.keys)) == 1  # at most one point per minute
    queue.client.delete(f"{history_key(queue.keys)}:guard")  # a minute later...
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
