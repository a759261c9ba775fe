"""``fairque_stats`` and ``fairque_dlq`` against a real Redis, with known data."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from fairque_django.conf import get_config, get_queue
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import Worker
from tests.support.processes import ROOT, command_env
from tests.testapp import tasks as t

pytestmark = pytest.mark.usefixtures("redis_client")


@pytest.fixture
def queue() -> TaskQueue:
    return get_queue()


def run(*args: str, **kwargs: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def kill(queue: TaskQueue, user: str, reason: str = "boom") -> str:
    """Push a task for ``user`` and let it die at once; returns its id."""
    task = t.always_fails(reason)
    queue.push(task, user_id=user)
    popped = queue.pop("worker-001" if user in ("user:1", "user:2", "user:3") else "worker-002")
    assert popped is not None and popped.task_id == task.task_id
    try:
        raise ValueError(f"always fails: {reason}")
    except ValueError as exc:
        import traceback

        assert queue.fail(popped, exc, traceback=traceback.format_exc(), retry=False) == "dead"
    return task.task_id


# --- fairque_stats -------------------------------------------------------------------------------

@pytest.fixture
def known_data(queue: TaskQueue, redis_client: redis.Redis) -> None:
    """user:2: one dead task; user:1: 3 pushed, 1 completed; user:3: 1 critical queued;
    user:4: 1 delayed. worker-001 alive, worker-002 stale."""
    kill(queue, "user:2")
    for i in range(3):
        queue.push(t.record(f"r{i}"), user_id="user:1")
    done = queue.pop("worker-001")
    assert done is not None and done.user_id == "user:1"
    queue.complete(done)
    queue.push(t.urgent("now"), user_id="user:3")
    queue.push(t.record.create_task(("delayed",), delay_seconds=600), user_id="user:4")
    config = get_config()
    Worker(config, worker_id="worker-001", queue=get_queue("worker-001")).publish_health([])
    Worker(config, worker_id="worker-002", queue=get_queue("worker-002")).publish_health([])
    redis_client.hset(queue.keys.worker("worker-002"), "last_seen", time.time() - 120)


def test_stats_json(known_data: None) -> None:
    data = json.loads(run("fairque_stats", "--json"))
    totals = data["totals"]
    assert {k: totals[k] for k in ("pushed", "completed", "failed", "retried", "dead", "active", "queued",
                                   "delayed", "dlq_size")} == {
        "pushed": 6, "completed": 1, "failed": 1, "retried": 0, "dead": 1, "active": 0, "queued": 3,
        "delayed": 1, "dlq_size": 1}
    assert data["prefix"] == "fq" and data["redis"].startswith("redis://")
    assert data["users_with_work"] == 3  # user:2 has only a dead task: no unfinished work
    users = {u["user_id"]: u for u in data["users"]}
    assert set(users) == {"user:1", "user:3", "user:4"}
    assert data["users"][0]["user_id"] == "user:1"  # most unfinished work first
    assert users["user:1"] == {"user_id": "user:1", "pushed": 3, "completed": 1, "failed": 0, "dead": 0,
                               "unfinished": 2, "ready": 2, "ready_critical": 0, "ready_normal": 2}
    assert users["user:3"]["ready_critical"] == 1 and users["user:3"]["unfinished"] == 1
    assert users["user:4"]["unfinished"] == 1 and users["user:4"]["ready"] == 0  # it is delayed
    workers = {w["worker_id"]: w for w in data["workers"]}
    assert workers["worker-001"]["status"] == "alive" and workers["worker-001"]["alive"] is True
    assert workers["worker-002"]["status"] == "stale" and workers["worker-002"]["alive"] is False
    assert workers["worker-001"]["pid"] > 0 and workers["worker-001"]["running"] == 0


def test_stats_users_limit(known_data: None) -> None:
    data = json.loads(run("fairque_stats", "--json", "--users", "1"))
    assert [u["user_id"] for u in data["users"]] == ["user:1"] and data["users_with_work"] == 3
    assert json.loads(run("fairque_stats", "--json", "--users", "0"))["users"] == []


def test_stats_table(known_data: None) -> None:
    text = run("fairque_stats")
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["pushed", "completed"])
    assert lines[header].split() == ["pushed", "completed", "failed", "retried", "dead", "active", "queued",
                                     "delayed", "DLQ", "size"]
    assert lines[header + 1].split() == ["6", "1", "1", "0", "1", "0", "3", "1", "1"]
    user1 = next(line for line in lines if line.strip().startswith("user:1 "))
    assert user1.split() == ["user:1", "3", "1", "0", "0", "2", "2", "0"]
    assert "user:2" not in text
    assert "Users with unfinished work: 3" in text
    assert next(line for line in lines if "worker-001" in line).split()[1] == "alive"
    assert next(line for line in lines if "worker-002" in line).split()[1] == "stale"


def test_stats_show_the_progress_of_running_tasks(queue: TaskQueue) -> None:
    queue.push(t.record("x"), "user:1")
    popped = queue.pop("worker-001")
    assert popped is not None and queue.set_progress(popped, 0.5, "half of the rows")
    Worker(get_config(), worker_id="worker-001", install_signal_handlers=False).publish_health([popped])
    [running] = json.loads(run("fairque_stats", "--json"))["running"]
    assert running["task_id"] == popped.task_id and running["user_id"] == "user:1"
    assert running["worker_id"] == "worker-001" and running["func"] == "tests.testapp.tasks.record"
    assert (running["progress"]["fraction"], running["progress"]["percent"]) == (0.5, 50)
    assert running["progress"]["message"] == "half of the rows"
    assert f"{popped.task_id} tests.testapp.tasks.record (user:1) on worker-001: 50% half of the rows" in run(
        "fairque_stats")


def test_stats_with_no_workers_running_and_empty_queue() -> None:
    data = json.loads(run("fairque_stats", "--json"))
    assert data["totals"]["pushed"] == 0 and data["users"] == []
    assert [(w["worker_id"], w["status"]) for w in data["workers"]] == [("worker-001", "never seen"),
                                                                          ("worker-002", "never seen")]
    assert "Users with unfinished work: none" in run("fairque_stats")


def test_stats_unreachable_redis_is_a_clear_error() -> None:
    broken = {"redis": {"url": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.2},
              "workers": [{"id": "worker-001", "assigned_users": ["*"]}]}
    with override_settings(FAIRQUE=broken), pytest.raises(CommandError, match="cannot read"):
        run("fairque_stats")


# --- fairque_dlq -------------------------------------------------------------------------------------

@pytest.fixture
def dead(queue: TaskQueue) -> list[str]:
    """Three dead tasks: two of user:2 (the second newest), one of user:4 (the newest)."""
    ids = []
    for user, reason in (("user:2", "first"), ("user:2", "second"), ("user:4", "third")):
        ids.append(kill(queue, user, reason))
        time.sleep(0.003)  # times of death are kept in ms: make "newest first" well defined
    return ids


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_dlq_list(dead: list[str]) -> None:
    text = run("fairque_dlq", "list")
    assert "3 dead task(s), newest first" in text
    rows = [line for line in text.splitlines() if any(i in line for i in dead)]
    assert [next(i for i in dead if i in row) for row in rows] == dead[::-1]  # newest first
    assert "always fails: third" in rows[0] and "user:4" in rows[0]
    data = json.loads(run("fairque_dlq", "list", "--json", "--user", "user:2"))
    assert data["dlq_size"] == 3
    assert [d["task_id"] for d in data["tasks"]] == [dead[1], dead[0]]
    first = data["tasks"][1]
    assert first["user_id"] == "user:2" and first["func"] == "tests.testapp.tasks.always_fails"
    assert first["error_type"] == "ValueError" and first["error"] == "always fails: first"
    assert first["attempts"] == 1 and first["dead_at"] > 0
    assert [d["task_id"] for d in json.loads(run("fairque_dlq", "list", "--json", "--limit", "1"))["tasks"]] == [
        dead[2]]
    assert "No dead tasks of user user:9" in run("fairque_dlq", "list", "--user", "user:9")


def test_dlq_list_empty() -> None:
    assert "empty" in run("fairque_dlq", "list")
    assert json.loads(run("fairque_dlq", "list", "--json")) == {"dlq_size": 0, "user": None, "tasks": []}


def test_dlq_show(dead: list[str]) -> None:
    text = run("fairque_dlq", "show", dead[0])
    assert dead[0] in text and "user:2" in text and "tests.testapp.tasks.always_fails" in text
    assert "ValueError: always fails: first" in text and '["first"]' in text
    assert "Traceback (most recent call last)" in text and "Attempts" in text and "Died" in text
    data = json.loads(run("fairque_dlq", "show", dead[0], "--json"))
    assert data["args"] == ["first"] and data["kwargs"] == {} and data["attempts"] == 1
    assert "Traceback" in data["traceback"] and data["created_at"] <= data["dead_at"]


def test_dlq_unknown_ids(queue: TaskQueue, dead: list[str]) -> None:
    with pytest.raises(CommandError, match="'nope' is not in the dead-letter queue"):
        run("fairque_dlq", "show", "nope")
    live = t.record("alive")
    queue.push(live, user_id="user:1")
    with pytest.raises(CommandError, match="it is queued, not dead"):
        run("fairque_dlq", "requeue", live.task_id)
    with pytest.raises(CommandError, match=r"'nope' is not in the dead-letter queue.*nothing was changed"):
        run("fairque_dlq", "delete", dead[0], "nope")
    assert queue.dlq_size() == 3  # the known id was not deleted either
    with pytest.raises(CommandError, match="not both"):
        run("fairque_dlq", "requeue", dead[0], "--all")
    with pytest.raises(CommandError, match="or --all"):
        run("fairque_dlq", "delete")


def test_dlq_requeue(queue: TaskQueue, dead: list[str]) -> None:
    assert "Requeued 1 dead task(s)" in run("fairque_dlq", "requeue", dead[0])
    assert queue.get_task_state(dead[0])["st"] == "queued"  # type: ignore[index]
    assert queue.dlq_size() == 2
    assert "Requeued 2 dead task(s)" in run("fairque_dlq", "requeue", "--all")
    assert queue.dlq_size() == 0 and queue.get_stats()["tasks_queued"] == 3


def test_dlq_delete(queue: TaskQueue, dead: list[str]) -> None:
    assert "Deleted 2 dead task(s)" in run("fairque_dlq", "delete", dead[0], dead[1], dead[0])
    assert queue.get_task_state(dead[0]) is None and queue.dlq_size() == 1
    assert "Deleted 1 dead task(s)" in run("fairque_dlq", "delete", "--all", "--yes")
    assert queue.dlq_size() == 0


def test_dlq_purge_with_yes(queue: TaskQueue, dead: list[str]) -> None:
    assert "Deleted 3 dead task(s)" in run("fairque_dlq", "purge", "--yes")
    assert queue.dlq_size() == 0 and all(queue.get_task_state(i) is None for i in dead)
    assert "empty" in run("fairque_dlq", "purge", "--noinput")


def test_dlq_purge_refuses_without_a_terminal(queue: TaskQueue, dead: list[str]) -> None:
    with pytest.raises(CommandError, match="not a terminal; pass --yes"):
        run("fairque_dlq", "purge", stdin=io.StringIO("yes\n"))  # never read: not a TTY
    with pytest.raises(CommandError, match="not a terminal"):
        run("fairque_dlq", "delete", "--all", stdin=io.StringIO(""))
    assert queue.dlq_size() == 3


def test_dlq_purge_asks_on_a_terminal(queue: TaskQueue, dead: list[str]) -> None:
    with pytest.raises(CommandError, match="cancelled"):
        run("fairque_dlq", "purge", stdin=FakeTTY("no\n"))
    assert queue.dlq_size() == 3
    out = run("fairque_dlq", "purge", stdin=FakeTTY("yes\n"))
    assert "Delete all 3 dead task(s)?" in out and "Deleted 3 dead task(s)" in out
    assert queue.dlq_size() == 0


def test_dlq_purge_subprocess_without_stdin(queue: TaskQueue, dead: list[str]) -> None:
    """As cron or CI would run it: no terminal, no --yes -> exit 1 at once, nothing deleted."""
    cmd = [sys.executable, "-m", "django", "fairque_dlq", "purge"]
    res = subprocess.run(cmd, cwd=ROOT, env=command_env(), stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and "pass --yes" in res.stderr
    assert queue.dlq_size() == 3
    res = subprocess.run([*cmd, "--yes"], cwd=ROOT, env=command_env(), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "Deleted 3 dead task(s)" in res.stdout
    assert queue.dlq_size() == 0


# --- one vocabulary: attempts, retries (of max_retries), failures ------------------------------------

def fail_until_dead(queue: TaskQueue, *, max_retries: int | None, permanent: bool = False) -> str:
    """Run a task's attempts by hand, each failing, until it is dead-lettered; returns its id."""
    task = t.always_fails.create_task(("x",))
    task.max_retries = max_retries
    queue.push(task, user_id="user:1")
    fairque = settings.FAIRQUE
    no_backoff = {**fairque, "queue": {**fairque.get("queue", {}), "retry_backoff_base_seconds": 0}}
    with override_settings(FAIRQUE=no_backoff):  # a retry is ready at once: no waiting on a back-off
        local = get_queue()
        outcome = "retry"
        while outcome == "retry":
            popped = local.pop("worker-001")
            assert popped is not None and popped.task_id == task.task_id
            outcome = local.fail(popped, ValueError("always fails: x"), retry=not permanent)
    assert outcome == "dead"
    return task.task_id


