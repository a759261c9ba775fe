"""The Django task framework backend (``fairque_django.backends.FairQueueBackend``).

Runs on Django >= 6.0 (``django.tasks``) and on Django 5.2 with the ``django_tasks`` backport.
``TASKS`` in tests/settings.py points the ``default`` alias at the backend; workers import
tests/testapp/django_tasks.py through ``FAIRQUE["TASK_MODULES"]``.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from fairque_django import tenant
from fairque_django.backends import (
    PRIORITY_TABLE,
    RUNNER_NAME,
    FairQueueBackend,
    TaskArgumentsError,
    fairque_priority,
    run_django_task,
)
from fairque_django.compat import (
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from fairque_django.conf import get_config, get_queue
from fairque_django.core.errors import MissingTenantError, SerializationError
from fairque_django.core.models import Priority
from fairque_django.core.models import Task as FairTask
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import Worker
from tests.support.processes import Workers
from tests.testapp import django_tasks as dt

SUCCESSFUL, FAILED = TaskResultStatus("SUCCESSFUL"), TaskResultStatus("FAILED")
READY, RUNNING = TaskResultStatus("READY"), TaskResultStatus("RUNNING")


pytestmark = pytest.mark.usefixtures("redis_client")


@pytest.fixture
def queue() -> TaskQueue:
    return get_queue()


def backend() -> FairQueueBackend:
    b = task_backends["default"]
    assert isinstance(b, FairQueueBackend)
    return b


def tasks_setting(**options: Any) -> dict[str, Any]:
    value = copy.deepcopy(settings.TASKS)
    value["default"]["OPTIONS"].update(options)
    return value


def pushed(queue: TaskQueue) -> int:
    return int(queue.get_stats()["tasks_pushed"])


def lrange(r: redis.Redis, key: str) -> list[str]:
    return [x.decode() for x in r.lrange(key, 0, -1)]


def run_worker(worker_id: str = "worker-001", **kwargs: Any) -> Worker:
    """Run a worker in this process (in a thread) until it has nothing left to do."""
    kwargs.setdefault("burst", True)
    worker = Worker(get_config(), worker_id=worker_id, queue=get_queue(worker_id), concurrency=1,
                    install_signal_handlers=False, **kwargs)
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "worker did not finish"
    return worker


@pytest.fixture
def signals() -> Iterator[list[tuple[str, type, TaskResult[Any, Any]]]]:
    seen: list[tuple[str, type, TaskResult[Any, Any]]] = []

    def receiver(name: str) -> Callable[..., None]:
        def receive(sender: type, task_result: TaskResult[Any, Any], **kwargs: Any) -> None:
            seen.append((name, sender, copy.copy(task_result)))
        return receive

    receivers = {"enqueued": receiver("enqueued"), "started": receiver("started"),
                 "finished": receiver("finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    yield seen
    task_enqueued.disconnect(receivers["enqueued"])
    task_started.disconnect(receivers["started"])
    task_finished.disconnect(receivers["finished"])


# --------------------------------------------------------------------------- enqueue


def test_enqueue_queues_a_fairque_task_for_the_current_tenant(queue: TaskQueue) -> None:
    with tenant("user:1"):
        result = dt.add.enqueue(2, 3)
    assert isinstance(result, TaskResult)
    assert result.status == READY and result.backend == "default"
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.enqueued_at is not None and timezone.is_aware(result.enqueued_at)
    assert result.started_at is None and result.finished_at is None and result.worker_ids == []
    state = queue.get_task_state(result.id)
    assert state is not None and state["u"] == "user:1" and state["st"] == "queued"
    body = FairTask.from_json(state["b"], result.id, state["u"])
    assert body.func_name == RUNNER_NAME == "fairque_django.backends.run_django_task"
    assert body.args[:4] == [dt.add.module_path, [2, 3], {}, "default"]
    assert queue.user_depth("user:1")["normal"] == 1 and queue.user_depth("user:2")["normal"] == 0


def test_enqueue_without_tenant_raises_a_clear_error(queue: TaskQueue) -> None:
    with pytest.raises(MissingTenantError, match=r"no current tenant.*fairque_django.tenant.*DEFAULT_USER"):
        dt.add.enqueue(1, 2)
    assert pushed(queue) == 0


def test_default_user_is_used_without_a_tenant(queue: TaskQueue) -> None:
    with override_settings(TASKS=tasks_setting(DEFAULT_USER="user:2")):
        result = dt.add.enqueue(1, 2)
        with tenant("user:3"):
            explicit = dt.add.enqueue(3, 4)  # the current tenant wins over DEFAULT_USER
    assert queue.get_task_state(result.id)["u"] == "user:2"  # type: ignore[index]
    assert queue.get_task_state(explicit.id)["u"] == "user:3"  # type: ignore[index]


def test_enqueue_from_inside_a_fairque_task_uses_its_tenant(queue: TaskQueue) -> None:
    from fairque_django.core.context import task_running

    with task_running(FairTask.create(user_id="user:4", payload={"x": 1}), queue):
        result = dt.add.enqueue(1, 1)
    assert queue.get_task_state(result.id)["u"] == "user:4"  # type: ignore[index]


def test_invalid_default_user_and_options_are_rejected(queue: TaskQueue) -> None:
    with override_settings(TASKS=tasks_setting(DEFAULT_USER="has space")), \
            pytest.raises(ImproperlyConfigured, match="DEFAULT_USER"):
        dt.add.enqueue(1, 2)
    with override_settings(TASKS=tasks_setting(MAX_RETRIES=-1)), \
            pytest.raises(ImproperlyConfigured, match="MAX_RETRIES"), tenant("user:1"):
        dt.add.enqueue(1, 2)
    assert pushed(queue) == 0


@pytest.mark.parametrize(("django_priority", "expected"), [
    (-100, Priority.VERY_LOW), (-80, Priority.VERY_LOW), (-60, Priority.VERY_LOW),
    (-59, Priority.LOW), (-20, Priority.LOW),
    (-19, Priority.NORMAL), (0, Priority.NORMAL), (19, Priority.NORMAL),
    (20, Priority.HIGH), (59, Priority.HIGH),
    (60, Priority.VERY_HIGH), (99, Priority.VERY_HIGH),
    (100, Priority.CRITICAL),
])
def test_priority_mapping(django_priority: int, expected: Priority, queue: TaskQueue) -> None:
    assert fairque_priority(django_priority) is expected
    with tenant("user:1"):
        result = dt.add.using(priority=django_priority).enqueue(1, 1)
    assert int(queue.get_task_state(result.id)["p"]) == expected  # type: ignore[index]
    assert backend().get_result(result.id).task.priority == django_priority


def test_priority_table_covers_every_django_priority_once() -> None:
    covered = [p for low, high, _ in PRIORITY_TABLE for p in range(low, high + 1)]
    assert covered == list(range(-100, 101))
    for bad in (-101, 101, True):
        with pytest.raises(InvalidTask):
            fairque_priority(bad)
    with pytest.raises(InvalidTask):
        dt.add.using(priority=101)


def test_critical_priority_is_served_first(queue: TaskQueue) -> None:
    with tenant("user:1"):
        dt.add.enqueue(1, 1)
        urgent = dt.add.using(priority=100).enqueue(2, 2)
    popped = queue.pop("worker-001")
    assert popped is not None and popped.task_id == urgent.id


def test_run_after_becomes_a_delayed_task(queue: TaskQueue) -> None:
    when = timezone.now() + timedelta(hours=1)
    with tenant("user:1"):
        result = dt.add.using(run_after=when).enqueue(1, 2)
    state = queue.get_task_state(result.id)
    assert state is not None and state["st"] == "delayed"
    assert queue.pop("worker-001") is None
    due = queue.next_delayed_seconds()
    assert due is not None and 3590 < due <= 3600
    got = backend().get_result(result.id)
    assert got.status == READY and got.task.run_after is not None
    assert abs((got.task.run_after - when).total_seconds()) < 0.001
    owner_ttl = queue.client.ttl(queue.keys.result_owner(result.id))
    assert owner_ttl > queue.config.queue.result_ttl_seconds  # outlives the delay


@pytest.mark.parametrize("bad", [object(), b"bytes", {1, 2}, float("nan"), datetime(2024, 1, 1)])
def test_non_json_arguments_are_rejected(bad: Any, queue: TaskQueue, signals: list[Any]) -> None:
    with tenant("user:1"):
        with pytest.raises(TaskArgumentsError, match="JSON") as info:
            dt.add.enqueue(bad, 1)
        with pytest.raises(TaskArgumentsError, match="JSON"):
            dt.add.enqueue(a=1, b=bad)
    assert isinstance(info.value, InvalidTask) and isinstance(info.value, SerializationError)
    assert pushed(queue) == 0 and signals == []


def test_unknown_queue_name_is_rejected() -> None:
    with pytest.raises(InvalidTask, match="Queue 'nope'"):
        dt.add.using(queue_name="nope")


def test_task_enqueued_signal(queue: TaskQueue, signals: list[Any]) -> None:
    with tenant("user:1"):
        result = dt.record.enqueue("x")
    [(name, sender, sent)] = signals
    assert name == "enqueued" and sender is FairQueueBackend
    assert sent.id == result.id and sent.status == READY and sent.task.queue_name == "emails"


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit(queue: TaskQueue, signals: list[Any]) -> None:
    with override_settings(TASKS=tasks_setting(ENQUEUE_ON_COMMIT=True)), tenant("user:1"):
        with transaction.atomic():
            kept = dt.add.enqueue(1, 2)
            assert queue.get_task_state(kept.id) is None and signals == []
        assert queue.get_task_state(kept.id) is not None and [s[2].id for s in signals] == [kept.id]
        with pytest.raises(RuntimeError), transaction.atomic():
            dropped = dt.add.enqueue(3, 4)
            raise RuntimeError("rollback")
        assert queue.get_task_state(dropped.id) is None and len(signals) == 1
        with pytest.raises(TaskResultDoesNotExist):
            backend().get_result(dropped.id)


def test_async_enqueue_and_get_result(queue: TaskQueue) -> None:
    async def go() -> tuple[TaskResult[Any, Any], TaskResult[Any, Any]]:
        result = await dt.add.aenqueue(4, 5)
        return result, await dt.add.aget_result(result.id)

    with tenant("user:3"):
        result, got = asyncio.run(go())
    assert got.id == result.id and got.status == READY and got.args == [4, 5]
    assert queue.get_task_state(result.id)["u"] == "user:3"  # type: ignore[index]


# --------------------------------------------------------------------------- get_result


def test_get_result_while_queued(queue: TaskQueue) -> None:
    with tenant("user:1"):
        result = dt.record.enqueue("queued")
    got = dt.record.get_result(result.id)
    assert got.status == READY and got.args == ["queued"] and got.enqueued_at == result.enqueued_at
    assert got.task.func is dt.record.func and got.task.queue_name == "emails"
    with pytest.raises(ValueError, match="not finished"):
        _ = got.return_value
    with pytest.raises(TaskResultMismatch):
        dt.add.get_result(result.id)


@pytest.mark.parametrize("bad_id", ["nope", "0" * 32, "{x}", "a b", ""])
def test_unknown_result_id(bad_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result(bad_id)
    with tenant("user:1"), pytest.raises(TaskResultDoesNotExist):
        backend().get_result(bad_id)


def test_plain_fairque_task_is_not_a_django_result(queue: TaskQueue) -> None:
    plain = FairTask.create(payload={"a": 1})
    queue.push(plain, user_id="user:1")
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result(plain.task_id)


def test_tenant_isolation_of_results(queue: TaskQueue) -> None:
    with tenant("user:1"):
        result = dt.add.enqueue(20, 22)
    with tenant("user:2"), pytest.raises(TaskResultDoesNotExist):
        dt.add.get_result(result.id)  # queued: another tenant cannot see it
    run_worker()
    with tenant("user:2"):
        with pytest.raises(TaskResultDoesNotExist):
            dt.add.get_result(result.id)
        with pytest.raises(TaskResultDoesNotExist):
            asyncio.run(dt.add.aget_result(result.id))
    with tenant("user:1"):
        assert dt.add.get_result(result.id).return_value == 42
    assert dt.add.get_result(result.id).return_value == 42  # trusted code without a tenant
    assert queue.get_result(result.id, user_id="user:1") is not None
    assert queue.get_result(result.id, user_id="user:2") is None


# --------------------------------------------------------------------------- in-process worker


def test_worker_runs_task_and_sends_signals(queue: TaskQueue, signals: list[Any]) -> None:
    with tenant("user:1"):
        result = dt.add.enqueue(2, 3)
    run_worker()
    names = [(name, sender, r.id, r.status, r.attempts) for name, sender, r in signals]
    assert names == [
        ("enqueued", FairQueueBackend, result.id, READY, 0),
        ("started", FairQueueBackend, result.id, RUNNING, 1),
        ("finished", FairQueueBackend, result.id, SUCCESSFUL, 1),
    ]
    finished = signals[-1][2]
    assert finished.return_value == 5 and finished.worker_ids == ["worker-001"]
    got = dt.add.get_result(result.id)
    assert got.status == SUCCESSFUL and got.return_value == 5 and got.errors == []
    times = [got.enqueued_at, got.started_at, got.last_attempted_at, got.finished_at]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    assert got.worker_ids == ["worker-001"] and got.attempts == 1
    stats = queue.get_stats()
    assert stats["tasks_completed"] == 1 and stats["dlq_size"] == 0


def test_failing_task_is_ready_while_retrying_then_failed(queue: TaskQueue, signals: list[Any]) -> None:
    with tenant("user:2"):
        result = dt.fails.enqueue("boom")
    run_worker(max_tasks=1, burst=False)  # the first attempt only (MAX_RETRIES is 1 in tests/settings)
    got = dt.fails.get_result(result.id)
    assert got.status == READY and len(got.errors) == 1 and got.finished_at is None
    assert got.errors[0].exception_class_path == "builtins.ValueError"
    assert queue.get_task_state(result.id)["st"] == "delayed"  # type: ignore[index]
    assert [s[0] for s in signals] == ["enqueued", "started"]  # no "finished" while it will retry
    run_worker()
    got = dt.fails.get_result(result.id)
    assert got.status == FAILED and got.finished_at is not None and got.attempts == 2
    assert [e.exception_class_path for e in got.errors] == ["builtins.ValueError"] * 2
    assert "django task fails: boom" in got.errors[-1].traceback
    assert got.errors[-1].exception_class is ValueError
    with pytest.raises(ValueError, match="failed"):
        _ = got.return_value
    assert [(s[0], s[2].status) for s in signals[2:]] == [("started", RUNNING), ("finished", FAILED)]
    [dead] = queue.get_dlq()
    assert dead.task_id == result.id and dead.attempts == 2


def test_non_json_return_value_fails_the_task(queue: TaskQueue) -> None:
    with tenant("user:1"):
        result = dt.returns_object.enqueue()
    run_worker()
    got = dt.returns_object.get_result(result.id)
    assert got.status == FAILED
    assert got.errors[-1].exception_class_path == "fairque_django.backends.TaskReturnValueError"
    assert "JSON" in got.errors[-1].traceback


def test_dead_task_without_a_record_is_failed(queue: TaskQueue) -> None:
    """A task that died without the runner recording it (e.g. its lease expired) reads FAILED."""
    with tenant("user:1"):
        result = dt.add.enqueue(1, 2)
    popped = queue.pop("worker-001")
    assert popped is not None
    queue.fail(popped, RuntimeError("worker vanished"), retry=False)
    got = dt.add.get_result(result.id)
    assert got.status == FAILED and got.errors[-1].exception_class_path == "RuntimeError"
    assert got.finished_at is not None


# --------------------------------------------------------------------------- checks


def make_backend(**params: Any) -> FairQueueBackend:
    return FairQueueBackend("fq", {"BACKEND": "fairque_django.backends.FairQueueBackend", **params})


def check_ids(b: FairQueueBackend) -> list[str]:
    return [m.id for m in b.check()]  # type: ignore[misc]


def test_check_valid_configuration() -> None:
    assert check_ids(make_backend(QUEUES=["default"], OPTIONS={"DEFAULT_USER": "tenant:system"})) == []
    assert backend().check() == []


@pytest.mark.parametrize(("params", "expected", "text"), [
    ({"QUEUES": "default"}, "fairque_django.E102", "QUEUES"),
    ({"QUEUES": []}, "fairque_django.E102", "QUEUES"),
    ({"OPTIONS": {"DEFAULT_USR": "x"}}, "fairque_django.E103", "did you mean 'DEFAULT_USER'"),
    ({"OPTIONS": {"MAX_RETRIES": -1}}, "fairque_django.E103", "MAX_RETRIES"),
    ({"OPTIONS": {"ENQUEUE_ON_COMMIT": "yes"}}, "fairque_django.E103", "ENQUEUE_ON_COMMIT"),
    ({"OPTIONS": {"TIMEOUT": 0}}, "fairque_django.E103", "TIMEOUT"),
    ({"OPTIONS": ["x"]}, "fairque_django.E103", "OPTIONS must be a dict"),
    ({"OPTIONS": {"DEFAULT_USER": "has space"}}, "fairque_django.E104", "DEFAULT_USER"),
    ({"OPTIONS": {"DEFAULT_USER": ""}}, "fairque_django.E104", "DEFAULT_USER"),
])
def test_check_reports_bad_backend_settings(params: dict[str, Any], expected: str, text: str) -> None:
    messages = make_backend(**params).check()
    assert [m.id for m in messages] == [expected]  # type: ignore[attr-defined]
    assert text in messages[0].msg  # type: ignore[attr-defined]


def test_check_reports_missing_or_invalid_fairque() -> None:
    with override_settings(FAIRQUE=None):
        assert check_ids(make_backend()) == ["fairque_django.W101"]
    with override_settings(FAIRQUE={"queue": {"lease_timeout_seconds": -1}}):
        [message] = make_backend().check()
        assert message.id == "fairque_django.E101"  # type: ignore[attr-defined]
        assert "lease_timeout_seconds" in message.msg  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- runfairworker end to end


def test_runfairworker_round_robin_and_results(queue: TaskQueue, redis_client: redis.Redis,
                                                workers: Workers) -> None:
    with tenant("user:1"):
        first = [dt.record.enqueue(f"1-{i}") for i in range(3)]
    with tenant("user:2"):
        second = dt.record.enqueue("2-0")
        total = dt.add.enqueue(20, 22)
    proc = workers.start("worker-001", "--burst", "--concurrency", "1")
    out = proc.finish(60)
    assert proc.returncode == 0, out
    # round-robin: user:1's backlog does not hold user:2 back
    assert lrange(redis_client, dt.LOG) == ["user:1|1-0", "user:2|2-0", "user:1|1-1", "user:1|1-2"]
    for result, tag in [*zip(first, ["1-0", "1-1", "1-2"], strict=True), (second, "2-0")]:
        got = dt.record.get_result(result.id)
        assert got.status == SUCCESSFUL and got.return_value == tag
        assert got.started_at is not None and got.finished_at is not None
        assert got.enqueued_at <= got.started_at <= got.finished_at  # type: ignore[operator]
        assert got.worker_ids == ["worker-001"] and got.errors == []
    assert dt.add.get_result(total.id).return_value == 42
    # task_started / task_finished fired in the worker process (receivers in tests/testapp/django_tasks.py)
    sigs = lrange(redis_client, dt.SIGNALS)
    assert f"started|{second.id}|RUNNING|1" in sigs and f"finished|{second.id}|SUCCESSFUL|1" in sigs
    assert len(sigs) == 10
    assert queue.get_stats()["tasks_completed"] == 5


def test_runfairworker_retries_context_async_and_dead_letters(
        queue: TaskQueue, redis_client: redis.Redis, workers: Workers, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    mark = tmp_path / "imported"
    monkeypatch.setenv("FAIRQUE_EVIL_MARK", str(mark))  # importing tests.testapp.evil writes it
    with tenant("user:1"):
        failing = dt.fails.enqueue("e2e")
    with tenant("user:2"):
        ctx = dt.with_context.enqueue("ctx")
    with tenant("user:3"):
        doubled = dt.async_double.enqueue(21)
    # queued calls naming things a worker must not run: never imported, dead-lettered
    bogus = {
        "evil": ["tests.testapp.evil.run", [], {}, "default", {}],  # not imported by workers
        "not_a_task": ["subprocess.call", [["true"]], {}, "default", {}],  # loaded, but no Django task
        "fairque_task": ["tests.testapp.tasks.record", ["x"], {}, "default", {}],  # a fairque @task
        "other_backend": [dt.add.module_path, [1, 2], {}, "nope", {}],  # alias not in TASKS
    }
    ids = {}
    for name, args in bogus.items():
        raw = run_django_task.create_task(args, user_id="user:1")
        queue.push(raw)
        ids[name] = raw.task_id
    proc = workers.start("worker-001", "--burst")
    out = proc.finish(90)
    assert proc.returncode == 0, out

    got = dt.fails.get_result(failing.id)
    assert got.status == FAILED and got.attempts == 2 and len(got.errors) == 2
    assert "django task fails: e2e" in got.errors[-1].traceback

    got_ctx = dt.with_context.get_result(ctx.id)
    assert got_ctx.status == SUCCESSFUL and got_ctx.return_value == {"attempt": 2, "tag": "ctx"}
    assert [e.exception_class_path for e in got_ctx.errors] == ["builtins.RuntimeError"]
    assert lrange(redis_client, dt.CONTEXT) == [f"1|{ctx.id}|RUNNING|user:2", f"2|{ctx.id}|RUNNING|user:2"]

    got_async = dt.async_double.get_result(doubled.id)
    assert got_async.status == SUCCESSFUL and got_async.return_value == 42
    assert "user:3|async-21" in lrange(redis_client, dt.LOG)

    sigs = lrange(redis_client, dt.SIGNALS)
    assert [s for s in sigs if failing.id in s] == [f"started|{failing.id}|RUNNING|1",
                                                   f"started|{failing.id}|RUNNING|2",
                                                   f"finished|{failing.id}|FAILED|2"]

    dead = {e.task_id: e for e in queue.get_dlq()}
    assert set(dead) == {failing.id, *ids.values()}
    for name, task_id in ids.items():
        assert dead[task_id].failure_type == "unregistered", name
        assert dead[task_id].attempts == 1, name
    assert "never imported" in dead[ids["evil"]].error
    assert not mark.exists()  # neither the worker nor get_result imported tests.testapp.evil
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result(ids["evil"])
    assert not mark.exists()


# --------------------------------------------------------------------------- cancellation


def test_cancelled_django_task_reads_failed_with_task_cancelled(queue: TaskQueue) -> None:
    """Django's TaskResultStatus has no CANCELLED: a cancelled Django task reads FAILED, its error
    fairque_django.TaskCancelled, its call (task, args) kept."""
    import fairque_django
    from fairque_django.backends.results import CANCELLED_ERROR

    with tenant("user:1"):
        result = dt.record.enqueue("to cancel")
        assert fairque_django.cancel(result.id) == "cancelled"
        got = dt.record.get_result(result.id)
    assert got.status == FAILED and got.args == ["to cancel"] and got.task.func is dt.record.func
    assert [e.exception_class_path for e in got.errors] == [CANCELLED_ERROR]
    assert got.finished_at is not None
    assert dt.record.get_result(result.id).status == FAILED  # trusted code without a tenant
    with tenant("user:2"), pytest.raises(TaskResultDoesNotExist):
        dt.record.get_result(result.id)
    run_worker()  # nothing runs it
    assert queue.get_stats()["tasks_completed"] == 0
