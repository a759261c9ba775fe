"""A Redis Cluster from Django settings: ``FAIRQUE["redis"]`` with ``cluster``/``startup_nodes`` or a
``redis+cluster://`` URL gives the process a RedisCluster client, ``runfairworker`` serves it, and
``check --deploy`` verifies the cluster's health and every master's ``maxmemory-policy``."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from redis.cluster import RedisCluster

from example_project.embedded_cluster import Cluster
from fairque_django import TaskQueue, get_redis_client
from fairque_django.checks import check_config, check_redis_deploy, check_redis_ping
from fairque_django.conf import get_queue
from fairque_django.core.connection import reset_clients
from tests.reliability import tasks as rel_tasks
from tests.reliability.relconfig import core_config, user
from tests.support.processes import Workers
from tests.support.wait import eventually


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    yield
    reset_clients()


def fairque(redis_section: dict[str, Any]) -> dict[str, Any]:
    return {"redis": redis_section, "workers": [{"id": "w1", "assigned_users": ["*"]}],
            "queue": {"stats_prefix": f"fqc{uuid.uuid4().hex[:8]}"}}


def ids(messages: list[CheckMessage]) -> list[str]:
    return [m.id or "" for m in messages]


def test_startup_nodes_in_settings_give_a_cluster_client(redis_cluster: Cluster) -> None:
    nodes = [{"host": "127.0.0.1", "port": m.port} for m in redis_cluster.masters]
    with override_settings(FAIRQUE=fairque({"cluster": True, "startup_nodes": nodes})):
        client = get_redis_client()
        assert isinstance(client, RedisCluster)
        queue = get_queue()
        assert queue.client is client
        assert queue.push(rel_tasks.work.create_task((1,), user_id="a"))["success"]
        assert queue.get_stats()["tasks_pending"] == 1
        assert check_config() == [] and check_redis_ping() == [] and check_redis_deploy() == []


def test_a_cluster_url_in_settings_gives_a_cluster_client(redis_cluster: Cluster) -> None:
    with override_settings(FAIRQUE=fairque({"url": redis_cluster.url()})):
        assert isinstance(get_redis_client(), RedisCluster)
        assert get_queue().config.redis.cluster


@pytest.mark.parametrize(("section", "key", "words"), [
    ({"cluster": True, "db": 2}, "redis.db", "only database 0"),
    ({"url": "redis+cluster://127.0.0.1:7000/3"}, "redis.url", "only database 0"),
    ({"startup_nodes": ["127.0.0.1:7000"]}, "redis.startup_nodes", "set cluster: true"),
    ({"cluster": True, "startup_nodes": ["127.0.0.1:port"]}, "redis.startup_nodes[0]", "is not host:port"),
    ({"cluster": True, "startup_nodes": [{"host": "h", "prot": 1}]}, "redis.startup_nodes[0]", "host and port"),
    ({"cluster": True, "startup_nodes": "127.0.0.1:7000"}, "redis.startup_nodes", "list of"),
    ({"cluster": True, "url": "unix:///tmp/redis.sock"}, "redis.url", "not a unix socket"),
])
def test_bad_cluster_settings_are_e001_naming_the_key(section: dict[str, Any], key: str, words: str) -> None:
    with override_settings(FAIRQUE=fairque(section)):
        messages = check_config()
        assert ids(messages) == ["fairque_django.E001"]
        assert key in messages[0].msg and words in messages[0].msg


def test_deploy_check_wants_noeviction_on_every_master(redis_cluster: Cluster) -> None:
    victim = redis_cluster.masters[1]
    with override_settings(FAIRQUE=fairque({"url": redis_cluster.url()})), victim.client() as node:
        node.config_set("maxmemory-policy", "allkeys-lru")
        try:
            messages = check_redis_deploy()
            assert ids(messages) == ["fairque_django.E009"]
            assert f"127.0.0.1:{victim.port}" in messages[0].msg and "allkeys-lru" in messages[0].msg
            assert "fairque_django.E009" in ids(run_checks(include_deployment_checks=True))
        finally:
            node.config_set("maxmemory-policy", "noeviction")
        assert check_redis_deploy() == []


def test_deploy_check_warns_of_volatile_eviction_and_of_a_policy_it_cannot_read(redis_cluster: Cluster) -> None:
    victim = redis_cluster.masters[0]
    with override_settings(FAIRQUE=fairque({"url": redis_cluster.url()})), victim.client() as node:
        node.config_set("maxmemory-policy", "volatile-lru")
        try:
            assert ids(check_redis_deploy()) == ["fairque_django.W005"]
        finally:
            node.config_set("maxmemory-policy", "noeviction")
    for master in redis_cluster.masters:  # a user that may not run CONFIG (as on managed services)
        with master.client() as node:
            node.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-config")
    with override_settings(FAIRQUE=fairque({"url": f"redis+cluster://app:pw@127.0.0.1:{victim.port}/"})):
        messages = check_redis_deploy()
        assert ids(messages) == ["fairque_django.W006"] * 3
        assert "pw" not in " ".join(m.msg for m in messages)


def test_deploy_check_reports_an_unhealthy_cluster(redis_cluster: Cluster) -> None:
    owner = redis_cluster.masters[2]
    with override_settings(FAIRQUE=fairque({"url": redis_cluster.url()})), owner.client() as node:
        get_redis_client().ping()  # met the cluster while it was whole
        node.execute_command("CLUSTER", "DELSLOTS", 16383)  # an unassigned slot: cluster_state:fail
        try:
            messages = eventually(check_redis_deploy, timeout=20, what="E010")
            assert "fairque_django.E010" in ids(messages)
            assert "16383 of 16384 slots assigned" in " ".join(m.msg for m in messages)
        finally:
            node.execute_command("CLUSTER", "ADDSLOTS", 16383)
        eventually(redis_cluster.state_ok, timeout=20, what="the cluster to recover")
        eventually(lambda: check_redis_deploy() == [], timeout=20, what="a healthy cluster again")


def test_deploy_check_finds_a_cluster_node_used_as_a_single_redis(redis_cluster: Cluster) -> None:
    with override_settings(FAIRQUE=fairque({"url": f"redis://127.0.0.1:{redis_cluster.masters[0].port}/0"})):
        messages = check_redis_deploy()
        assert ids(messages) == ["fairque_django.E011"]
        assert "'cluster': True" in (messages[0].hint or "")


def test_deploy_check_is_quiet_on_a_good_single_redis() -> None:
    assert check_redis_deploy() == []  # the test Redis: noeviction, not a cluster


def test_runfairworker_burst_serves_a_cluster_from_settings(redis_cluster: Cluster, redis_client: redis.Redis,
                                                            redis_url: str, workers: Workers) -> None:
    """A ``runfairworker`` subprocess whose FAIRQUE names the cluster by startup nodes serves every task."""
    prefix = f"fqc{uuid.uuid4().hex[:8]}"
    env = {"DJANGO_SETTINGS_MODULE": "tests.reliability.settings", "FAIRQUE_REL_PREFIX": prefix,
           "FAIRQUE_REL_CLUSTER_NODES": ",".join(redis_cluster.startup_nodes),
           "FAIRQUE_REL_LOG_URL": redis_url, "FAIRQUE_TEST_REDIS_URL": redis_url}
    config = core_config(env)
    assert config.redis.cluster
    queue = TaskQueue(config)
    assert isinstance(queue.client, RedisCluster)
    redis_client.delete(rel_tasks.RUNS)
    pushed = [rel_tasks.work.create_task((i,), user_id=user(i)) for i in range(60)]
    queue.push_batch(pushed)
    proc = workers.start("rel-1", "--burst", **env)
    assert proc.wait(60) == 0, proc.log()[-3000:]
    runs = {k.decode(): int(v) for k, v in redis_client.hgetall(rel_tasks.RUNS).items()}
    assert sorted(runs) == sorted(t.task_id for t in pushed) and set(runs.values()) == {1}
    stats = queue.get_stats()
    assert stats["tasks_completed"] == 60 and stats["tasks_pending"] == 0 and stats["tasks_active"] == 0



@pytest.mark.django_db
def test_the_admin_prometheus_and_commands_read_a_cluster(redis_cluster: Cluster, client: Client) -> None:
    """The dashboard, the DLQ list, a tenant's page, the metrics endpoint, fairque_stats and
    fairque_health, with FAIRQUE naming the cluster."""
    setting = {**fairque({"url": redis_cluster.url()}), "METRICS_TOKEN": "t0ken"}
    with override_settings(FAIRQUE=setting):
        queue = get_queue()
        for i in range(4):
            queue.push(rel_tasks.work.create_task((i,), user_id=f"user:{i % 2}"))
        dead = queue.pop("w1")
        assert dead is not None and queue.fail(dead, "boom", retry=False) == "dead"
        user: User = User.objects.create_user("v", password="pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_fairqueue",
                                                         content_type__app_label="fairque_django"))
        client.force_login(user)
        for url in (reverse("admin:fairque_dashboard"), reverse("admin:fairque_dlq"),
                    reverse("admin:fairque_tenant") + "?id=user:1"):
            response = client.get(url)
            assert response.status_code == 200, (url, response.content[:500])
        assert dead.task_id in client.get(reverse("admin:fairque_dlq")).content.decode()
        metrics = client.get("/fairque/metrics", HTTP_AUTHORIZATION="Bearer t0ken")
        assert metrics.status_code == 200 and "fairque_dlq_size 1" in metrics.content.decode()
        out = io.StringIO()
        call_command("fairque_stats", "--json", stdout=out)
        stats = json.loads(out.getvalue())
        assert stats["redis"].startswith("redis+cluster://") and stats["totals"]["dlq_size"] == 1
        assert stats["totals"]["pushed"] == 4 and stats["prefix"] == setting["queue"]["stats_prefix"]