@pytest.mark.parametrize(("max_retries", "permanent", "attempts", "retries", "limit", "failures"), [
    (0, False, 1, 0, 0, 1),   # ran once, not retried: 0 retries of 0
    (2, False, 3, 2, 2, 3),   # ran 3 times: the 2 retries allowed were used
    (None, True, 1, 0, 3, 1),  # a permanent error is not retried; the limit is queue.default_max_retries
])
def test_dlq_counts_use_one_vocabulary(queue: TaskQueue, max_retries: int | None, permanent: bool,
                                       attempts: int, retries: int, limit: int, failures: int) -> None:
    task_id = fail_until_dead(queue, max_retries=max_retries, permanent=permanent)
    text = run("fairque_dlq", "show", task_id)
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text.splitlines()[:12] if line.strip()}
    assert lines["Attempts"] == str(attempts)
    assert lines["Retries"] == f"{retries} of {limit} (max_retries)"
    assert lines["Failures"] == str(failures)
    assert "retries used" not in text and "retry_count" not in text
    counts = {"attempts": attempts, "failures": failures, "retries": retries, "max_retries": limit}
    shown = json.loads(run("fairque_dlq", "show", task_id, "--json"))
    assert {k: shown[k] for k in counts} == counts and "retry_count" not in shown
    listed = json.loads(run("fairque_dlq", "list", "--json"))["tasks"][0]
    assert {k: listed[k] for k in counts} == counts
    table = run("fairque_dlq", "list").splitlines()
    header = re.split(r"\s{2,}", table[1].strip())
    row = dict(zip(header, re.split(r"\s{2,}", next(r for r in table if task_id in r).strip()), strict=False))
    assert (row["attempts"], row["retries"], row["failures"]) == (str(attempts), f"{retries} of {limit}",
                                                                  str(failures))


