"""Tenant isolation (XCom values, stored results) and the rule that a worker never imports or
runs a callable that was not registered with @task, whatever a task body in Redis names.
(Admin permissions: tests/django/test_admin.py. No pickle/eval: tests/unit/test_package_rules.py.)"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from fairque_django import FairQueueConfig, Task, TaskQueue, TaskValidationError, Worker, xcom_pull, xcom_push
from fairque_django.backends import RUNNER_NAME
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import assert_stats_balance, runs
from .relconfig import core_config, user

TENANTS = ["a", "b", "acme", "acme:eu", "user", "user:42"]


@pytest.fixture
def config(make_config: Any, prefix: str) -> FairQueueConfig:
    return make_config(workers=[{"id": "w1", "assigned_users": ["*"], "poll_interval_seconds": 0.1,
                                 "max_concurrent_tasks": 2}], worker_id="w1", stats_prefix=prefix)


def run_until(config: FairQueueConfig, pred: Any, what: str) -> None:
    worker = Worker(config, install_signal_handlers=False, task_modules=["tests.reliability.tasks"])
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    try:
        eventually(pred, timeout=15, what=what)
    finally:
        worker.stop()
        thread.join(15)


def events(client: redis.Redis) -> list[str]:
    return [x.decode() for x in client.lrange(tasks.EVENTS, 0, -1)]


def test_a_running_task_cannot_read_or_write_another_tenants_xcom(config: FairQueueConfig,
                                                                  redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    with queue:
        xcom_push("secret", "B's value", user_id="b")
    queue.push(tasks.xcom_spy.create_task(("b", "secret"), user_id="a"))
    run_until(config, lambda: len(events(redis_client)) == 2, "spy task ran")
    assert events(redis_client) == ["a|pull|error:TaskValidationError", "a|push|error:TaskValidationError"]
    with queue:
        assert xcom_pull("secret", user_id="b") == "B's value"  # not overwritten


def test_xcom_pull_for_one_tenant_never_reads_anothers_value(config: FairQueueConfig) -> None:
    with TaskQueue(config):
        for tenant in TENANTS:
            xcom_push("report", f"{tenant}-data", user_id=tenant)
        for tenant in TENANTS:
            assert xcom_pull("report", user_id=tenant) == f"{tenant}-data"
        assert xcom_pull("report", user_id="nobody") is None
        with pytest.raises(TaskValidationError):
            xcom_pull("report", user_id="a}{b")


@pytest.mark.parametrize(("reader", "key", "owner", "owner_key"), [
    ("acme", "eu:report", "acme:eu", "report"),
    ("user", "42:report", "user:42", "report"),
])
def test_xcom_keys_of_different_tenants_never_collide(config: FairQueueConfig, redis_client: redis.Redis,
                                                      reader: str, key: str, owner: str, owner_key: str) -> None:
    """User ids and XCom keys may both contain ':'; tenant "acme" asking for key "eu:report"
    must not get tenant "acme:eu"'s "report" (they would share the Redis key ...:xcom:acme:eu:report)."""
    queue = TaskQueue(config)
    with queue:
        xcom_push(owner_key, f"{owner} private", user_id=owner)
        assert xcom_pull(key, user_id=reader) is None, f"tenant {reader!r} read tenant {owner!r}'s XCom value"
    # and from inside a running task of the reader
    queue.push(tasks.xcom_reader.create_task((key,), user_id=reader))
    run_until(config, lambda: len(events(redis_client)) == 1, "reader task ran")
    assert events(redis_client) == [f"{reader}|{key}|<missing>"]


def test_results_are_visible_to_their_own_tenant_only(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    mine = tasks.compute.create_task((1,), user_id="user:42")
    queue.push(mine)
    run_until(config, lambda: queue.get_result(mine.task_id, user_id="user:42") is not None, "result stored")
    result = queue.get_result(mine.task_id, user_id="user:42")
    assert result is not None and result["return_value"]["secret"] == "result-of-user:42"
    for other in ("a", "user", "user:4", "acme"):
        assert queue.get_result(mine.task_id, user_id=other) is None
    # a task id crafted to walk into another tenant's key space
    assert queue.get_result(f"42:{mine.task_id}", user_id="user") is None, \
        "tenant 'user' read the result of tenant 'user:42' through the task id '42:<id>'"


EVIL_NAMES = ["os.system", "subprocess.call", "builtins.eval", "builtins.exec", "tests.testapp.evil.run",
              "importlib.import_module", "tests.reliability.tasks.log_client"]


@pytest.mark.timeout(120)
def test_worker_process_never_imports_or_runs_unregistered_callables(redis_client: redis.Redis,
                                                                     rel_env: dict[str, str], workers: Workers,
                                                                     tmp_path: Path) -> None:
    mark = tmp_path / "evil-imported"
    pwned = tmp_path / "pwned"
    rel_env.update(FAIRQUE_EVIL_MARK=str(mark))
    queue = TaskQueue(core_config(rel_env))
    bad = [Task.create(user_id=user(i), func_name=name, args=[f"touch {pwned}"]) for i, name in enumerate(EVIL_NAMES)]
    bad += [Task.create(user_id=user(1), func_name="builtins.eval", args=[f"open({str(pwned)!r}, 'w')"]),
            # the Django-tasks runner is registered, but it only runs Django tasks already loaded
            Task.create(user_id=user(2), func_name=RUNNER_NAME,
                        args=["tests.testapp.evil.run", [], {}, "default", {}]),
            Task.create(user_id=user(3), func_name=RUNNER_NAME, args=["os.system", [f"touch {pwned}"], {},
                                                                      "default", {}])]
    good = [tasks.work.create_task((i,), user_id=user(i)) for i in range(4)]
    queue.push_batch(bad + good)
    proc = workers.start("rel-1", "--burst")
    code = proc.proc.wait(90)
    log = proc.log()
    assert code == 0, log
    assert not mark.exists(), "an unregistered module was imported"
    assert not pwned.exists(), "an unregistered callable ran"
    assert set(runs(redis_client, tasks.RUNS)) == {t.task_id for t in good}
    entries = {e.task_id: e for e in queue.get_dlq(limit=100)}
    assert set(entries) == {t.task_id for t in bad}
    for t in bad:
        entry = entries[t.task_id]
        assert entry.attempts == 1, entry  # dead at once: retrying cannot make it registered
        assert "not registered" in entry.error or "not a Django task" in entry.error, entry
    assert "tests.testapp.evil" not in sys.modules
    assert_stats_balance(queue, redis_client)
