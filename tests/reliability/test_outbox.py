"""The outbox against real ``runfairworker`` processes on PostgreSQL: tasks enqueued while Redis is
stopped are committed as rows, and once Redis starts the workers' relays push them and each runs
exactly once (in-process cases: tests/django/test_outbox.py)."""

from __future__ import annotations

import time

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from fairque_django import TaskQueue, conf
from fairque_django.enqueuing import enqueue
from fairque_django.models import OutboxEntry
from tests.support.postgres import ALIAS as PG
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import RedisServer, assert_drained, redis_server, runs
from .relconfig import core_config, user

N = 30


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases=["default", PG])
def test_enqueued_with_redis_stopped_committed_then_redis_started_runs_exactly_once(
        redis_client: redis.Redis, rel_env: dict[str, str], workers: Workers) -> None:
    server: RedisServer
    with redis_server("--appendonly", "yes") as server:  # not started yet: Redis is down
        rel_env.update(FAIRQUE_REL_REDIS_URL=server.url(), FAIRQUE_REL_SOCKET_TIMEOUT="0.5",
                       DJANGO_SETTINGS_MODULE="tests.reliability.outbox_settings")
        queue = TaskQueue(core_config(rel_env))
        with override_settings(FAIRQUE={**conf.fairque_setting(), "ENQUEUE_MODE": "outbox"}):  # type: ignore[dict-item]
            conf.reset()
            with transaction.atomic(using=PG):
                handles = [enqueue(tasks.work.create_task((i, 0.0)), user=user(i), queue=queue, using=PG)
                           for i in range(N)]
            # committed; the push right after the commit failed (Redis is down) and nothing raised
            assert OutboxEntry.objects.using(PG).count() == N
        conf.reset()

        server.start()
        # two workers, each with its relay (ENQUEUE_MODE is "outbox" in their settings)
        first, second = workers.start("rel-1"), workers.start("rel-2")
        ids = {h.id for h in handles}
        eventually(lambda: set(runs(redis_client, tasks.RUNS)) == ids, timeout=60, what="every task ran")
        eventually(lambda: OutboxEntry.objects.using(PG).count() == 0, timeout=30, what="the outbox drained")
        time.sleep(2)  # relays keep looking (every 0.2 s): nothing runs again
        assert runs(redis_client, tasks.RUNS) == dict.fromkeys(ids, 1)
        assert first.alive() and second.alive()
        assert first.terminate(30) == 0 and second.terminate(30) == 0
        stats = queue.get_stats()
        assert (stats["tasks_pushed"], stats["tasks_completed"]) == (N, N)
        assert_drained(server.client(), queue.config.queue.stats_prefix)