# --- fairque_shards ------------------------------------------------------------------------------------

def test_shards_lists_and_moves_misplaced_tenants(redis_client: redis.Redis) -> None:
    fairque = settings.FAIRQUE
    old = {**fairque, "queue": {**fairque.get("queue", {}), "shards": 4, "shard_pins": {"user:1": 1}}}
    new = {**fairque, "queue": {**fairque.get("queue", {}), "shards": 4, "shard_pins": {"user:1": 2}}}
    with override_settings(FAIRQUE=old):
        TaskQueue(get_config(), shard=1).push_batch([t.record.create_task((f"x{i}",)) for i in range(3)],
                                                    user_id="user:1")
    with override_settings(FAIRQUE=new):
        listed = run("fairque_shards")
        assert "tenants with unfinished tasks per shard: 1: 1" in listed
        assert "misplaced: user:1 has tasks in shard 1, belongs to shard 2" in listed
        report = json.loads(run("fairque_shards", "--json"))
        assert report["misplaced"] == [["user:1", 1, 2]]
        assert "moved user:1: 3 task(s) from shard 1 to 2" in run("fairque_shards", "--move")
        assert "no misplaced tenant" in run("fairque_shards")
        assert redis_client.zscore("{fq:2}:live", "user:1") == 3
    with pytest.raises(CommandError, match="at least 1"):
        run("fairque_shards", "--from-shards", "0")
