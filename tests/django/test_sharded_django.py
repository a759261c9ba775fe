"""``FAIRQUE = {"queue": {"shards": 4}}`` from Django settings: the process queue is sharded, and
enqueue, the Django task backend (results, the owner index), XCom and a worker built from the
settings all use the tenant's shard (``tag``: its hash tag, by the shard map)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from fairque_django import conf, enqueue, tenant, xcom_pull, xcom_push
from fairque_django.compat import TaskResultStatus
from fairque_django.conf import get_config, get_queue
from fairque_django.core.models import Task
from fairque_django.core.sharded import ShardedTaskQueue
from fairque_django.core.shards import ShardMap
from fairque_django.core.worker import Worker
from tests.testapp import django_tasks as dt

SUCCESSFUL = TaskResultStatus("SUCCESSFUL")
MAP = ShardMap("fq", 4)


def tag(user: str) -> str:
    return MAP.keys_of(user).base


@pytest.fixture(autouse=True)
def sharded_settings(redis_client: redis.Redis) -> Iterator[None]:
    fairque = copy.deepcopy(settings.FAIRQUE)
    fairque["queue"] = {**fairque["queue"], "shards": 4}
    conf.install_providers()
    conf.reset()
    with override_settings(FAIRQUE=fairque):
        yield
    conf.reset()


def keys(client: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(count=1000))


def test_the_process_queue_is_sharded_and_enqueue_uses_the_tenant_s_shard(redis_client: redis.Redis) -> None:
    queue = get_queue()
    assert isinstance(queue, ShardedTaskQueue) and len(queue.shard_queues) == 4
    with tenant("user:4"):
        handle = enqueue(Task.create(payload={"x": 1}))
    assert f"{tag('user:4')}:t:{handle.id}" in keys(redis_client) and tag("user:4") != "{fq}"
    with tenant("user:5"):
        xcom_push("k", [1, 2])
        assert xcom_pull("k") == [1, 2]
    assert any(k.startswith(f"{tag('user:5')}:") and ":xcom:" in k for k in keys(redis_client))


def test_a_worker_from_the_settings_runs_django_tasks_of_every_shard(redis_client: redis.Redis) -> None:
    results = []
    for user in ("user:1", "user:2", "user:3"):
        with tenant(user):
            results.append(dt.add.enqueue(2, 3))
    worker = Worker(get_config(), worker_id="worker-001", queue=get_queue("worker-001"), concurrency=1, burst=True,
                    install_signal_handlers=False)
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert isinstance(worker.queue, ShardedTaskQueue) and not worker.prefetch
    for result in results:
        got = dt.add.get_result(result.id)  # no tenant: the owner index (home keys) finds the user
        assert got.status == SUCCESSFUL and got.return_value == 5
    stats = get_queue().get_stats()
    assert stats["tasks_completed"] == 3 and set(stats["users"]) == {"user:1", "user:2", "user:3"}
    found = keys(redis_client)
    assert len({tag(u) for u in ("user:1", "user:2", "user:3")}) == 3
    assert all(any(k.startswith(f"{tag(u)}:result:") for k in found) for u in ("user:1", "user:2", "user:3"))
    assert any(k.startswith("{fq}:result_owner:") for k in found)
