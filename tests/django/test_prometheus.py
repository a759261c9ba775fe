"""The Prometheus endpoint (``fairque/metrics``): exposition parsed with prometheus_client's own
parser, bounded tenant labels, and access by bearer token or staff login."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from fairque_django import conf
from fairque_django.alerts import AlertEvaluator
from fairque_django.conf import get_config, get_queue
from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue
from tests.support import FAST, eventually, running_worker

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-token-for-tests"
URL = "/fairque/metrics"


def fairque_settings(redis_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url, "socket_connect_timeout": 0.5},
        "workers": [{"id": "worker-001", "assigned_users": ["*"], "max_concurrent_tasks": 3, **FAST},
                    {"id": "worker-002", "assigned_users": ["vip"], **FAST}],
        # worker-002 runs only to beat: it must not take worker-001's (never started) tenants over
        "queue": {"lease_timeout_seconds": 5, "orphan_takeover": False},
        "METRICS_TOKEN": TOKEN,
        "METRICS_TOP_TENANTS": 5,
        "ALERTS": [{"name": "dlq", "type": "dlq_size_above", "threshold": 0, "severity": "critical"},
                   {"name": "depth", "type": "total_depth_above", "threshold": 10_000}],
        **extra,
    }


@pytest.fixture
def queue(redis_client: redis.Redis, redis_url: str) -> Iterator[TaskQueue]:
    with override_settings(FAIRQUE=fairque_settings(redis_url)):
        conf.install_providers()
        conf.reset()
        yield get_queue()
    conf.reset()


def families(body: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def labels(family: Any, name: str) -> set[str]:
    return {s.labels[name] for s in family.samples if name in s.labels}


def scrape(client: Client) -> dict[str, Any]:
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return families(response.content)


def test_url_is_mounted_by_include() -> None:
    assert reverse("fairque:metrics") == URL and reverse("fairque:health") == "/fairque/health"


def test_exposition_parses_with_expected_families_and_bounded_tenants(client: Client, queue: TaskQueue) -> None:
    pushed = sum(i % 7 + 1 for i in range(30))
    for i in range(30):  # 30 tenants: only the 5 busiest get their own label
        for _ in range(i % 7 + 1):
            queue.push(Task.create(user_id=f"tenant:{i:02d}", payload={"i": i},
                                   priority=Priority.CRITICAL if i % 5 == 0 else Priority.NORMAL))
    for _ in range(12):
        task = queue.pop("worker-001")
        assert task is not None
        queue.complete(task, duration=0.04)
    task = queue.pop("worker-001")
    assert task is not None and queue.fail(task, "boom", retry=False) == "dead"
    AlertEvaluator(queue, guard=False).run()  # the workers would record the alert states
    with running_worker(get_config(), "worker-002"):
        eventually(lambda: queue.client.exists(queue.keys.worker("worker-002")), what="heartbeat")
        fams = scrape(client)

    expected = {"fairque_tenant_depth", "fairque_tenant_unfinished_tasks", "fairque_tenant_oldest_wait_seconds",
                "fairque_tenant_tasks_enqueued", "fairque_tenant_tasks_completed", "fairque_tenant_tasks_failed",
                "fairque_tenant_tasks_dead", "fairque_task_wait_seconds", "fairque_task_run_seconds",
                "fairque_other_tenants", "fairque_tenants_with_work", "fairque_queue_depth", "fairque_dlq_size",
                "fairque_tasks", "fairque_throughput_tasks", "fairque_worker_up",
                "fairque_worker_heartbeat_age_seconds", "fairque_worker_busy_slots", "fairque_worker_slots",
                "fairque_worker_processed", "fairque_worker_failed", "fairque_alert_firing"}
    assert expected <= set(fams), expected - set(fams)
    assert not [name for name in fams if name.startswith("fairque_shard_")]  # one keyspace shard: no shard label
    assert fams["fairque_task_wait_seconds"].type == "histogram"
    assert fams["fairque_tenant_tasks_enqueued"].type == "counter"

    # bounded tenant cardinality: top 5 + "other", in every per-tenant family
    for name in ("fairque_tenant_depth", "fairque_tenant_unfinished_tasks", "fairque_tenant_tasks_enqueued",
                 "fairque_task_wait_seconds", "fairque_task_run_seconds"):
        tenants = labels(fams[name], "tenant")
        assert len(tenants) == 6 and "other" in tenants, (name, tenants)
    assert {s.labels["lane"] for s in fams["fairque_tenant_depth"].samples} == {"critical", "normal", "delayed",
                                                                                 "leased"}
    with_work = fams["fairque_tenants_with_work"].samples[0].value
    assert fams["fairque_other_tenants"].samples[0].value == with_work - 5 and with_work > 20

    def sample(fam: str, suffix: str = "", **want: str) -> float:
        values = [s.value for s in fams[fam].samples
                  if s.name == fam + suffix and all(s.labels.get(k) == v for k, v in want.items())]
        assert len(values) == 1, (fam, suffix, want, values)
        return float(values[0])

    # counters of every tenant label add up to the global counters
    total_enqueued = sum(s.value for s in fams["fairque_tenant_tasks_enqueued"].samples
                         if s.name.endswith("_total"))
    assert total_enqueued == sample("fairque_tasks", "_total", event="pushed") == pushed
    assert sum(s.value for s in fams["fairque_tenant_tasks_completed"].samples if s.name.endswith("_total")) == 12
    assert sample("fairque_tasks", "_total", event="dead") == 1 == sample("fairque_dlq_size")

    # histograms: fixed buckets in seconds, _sum and _count, summable over tenants
    les = [s.labels["le"] for s in fams["fairque_task_run_seconds"].samples
           if s.name.endswith("_bucket") and s.labels["tenant"] == "other"]
    assert les[0] == "0.005" and les[-2] == "300.0" and les[-1] == "+Inf" and len(les) == 15
    run_count = sum(s.value for s in fams["fairque_task_run_seconds"].samples if s.name.endswith("_count"))
    run_sum = sum(s.value for s in fams["fairque_task_run_seconds"].samples if s.name.endswith("_sum"))
    assert run_count == 12 and run_sum == pytest.approx(12 * 0.04)
    in_bucket = sum(s.value for s in fams["fairque_task_run_seconds"].samples
                    if s.name.endswith("_bucket") and s.labels["le"] == "0.05")
    assert in_bucket == 12  # 40 ms <= 50 ms
    wait_count = sum(s.value for s in fams["fairque_task_wait_seconds"].samples if s.name.endswith("_count"))
    assert wait_count == 13  # one wait observation per pop

    # queue, throughput, workers, alerts
    assert sample("fairque_queue_depth", lane="ready") == pushed - 13
    assert sample("fairque_throughput_tasks", window="1h") == 12
    assert sample("fairque_worker_up", worker="worker-002") == 1
    assert sample("fairque_worker_up", worker="worker-001") == 0
    assert sample("fairque_worker_slots", worker="worker-002") == 10
    assert sample("fairque_worker_heartbeat_age_seconds", worker="worker-002") < 2
    assert sample("fairque_alert_firing", alert="dlq", type="dlq_size_above", severity="critical") == 1
    assert sample("fairque_alert_firing", alert="depth") == 0


def test_tenant_limits_and_state_per_tenant_with_bounded_labels(client: Client, queue: TaskQueue) -> None:
    for i in range(8):  # 8 tenants, 5 of them exported with their own label
        for _ in range(10 - i):
            queue.push(Task.create(user_id=f"t:{i}", payload={}))
    queue.set_tenant_limits("t:0", concurrency=2)
    queue.set_tenant_limits("t:1", rate="1/h")
    queue.pause_tenant("t:2")
    leased = queue.pop_many(20, "worker-001")
    assert sum(1 for t in leased if t.user_id == "t:0") == 2 and not any(t.user_id == "t:2" for t in leased)
    fams = scrape(client)

    def value(fam: str, **want: str) -> float | None:
        values = [s.value for s in fams[fam].samples if all(s.labels.get(k) == v for k, v in want.items())]
        assert len(values) <= 1, (fam, want, values)
        return float(values[0]) if values else None

    assert value("fairque_tenant_leased", tenant="t:0") == 2 and value("fairque_tenant_cap", tenant="t:0") == 2
    assert value("fairque_tenant_held", tenant="t:0", reason="cap") == 1
    assert value("fairque_tenant_held", tenant="t:0", reason="rate") == 0
    assert value("fairque_tenant_leased", tenant="t:1") == 1 and value("fairque_tenant_cap", tenant="t:1") is None
    assert value("fairque_tenant_held", tenant="t:1", reason="rate") == 1
    assert value("fairque_tenant_paused", tenant="t:2") == 1 and value("fairque_tenant_paused", tenant="t:0") == 0
    assert value("fairque_tenant_held", tenant="t:2", reason="paused") == 1
    assert value("fairque_tenant_leased", tenant="t:2") == 0
    assert value("fairque_tenants_paused") == 1 and value("fairque_tenants_held") == 3
    for name in ("fairque_tenant_leased", "fairque_tenant_paused", "fairque_tenant_held"):
        assert labels(fams[name], "tenant") == {f"t:{i}" for i in range(5)}, name  # the top 5, never "other"
    assert len(fams["fairque_tenant_held"].samples) == 5 * 3


def test_bearer_token_right_wrong_and_missing(client: Client, queue: TaskQueue) -> None:
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    wrong = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong["WWW-Authenticate"]
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 401
    missing = client.get(URL)
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == 'Bearer realm="fairque"'
    assert client.get(URL, HTTP_AUTHORIZATION="Basic dTpw").status_code == 401
    assert b"fairque_" not in wrong.content + missing.content


def test_without_a_configured_token_no_bearer_is_accepted(client: Client, queue: TaskQueue,
                                                           redis_url: str) -> None:
    with override_settings(FAIRQUE=fairque_settings(redis_url, METRICS_TOKEN=None)):
        assert client.get(URL, HTTP_AUTHORIZATION="Bearer None").status_code == 401
        assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 401


def _user(name: str, *, staff: bool, perm: bool, superuser: bool = False) -> User:
    user: User = User.objects.create_user(name, password="pw", is_staff=staff, is_superuser=superuser)
    if perm:
        user.user_permissions.add(Permission.objects.get(codename="view_fairqueue",
                                                         content_type__app_label="fairque_django"))
    return user


@pytest.mark.parametrize(("staff", "perm", "superuser", "status"), [
    (True, True, False, 200), (True, False, False, 403), (False, True, False, 403), (True, False, True, 200),
])
def test_staff_login_with_the_view_permission(client: Client, queue: TaskQueue, staff: bool, perm: bool,
                                              superuser: bool, status: int) -> None:
    client.force_login(_user("u", staff=staff, perm=perm, superuser=superuser))
    response = client.get(URL)
    assert response.status_code == status
    if status == 200:
        assert "fairque_dlq_size" in families(response.content)


def test_only_get(client: Client, queue: TaskQueue) -> None:
    assert client.post(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_501_without_prometheus_client(client: Client, queue: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "fairque_django.prometheus", raising=False)
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 501
    assert b"pip install 'fairque-django[prometheus]'" in response.content
    assert client.get(URL).status_code == 401  # still no information without credentials


def test_503_when_redis_is_unreachable(client: Client, queue: TaskQueue) -> None:
    broken = fairque_settings("redis://127.0.0.1:1/0")
    with override_settings(FAIRQUE=broken):
        response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 503 and b"unavailable" in response.content
