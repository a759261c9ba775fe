"""enqueue(): who a task belongs to, and on_commit against a real database transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test import override_settings

from fairque_django import conf
from fairque_django.conf import get_queue
from fairque_django.core.errors import (
    MissingTenantError,
    NotEnqueuedAfterCommitError,
    PayloadTooLargeError,
    RedisUnavailableError,
    SerializationError,
    TaskValidationError,
)
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task as task_decorator
from fairque_django.enqueuing import aenqueue, aenqueue_many, enqueue, enqueue_many
from fairque_django.tenancy import tenant
from tests.support.redis_url import REDIS_URL

FAIRQUE = {
    "redis": {"url": REDIS_URL},
    "workers": [{"id": "w1", "assigned_users": ["*"]}],
    "queue": {"lease_timeout_seconds": 5},
}


@task_decorator
def send_report(report_id: int) -> int:
    return report_id


@pytest.fixture(autouse=True)
def settings_and_redis(redis_client: redis.Redis) -> Iterator[None]:
    conf.install_providers()  # another test module may have replaced the core hooks
    conf.reset()
    with override_settings(FAIRQUE=FAIRQUE):
        yield
    conf.reset()


def payload_task(**kwargs: Any) -> Task:
    return Task.create(payload={"action": "report"}, **kwargs)


def pushed() -> int:
    return int(get_queue().get_stats()["tasks_pushed"])


def pop_all() -> list[Task]:
    queue = get_queue()
    out = []
    while (t := queue.pop()) is not None:
        queue.complete(t)
        out.append(t)
    return out


class RecordingQueue(TaskQueue):
    """A real queue that notes, at push time, whether the task's User row is committed."""

    def __init__(self) -> None:
        super().__init__(conf.get_config(), conf.get_redis_client())
        self.seen: list[tuple[str, bool, bool]] = []

    def push(self, task: Task, user_id: str | None = None, *, encoded: list[Any] | None = None) -> dict[str, Any]:
        pk = int((user_id or task.user_id or "user:0").split(":")[1])
        self.seen.append((task.task_id, connection.in_atomic_block, User.objects.filter(pk=pk).exists()))
        return super().push(task, user_id, encoded=encoded)


# --------------------------------------------------------------------------- who owns the task


def test_explicit_user_id() -> None:
    task_id = enqueue(payload_task(), user="tenant:acme").id
    [popped] = pop_all()
    assert popped.task_id == task_id and popped.user_id == "tenant:acme"


@pytest.mark.django_db
def test_explicit_user_object() -> None:
    user = User.objects.create_user("erin")
    group = Group.objects.create(name="acme")
    first = enqueue(payload_task(), user=user).id
    second = enqueue(payload_task(), user=group).id
    by_id = {t.task_id: t.user_id for t in pop_all()}
    assert by_id == {first: f"user:{user.pk}", second: f"group:{group.pk}"}


def test_task_own_user_id() -> None:
    enqueue(payload_task(user_id="tenant:own"))
    assert [t.user_id for t in pop_all()] == ["tenant:own"]


def test_explicit_user_wins_over_task_user() -> None:
    enqueue(payload_task(user_id="tenant:own"), user="tenant:explicit")
    assert [t.user_id for t in pop_all()] == ["tenant:explicit"]


def test_current_tenant() -> None:
    with tenant("tenant:current"):
        enqueue(payload_task())
    assert [t.user_id for t in pop_all()] == ["tenant:current"]


def test_task_user_wins_over_current_tenant() -> None:
    with tenant("tenant:current"):
        enqueue(payload_task(user_id="tenant:own"))
    assert [t.user_id for t in pop_all()] == ["tenant:own"]


def test_missing_tenant() -> None:
    with pytest.raises(MissingTenantError):
        enqueue(payload_task())
    assert pushed() == 0


@pytest.mark.parametrize("bad", ["bad id", "{x}", ""])
def test_bad_user_rejected(bad: str) -> None:
    with pytest.raises(TaskValidationError):
        enqueue(payload_task(), user=bad)
    assert pushed() == 0


def test_explicit_queue_argument() -> None:
    queue = TaskQueue(conf.get_config())
    enqueue(payload_task(), user="tenant:a", queue=queue)
    assert queue.get_stats()["tasks_pushed"] == 1


def test_registered_task_enqueue_uses_django_enqueue() -> None:
    """@task functions' .enqueue()/.apply_async() go through this module (installed in ready())."""
    with tenant("tenant:fn"):
        task_id = send_report.enqueue(7).id
    task_id2 = send_report.apply_async((8,), user="tenant:other").id
    popped = {t.task_id: t for t in pop_all()}
    assert popped[task_id].user_id == "tenant:fn" and popped[task_id].args == [7]
    assert popped[task_id2].user_id == "tenant:other"
    assert popped[task_id].func_name == send_report.name


# --------------------------------------------------------------------------- on_commit


