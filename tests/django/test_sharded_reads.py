"""The Django read side with ``queue.shards = 4``: the admin dashboard, the DLQ list (paginated
across the shards), a dead task's page, the tenant page, Prometheus, ``fairque_stats`` and
``fairque_alerts`` read every shard and merge; ``fairque_dlq list --user`` reads the tenant's shard.

The queue comes from ``get_queue()``; while it does not yet build the sharded facade for
``shards > 1`` (a plain queue answers ``shard_queues == (itself,)``), the fixture caches
``tests/support/sharded.py``'s stand-in in its place."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from fairque_django import conf
from fairque_django.conf import get_config, get_queue, get_redis_client
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.shards import ShardMap
from tests.support.sharded import ShardedReadsStandIn, users_per_shard

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_client")]

SHARDS = 4
TOKEN = "sharded-metrics-token"
PER_PAGE = 50  # the admin's DLQ page size


@pytest.fixture
def sq(redis_url: str) -> Iterator[Any]:
    settings = {
        "redis": {"url": redis_url},
        "workers": [{"id": "worker-001", "assigned_users": ["*"]}],
        "queue": {"shards": SHARDS, "lease_timeout_seconds": 30},
        "METRICS_TOKEN": TOKEN,
        "ALERTS": [{"name": "dlq", "type": "dlq_size_above", "threshold": 0, "severity": "critical"}],
    }
    with override_settings(FAIRQUE=settings):
        conf.reset()
        queue: Any = get_queue()
        if len(queue.shard_queues) == 1:  # get_queue() does not build the sharded facade yet
            queue = ShardedReadsStandIn(get_config(), get_redis_client())
            conf._queues[None] = queue
        yield queue
    conf.reset()


@pytest.fixture
def viewer(client: Client) -> Client:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_fairqueue",
                                                     content_type__app_label="fairque_django"))
    client.force_login(user)
    return client


def shard_map(sq: Any) -> ShardMap:
    q = sq.config.queue
    return ShardMap(q.stats_prefix, q.shards, q.shard_pins)


def queue_of(sq: Any, user: str) -> TaskQueue:
    queue: TaskQueue = sq.shard_queues[shard_map(sq).of(user)]
    return queue


def make_dead(sq: Any, per_shard: int) -> list[str]:
    """``per_shard`` dead tasks in each shard; every dead id, newest first (ties: id descending)."""
    users = users_per_shard(shard_map(sq), 2)
    for names in users:
        q = queue_of(sq, names[0])
        for i in range(per_shard):
            assert q.push(Task.create(user_id=names[i % 2], func_name="tests.testapp.tasks.record",
                                      args=[i]))["success"]
        for task in q.pop_many(per_shard, "worker-001"):
            assert q.fail(task, ValueError("boom"), retry=False) == "dead"
    rows = [(score, m.decode()) for q in sq.shard_queues for m, score in q.client.zrange(q.keys.dlq, 0, -1,
                                                                                         withscores=True)]
    return [task_id for _, task_id in sorted(rows, reverse=True)]


def test_the_dlq_list_pages_through_every_shard(sq: Any, viewer: Client) -> None:
    truth = make_dead(sq, 16)  # 64 dead tasks: two pages
    assert len(truth) == 4 * 16
    seen: list[str] = []
    for page in (1, 2):
        response = viewer.get(reverse("admin:fairque_dlq"), {"p": page})
        assert response.status_code == 200
        assert response.context["page"].total == len(truth)
        seen += [row["task_id"] for row in response.context["rows"]]
    assert seen == truth
    body = viewer.get(reverse("admin:fairque_dlq"), {"p": 2}).content.decode()
    assert truth[-1] in body and truth[0] not in body
    last = truth[-1]
    detail = viewer.get(reverse("admin:fairque_dlq_detail", args=[last]))
    assert detail.status_code == 200 and last in detail.content.decode()
    filtered = viewer.get(reverse("admin:fairque_dlq"), {"error_type": "ValueError"})
    assert [row["task_id"] for row in filtered.context["rows"]] == truth[:PER_PAGE]


def test_the_dashboard_sums_the_shards(sq: Any, viewer: Client) -> None:
    truth = make_dead(sq, 2)
    users = users_per_shard(shard_map(sq), 1, stem="busy")
    for n, names in enumerate(users):
        for i in range(n + 1):
            queue_of(sq, names[0]).push(Task.create(user_id=names[0], payload={"i": i}))
    response = viewer.get(reverse("admin:fairque_dashboard"))
    assert response.status_code == 200
    stats = [q.get_stats() for q in sq.shard_queues]
    assert response.context["stats"]["tasks_pushed"] == sum(s["tasks_pushed"] for s in stats) == len(truth) + 10
    assert response.context["dlq_size"] == len(truth)
    rows = {r["row"].tenant: r["row"].ready for r in response.context["user_rows"]}
    assert {names[0]: n + 1 for n, names in enumerate(users)}.items() <= rows.items()


def test_the_tenant_page_reads_the_tenant_s_shard(sq: Any, viewer: Client) -> None:
    user = users_per_shard(shard_map(sq), 1)[3][0]
    for i in range(3):
        queue_of(sq, user).push(Task.create(user_id=user, payload={"i": i}))
    response = viewer.get(reverse("admin:fairque_tenant"), {"id": user})
    assert response.status_code == 200
    assert response.context["detail"].ready == 3 and response.context["queued"].total == 3
    assert response.context["shard"] == 3 and "keyspace shard 3 of 4" in response.content.decode()


def test_prometheus_sums_the_shards(sq: Any, client: Client) -> None:
    truth = make_dead(sq, 3)
    response = client.get("/fairque/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    dlq = next(s.value for s in fams["fairque_dlq_size"].samples)
    pushed = next(s.value for s in fams["fairque_tasks"].samples if s.labels.get("event") == "pushed")
    assert dlq == len(truth) == sum(q.get_stats()["dlq_size"] for q in sq.shard_queues)
    assert pushed == sum(q.get_stats()["tasks_pushed"] for q in sq.shard_queues)


def test_prometheus_labels_the_depth_and_tenants_of_each_shard(sq: Any, client: Client) -> None:
    users = users_per_shard(shard_map(sq), 2)
    for shard, names in enumerate(users):  # shard n: 2 tenants, n + 1 tasks each
        for user in names:
            for i in range(shard + 1):
                queue_of(sq, user).push(Task.create(user_id=user, payload={"i": i}))
    response = client.get("/fairque/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    ready = {s.labels["shard"]: s.value for s in fams["fairque_shard_queue_depth"].samples
             if s.labels["lane"] == "ready"}
    tenants = {s.labels["shard"]: s.value for s in fams["fairque_shard_tenants_with_work"].samples}
    assert ready == {str(n): 2.0 * (n + 1) for n in range(SHARDS)}
    assert tenants == {str(n): 2.0 for n in range(SHARDS)}
    merged = next(s.value for s in fams["fairque_queue_depth"].samples if s.labels["lane"] == "ready")
    assert merged == sum(ready.values()) and "shard" not in fams["fairque_queue_depth"].samples[0].labels


def test_fairque_stats_and_alerts_read_every_shard(sq: Any) -> None:
    truth = make_dead(sq, 2)
    out = io.StringIO()
    call_command("fairque_stats", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["totals"]["dlq_size"] == len(truth) and data["totals"]["pushed"] == len(truth)
    assert data["users_with_work"] == 0
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_code:
        call_command("fairque_alerts", "--json", "--notify", stdout=out)
    assert exit_code.value.code == 1
    rules = {r["name"]: r for r in json.loads(out.getvalue())["rules"]}
    assert rules["dlq"]["firing"] and rules["dlq"]["value"] == len(truth) and rules["dlq"]["since"] is not None
    prefix = sq.config.queue.stats_prefix
    assert sq.home_queue.client.hget(f"{{{prefix}}}:alerts", "s:dlq") == b"firing"  # a home key


def test_fairque_dlq_list_of_a_tenant_reads_the_tenant_s_shard(sq: Any) -> None:
    dead: dict[str, str] = {}
    for names in users_per_shard(shard_map(sq), 1, stem="dead"):  # one tenant in each shard
        q = queue_of(sq, names[0])
        assert q.push(Task.create(user_id=names[0], func_name="tests.testapp.tasks.record", args=[0]))["success"]
        (task,) = q.pop_many(1, "worker-001")
        assert q.fail(task, ValueError("boom"), retry=False) == "dead"
        dead[names[0]] = task.task_id
    for user, task_id in dead.items():
        out = io.StringIO()
        call_command("fairque_dlq", "list", "--json", "--user", user, stdout=out)
        data = json.loads(out.getvalue())
        assert data["dlq_size"] == len(dead) and [d["task_id"] for d in data["tasks"]] == [task_id]
