"""The ``fairque/health`` view for load balancers: 200 when Redis answers and a worker is alive,
503 otherwise; no authentication and no tenant data."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings

from fairque_django import conf
from fairque_django.conf import get_config, get_queue
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from tests.support import FAST, eventually, running_worker

URL = "/fairque/health"


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[TaskQueue]:
    fast = {**settings.FAIRQUE, "workers": [{**w, **FAST} for w in settings.FAIRQUE["workers"]]}
    with override_settings(FAIRQUE=fast):
        conf.install_providers()
        conf.reset()
        yield get_queue()
    conf.reset()


def health(client: Client) -> tuple[int, dict[str, object]]:
    response = client.get(URL)
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response.get("Cache-Control", "")
    return response.status_code, json.loads(response.content)


def test_503_when_no_worker_is_alive(client: Client, queue: TaskQueue) -> None:
    status, body = health(client)
    assert status == 503
    assert body["status"] == "unavailable" and body["redis"] is True and body["live_workers"] == 0
    assert body["workers"] == 2 and "no live worker" in str(body["reason"])


def test_200_with_a_live_worker_and_no_tenant_data(client: Client, queue: TaskQueue) -> None:
    queue.push(Task.create(user_id="user:3", payload={"secret": "tenant-data"}, delay_seconds=600))
    queue.push(Task.create(user_id="user:2", func_name="tests.testapp.tasks.always_fails", args=["x"],
                           max_retries=0))
    with running_worker(get_config(), "worker-001"):
        eventually(lambda: queue.dlq_size() == 1, what="a dead task")
        status, body = health(client)
        response = client.get(URL)
    assert status == 200
    assert body == {"status": "ok", "redis": True, "live_workers": 1, "workers": 2, "dlq_size": 1,
                    "firing_alerts": 0, "stalled_tenants": 0,
                    "workers_by_status": {"alive": 1, "stale": 0, "down": 0, "never seen": 1}}
    for secret in (b"user:", b"tenant-data", b"always_fails"):
        assert secret not in response.content
    status, body = health(client)  # stopped cleanly: no live worker any more
    assert status == 503 and body["live_workers"] == 0


def test_a_stale_heartbeat_does_not_count(client: Client, queue: TaskQueue) -> None:
    # what a SIGKILLed worker leaves behind: its last heartbeat, long ago
    queue.client.zadd(queue.keys.workers, {"worker-001": time.time() - 3600})
    status, body = health(client)
    assert status == 503 and body["live_workers"] == 0


def test_503_when_redis_is_unreachable(client: Client, queue: TaskQueue, admin_client: Client) -> None:
    broken = {"redis": {"url": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5},
              "workers": [{"id": "worker-001", "assigned_users": ["*"]}]}
    with override_settings(FAIRQUE=broken):
        status, body = health(client)
        response = client.get(URL)
        staff_status, staff_body = health(admin_client)
    assert status == 503 and body["redis"] is False and body["status"] == "unavailable"
    assert body["reason"] == "redis: unreachable"
    for detail in (b"127.0.0.1", b":1", b"Connection refused", b"Error 111"):
        assert detail not in response.content  # no connection details for an anonymous caller
    assert staff_status == 503 and "127.0.0.1:1" in str(staff_body["reason"])  # staff may see them


def test_503_on_a_broken_configuration(client: Client, queue: TaskQueue) -> None:
    with override_settings(FAIRQUE={"workers": "nope"}):
        status, body = health(client)
    assert status == 503 and body["status"] == "unavailable"
    assert body["reason"] == "configuration error (see the log)"


def test_no_authentication_and_only_get(client: Client, queue: TaskQueue) -> None:
    with running_worker(get_config(), "worker-002"):
        eventually(lambda: client.get(URL).status_code == 200, what="healthy")
        assert client.post(URL).status_code == 405
