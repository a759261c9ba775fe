"""The transactional outbox (ENQUEUE_MODE = "outbox") on SQLite and PostgreSQL: a row in the
enqueuing transaction, pushed by the relay exactly once (worker subprocesses:
tests/reliability/test_outbox.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis
from django.db import connections, transaction
from django.test import override_settings

from example_project.embedded_redis import free_port
from fairque_django import conf
from fairque_django.conf import get_queue
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.errors import RedisUnavailableError, SerializationError, TaskValidationError
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task as task_decorator
from fairque_django.enqueuing import enqueue, enqueue_many, enqueue_mode
from fairque_django.models import OutboxEntry
from fairque_django.outbox import Relay
from tests.support.postgres import ALIAS as PG
from tests.support.redis_url import REDIS_URL

FAIRQUE = {
    "redis": {"url": REDIS_URL},
    "workers": [{"id": "w1", "assigned_users": ["*"]}],
    "queue": {"lease_timeout_seconds": 5},
    "ENQUEUE_MODE": "outbox",
    "OUTBOX_PUSH_ON_COMMIT": False,
}

SQLITE = pytest.param("default", marks=pytest.mark.django_db(transaction=True), id="sqlite")
POSTGRES = pytest.param(PG, marks=[pytest.mark.postgres, pytest.mark.django_db(transaction=True,
                                                                               databases=["default", PG])],
                        id="postgres")
BOTH = pytest.mark.parametrize("alias", [SQLITE, POSTGRES])


@task_decorator
def outbox_report(report_id: int) -> int:
    return report_id


@pytest.fixture(autouse=True)
def outbox_settings(redis_client: redis.Redis) -> Iterator[None]:
    conf.install_providers()
    conf.reset()
    with override_settings(FAIRQUE=FAIRQUE):
        yield
    conf.reset()


def rows(alias: str) -> list[str]:
    return list(OutboxEntry.objects.using(alias).order_by("id").values_list("task_id", flat=True))


def in_redis(task_id: str) -> bool:
    queue = get_queue()
    return bool(queue.client.exists(queue.keys.task(task_id)))


def run_all(queue: TaskQueue) -> list[str]:
    """Pop and complete every ready task; their ids."""
    done = []
    while (t := queue.pop()) is not None:
        queue.complete(t)
        done.append(t.task_id)
    return done


def test_enqueue_mode() -> None:
    assert enqueue_mode() == "outbox"
    assert enqueue_mode(True) == "outbox"
    assert enqueue_mode(False) == "direct"
    with override_settings(FAIRQUE={**FAIRQUE, "ENQUEUE_MODE": "direct", "ENQUEUE_ON_COMMIT": True}):
        conf.reset()
        assert enqueue_mode() == "on_commit"
    with override_settings(FAIRQUE={**FAIRQUE, "ENQUEUE_MODE": "later"}):
        conf.reset()
        with pytest.raises(conf.FairQueueImproperlyConfigured, match="ENQUEUE_MODE"):
            enqueue_mode()


@BOTH
def test_a_row_in_the_transaction_and_nothing_in_redis_until_relayed(alias: str) -> None:
    with transaction.atomic(using=alias):
        handle = enqueue(outbox_report(1), user="org:1", using=alias)
        assert rows(alias) == [handle.id]
        assert not in_redis(handle.id)
    assert rows(alias) == [handle.id]  # committed; OUTBOX_PUSH_ON_COMMIT is off: the relay pushes
    assert not in_redis(handle.id)
    assert handle.status.value == "READY"

    assert Relay(using=alias).drain().pushed == 1
    assert rows(alias) == []
    assert get_queue().get_task_state(handle.id)["u"] == "org:1"
    assert handle.refresh().status.value == "READY"
    assert run_all(get_queue()) == [handle.id]
    assert Relay(using=alias).drain().pushed == 0


@BOTH
def test_a_rollback_leaves_no_row_and_nothing_runs(alias: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        enqueue_many([outbox_report(n) for n in range(3)], user="org:1", using=alias)
        assert len(rows(alias)) == 3
        raise RuntimeError("roll back")
    assert rows(alias) == []
    assert Relay(using=alias).drain().pushed == 0
    assert get_queue().get_stats()["tasks_pushed"] == 0
    assert run_all(get_queue()) == []


@BOTH
def test_the_enqueuing_process_pushes_its_rows_after_the_commit(alias: str) -> None:
    with override_settings(FAIRQUE={**FAIRQUE, "OUTBOX_PUSH_ON_COMMIT": True}):
        conf.reset()
        with transaction.atomic(using=alias):
            handles = enqueue_many([outbox_report(n) for n in range(3)], user="org:2", using=alias)
            assert not any(in_redis(h.id) for h in handles)
        assert rows(alias) == []
        assert sorted(run_all(get_queue())) == sorted(h.id for h in handles)
        # outside a transaction (autocommit): the row is committed and pushed at once
        handle = enqueue(outbox_report(9), user="org:2", using=alias)
        assert rows(alias) == []
        assert run_all(get_queue()) == [handle.id]


@BOTH
def test_bad_tasks_fail_at_enqueue_and_write_no_row(alias: str) -> None:
    with transaction.atomic(using=alias):
        with pytest.raises(TaskValidationError):
            enqueue(outbox_report(1), user="bad user", using=alias)
        with pytest.raises(SerializationError):
            enqueue(outbox_report(object()), user="org:1", using=alias)  # type: ignore[arg-type]
        with pytest.raises(TaskValidationError):
            enqueue_many([outbox_report(1), outbox_report(2)], user="bad\nuser", using=alias)
        assert rows(alias) == []


def dead_redis_queue() -> TaskQueue:
    """A queue whose Redis does not answer (a free port, nothing listening)."""
    config = FairQueueConfig.from_dict({
        "redis": {"url": f"redis://127.0.0.1:{free_port()}/0", "socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        "workers": [{"id": "w1", "assigned_users": ["*"]}],
    })
    return TaskQueue(config)


@BOTH
def test_redis_down_at_the_commit_loses_nothing(alias: str, caplog: pytest.LogCaptureFixture) -> None:
    down = dead_redis_queue()
    with override_settings(FAIRQUE={**FAIRQUE, "OUTBOX_PUSH_ON_COMMIT": True}):
        conf.reset()
        with transaction.atomic(using=alias):
            handle = enqueue(outbox_report(5), user="org:3", using=alias, queue=down)
        # the commit went through and enqueue did not raise: the row waits for the relay
        assert rows(alias) == [handle.id]
        assert "not pushed yet" in caplog.text
        with pytest.raises(RedisUnavailableError):
            Relay(down, using=alias).drain()
        assert rows(alias) == [handle.id]
        assert Relay(using=alias).drain().pushed == 1  # Redis is back
    assert rows(alias) == []
    assert run_all(get_queue()) == [handle.id]


class CrashAfterPush(Relay):
    """A relay that dies after its push, before it deletes the rows (their transaction rolls back)."""

    def delete(self, pks: list[int]) -> None:
        raise RuntimeError("relay killed after the push")


@BOTH
def test_a_relay_that_died_after_its_push_does_not_run_the_task_twice(alias: str) -> None:
    with transaction.atomic(using=alias):
        handle = enqueue(outbox_report(7), user="org:4", using=alias)
    with pytest.raises(RuntimeError, match="killed"):
        CrashAfterPush(using=alias).drain()
    assert rows(alias) == [handle.id]  # still there: pushed again by the next relay
    queue = get_queue()
    assert run_all(queue) == [handle.id]  # it ran and finished: its task hash is gone
    assert not in_redis(handle.id)

    assert Relay(using=alias).drain().pushed == 1  # pushed again: Redis answers duplicate
    assert rows(alias) == []
    assert run_all(queue) == []
    assert queue.get_stats()["tasks_pushed"] == 1


def test_an_idempotent_push_remembers_the_id_for_its_ttl(make_config: Any, redis_client: redis.Redis) -> None:
    queue = TaskQueue(make_config(idempotency_ttl_seconds=60))
    task = Task.create(payload={"n": 1}, user_id="a")
    assert queue.push_batch([task], idempotent=True)["task_ids"] == [task.task_id]
    assert 59_000 < redis_client.pttl(queue.keys.idempotency(task.task_id)) <= 60_000
    assert run_all(queue) == [task.task_id]
    again = Task.from_json(task.to_json())
    assert queue.push_batch([again], idempotent=True)["duplicates"] == [task.task_id]
    assert run_all(queue) == []
    # a plain push does not look at the marker (and sets none)
    assert queue.push_batch([Task.from_json(task.to_json())])["task_ids"] == [task.task_id]
    other = Task.create(payload={"n": 2}, user_id="a")
    queue.push_batch([other])
    assert not redis_client.exists(queue.keys.idempotency(other.task_id))


def test_a_row_that_cannot_be_pushed_is_set_aside_and_the_others_go(db: None) -> None:
    with transaction.atomic():
        good = enqueue(outbox_report(1), user="org:1")
        OutboxEntry.objects.create(task_id="broken", user_id="org:1", body="{not json")
        later = enqueue(outbox_report(2), user="org:1")
    result = Relay().drain()
    assert (result.pushed, result.set_aside) == (2, 1)
    (row,) = OutboxEntry.objects.all()
    assert (row.task_id, row.attempts) == ("broken", 1)
    assert row.last_error and row.available_at > row.created_at
    assert sorted(run_all(get_queue())) == sorted([good.id, later.id])
    assert Relay().drain().rows == 0  # not due again before its back-off


class RecordingQueue(TaskQueue):
    """Records the ids each push_batch call was given (and is slow, so that relays overlap)."""

    def __init__(self, config: FairQueueConfig, seen: list[str]) -> None:
        super().__init__(config)
        self.seen = seen

    def push_batch(self, tasks: Iterable[Task], user_id: str | None = None, *,
                   idempotent: bool = False) -> dict[str, Any]:
        batch = list(tasks)
        self.seen.extend(t.task_id for t in batch)
        time.sleep(0.02)
        return super().push_batch(batch, user_id, idempotent=idempotent)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", PG])
def test_two_relays_at_once_push_each_row_once() -> None:
    with transaction.atomic(using=PG):
        handles = enqueue_many([outbox_report(n) for n in range(400)], user="org:5", using=PG)
    seen: list[list[str]] = [[], []]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def relay(n: int) -> None:
        try:
            start.wait(10)
            Relay(RecordingQueue(get_queue().config, seen[n]), using=PG, batch_size=20).drain()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=relay, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert seen[0] and seen[1], "both relays took batches"
    assert set(seen[0]).isdisjoint(seen[1])  # FOR UPDATE SKIP LOCKED: no row went to both
    assert sorted(seen[0] + seen[1]) == sorted(h.id for h in handles)
    assert rows(PG) == []
    assert get_queue().get_stats()["tasks_pushed"] == 400


@pytest.mark.django_db(transaction=True)
def test_fairque_relay_once_relays_and_fails_loudly_when_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    from fairque_django import outbox

    with transaction.atomic():
        handles = enqueue_many([outbox_report(n) for n in range(3)], user="org:6")
    down = dead_redis_queue()
    monkeypatch.setattr(outbox, "get_queue", lambda: down)
    with pytest.raises(CommandError, match="rows left stay in the outbox"):
        call_command("fairque_relay", "--once")
    assert len(rows("default")) == 3
    monkeypatch.undo()
    out = StringIO()
    call_command("fairque_relay", "--once", "--batch-size", "2", stdout=out)
    assert "relayed 3 task(s)" in out.getvalue()
    assert rows("default") == []
    assert sorted(run_all(get_queue())) == sorted(h.id for h in handles)