@pytest.mark.django_db(transaction=True)
def test_on_commit_waits_for_the_commit() -> None:
    queue = RecordingQueue()
    with transaction.atomic():
        user = User.objects.create_user("frank")
        task_id = enqueue(payload_task(), user=user, on_commit=True, queue=queue).id
        assert task_id  # returned at once
        assert queue.get_task_state(task_id) is None
        assert queue.get_stats()["tasks_pushed"] == 0
        assert queue.pop() is None
        assert queue.seen == []
    # committed: pushed exactly once, after the row became durable
    assert queue.seen == [(task_id, False, True)]
    popped = queue.pop()
    assert popped is not None and popped.task_id == task_id and popped.user_id == f"user:{user.pk}"
    assert User.objects.filter(pk=user.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_on_commit_rollback_never_pushes() -> None:
    queue = RecordingQueue()
    with pytest.raises(RuntimeError), transaction.atomic():
        user = User.objects.create_user("grace")
        task_id = enqueue(payload_task(), user=user, on_commit=True, queue=queue).id
        raise RuntimeError("rollback")
    assert not User.objects.filter(username="grace").exists()
    assert queue.seen == []
    assert queue.get_task_state(task_id) is None
    assert queue.get_stats()["tasks_pushed"] == 0
    assert queue.pop() is None


@pytest.mark.django_db(transaction=True)
def test_on_commit_savepoint_rollback_drops_only_its_tasks() -> None:
    with transaction.atomic():
        kept = enqueue(payload_task(), user="tenant:a", on_commit=True).id
        try:
            with transaction.atomic():
                enqueue(payload_task(), user="tenant:b", on_commit=True)
                raise RuntimeError("inner rollback")
        except RuntimeError:
            pass
        assert pushed() == 0
    assert [t.task_id for t in pop_all()] == [kept]


@pytest.mark.django_db(transaction=True)
def test_on_commit_validates_immediately() -> None:
    with transaction.atomic():
        bad_json = Task(task_id="t-bad", user_id="tenant:a", payload={"when": object()})
        with pytest.raises(SerializationError):
            enqueue(bad_json, on_commit=True)
        with pytest.raises(TaskValidationError):
            enqueue(payload_task(), user="bad id", on_commit=True)
        with pytest.raises(MissingTenantError):
            enqueue(payload_task(), on_commit=True)
    assert pushed() == 0


@pytest.mark.django_db(transaction=True)
def test_on_commit_keeps_the_tenant_of_enqueue_time() -> None:
    with transaction.atomic():
        with tenant("tenant:then"):
            enqueue(payload_task(), on_commit=True)
        with tenant("tenant:later"):
            pass
    assert [t.user_id for t in pop_all()] == ["tenant:then"]


@pytest.mark.django_db(transaction=True)
def test_on_commit_outside_a_transaction_pushes_at_once() -> None:
    enqueue(payload_task(), user="tenant:a", on_commit=True)
    assert pushed() == 1


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_setting_is_the_default() -> None:
    with override_settings(FAIRQUE={**FAIRQUE, "ENQUEUE_ON_COMMIT": True}):
        with transaction.atomic():
            enqueue(payload_task(), user="tenant:a")
            assert pushed() == 0
            enqueue(payload_task(), user="tenant:b", on_commit=False)  # explicit wins
            assert pushed() == 1
        assert pushed() == 2


@pytest.mark.django_db(transaction=True)
def test_default_is_immediate() -> None:
    with transaction.atomic():
        enqueue(payload_task(), user="tenant:a")
        assert pushed() == 1


# --------------------------------------------------------------------------- many / async


def test_enqueue_many() -> None:
    tasks = [payload_task(user_id="tenant:own"), payload_task()]
    with tenant("tenant:current"):
        ids = [h.id for h in enqueue_many(tasks)]
    by_id = {t.task_id: t.user_id for t in pop_all()}
    assert by_id == {ids[0]: "tenant:own", ids[1]: "tenant:current"}
    assert enqueue_many([]) == []


def test_enqueue_many_validates_all_before_pushing_any() -> None:
    tasks = [payload_task(), Task(task_id="t-bad", user_id=None, payload={"x": {1, 2}})]
    with pytest.raises(SerializationError):
        enqueue_many(tasks, user="tenant:a")
    assert pushed() == 0


@pytest.mark.django_db(transaction=True)
def test_enqueue_many_on_commit() -> None:
    with transaction.atomic():
        ids = [h.id for h in enqueue_many([payload_task(), payload_task()], user="tenant:a", on_commit=True)]
        assert pushed() == 0
    assert sorted(t.task_id for t in pop_all()) == sorted(ids)
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_many([payload_task()], user="tenant:a", on_commit=True)
        raise RuntimeError("rollback")
    assert pushed() == 2


def test_aenqueue() -> None:
    task_id = async_to_sync(aenqueue)(payload_task(), user="tenant:async").id
    with tenant("tenant:ctx"):
        task_id2 = async_to_sync(aenqueue)(payload_task()).id
        ids = [h.id for h in async_to_sync(aenqueue_many)([payload_task(), payload_task()])]
    by_id = {t.task_id: t.user_id for t in pop_all()}
    assert by_id == {task_id: "tenant:async", task_id2: "tenant:ctx",
                     ids[0]: "tenant:ctx", ids[1]: "tenant:ctx"}


def test_aenqueue_takes_the_unique_key_and_dependency_options() -> None:
    first = async_to_sync(aenqueue)(payload_task(), user="tenant:a", unique_key="report:1")
    again = async_to_sync(aenqueue)(payload_task(), user="tenant:a", unique_key="report:1")
    assert again.id == first.id  # dropped: the handle names the task holding the key
    later = async_to_sync(aenqueue)(payload_task(), user="tenant:a", depends_on=[first])
    assert later.status == "READY" and later.refresh() is not None
    assert get_queue().get_task_state(later.id)["st"] == "waiting"  # type: ignore[index]
    assert [t.task_id for t in pop_all()] == [first.id, later.id]  # ready once its dependency succeeded


def test_aenqueue_missing_tenant() -> None:
    with pytest.raises(MissingTenantError):
        async_to_sync(aenqueue)(payload_task())


@pytest.mark.django_db(transaction=True)
def test_on_commit_with_redis_down_commits_the_row_and_says_loudly_that_the_task_was_not_queued(
        caplog: pytest.LogCaptureFixture) -> None:
    """Undocumented before: the row is committed and the task lost; now a logged, typed error that
    names the task and points to the outbox."""
    broken = {**FAIRQUE, "redis": {"url": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}}
    with override_settings(FAIRQUE=broken):
        conf.reset()
        with (caplog.at_level("ERROR", logger="fairque_django.enqueue"),
              pytest.raises(NotEnqueuedAfterCommitError, match=r"committed .*NOT queued.*outbox") as caught,
              transaction.atomic()):
            User.objects.create_user("gina")
            task_id = enqueue(payload_task(), user="tenant:a", on_commit=True).id
    assert isinstance(caught.value, RedisUnavailableError)
    assert task_id in str(caught.value)
    assert User.objects.filter(username="gina").exists()  # the row is committed all the same
    assert any(task_id in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    conf.reset()


# --------------------------------------------------------------------------- one bad task of 1,000


def _bad_priority() -> Task:
    bad = send_report.create_task((1,))
    bad.priority = 9  # type: ignore[assignment]  # set after creation: only the enqueue can catch it
    return bad


@pytest.mark.parametrize(("make_bad", "error", "message"), [
    (_bad_priority, TaskValidationError, "invalid priority 9"),
    (lambda: send_report.create_task((object(),)), SerializationError, "must be JSON-serialisable"),
    (lambda: send_report.create_task(({1, 2},)), SerializationError, "set is not JSON serializable"),
    (lambda: send_report.create_task((1,), user_id="bad user"), TaskValidationError, "forbidden character"),
    (lambda: Task(task_id="bad id", user_id=None, payload={"x": 1}), TaskValidationError, "task id 'bad id'"),
    (lambda: send_report.create_task(("x" * 2_000_000,)), PayloadTooLargeError, "max_payload_bytes"),
], ids=["priority", "object arg", "set arg", "user id", "task id", "too large"])
def test_enqueue_many_one_bad_task_of_1000_raises_before_anything_is_written(
        redis_client: redis.Redis, make_bad: Any, error: type[Exception], message: str) -> None:
    """The batch path checks each task once, all of them before any is pushed: a bad one in the
    middle of 1,000 raises a clear error and Redis holds nothing of the call."""
    tasks = [send_report.create_task((i,)) for i in range(1000)]
    tasks[500] = make_bad()
    with tenant("tenant:a"), pytest.raises(error, match=message):
        enqueue_many(tasks)
    assert list(redis_client.scan_iter(match=f"{get_queue().keys.base}:*")) == []
    assert pushed() == 0


def test_enqueue_many_bad_explicit_user_raises_before_anything_is_written(redis_client: redis.Redis) -> None:
    with pytest.raises(TaskValidationError, match="forbidden character"):
        enqueue_many([send_report.create_task((i,)) for i in range(1000)], user="tenant {a}")
    assert list(redis_client.scan_iter(match=f"{get_queue().keys.base}:*")) == []


def test_enqueue_many_pushes_the_compact_bodies_it_checked(redis_client: redis.Redis) -> None:
    """1,000 tasks of one tenant: each stored once, with the body checked at enqueue (no id or
    user in it: the key and field u hold them), and each pops as it was created."""
    tasks = [send_report.create_task((i,), priority=4 if i % 2 else 3) for i in range(1000)]
    handles = enqueue_many(tasks, user="tenant:a")
    assert [h.id for h in handles] == [t.task_id for t in tasks] and pushed() == 1000
    queue = get_queue()
    stored = redis_client.hgetall(queue.keys.task(tasks[1].task_id))
    assert stored[b"u"] == b"tenant:a"
    assert stored[b"b"] == tasks[1].to_json(ids=False).encode()  # what was checked is what is stored
    assert b'"id"' not in stored[b"b"] and b"tenant:a" not in stored[b"b"]
    popped = {t.task_id: t for t in pop_all()}
    for t in tasks:
        got = popped[t.task_id]
        assert (got.user_id, got.priority, got.func_name, got.args, got.created_at) == (
            "tenant:a", t.priority, "tests.django.test_enqueue.send_report", t.args, t.created_at)
