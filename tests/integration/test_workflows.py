"""Unique keys (drop / replace / debounce), dependencies and chains against a real Redis, through
the core queue and the Django ``enqueue`` (docs/workflows.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import fairque_django
from fairque_django import DependencyError, FairQueueConfig, Task, TaskQueue, TaskStatus
from fairque_django.conf import get_config, get_queue
from tests.support import eventually, running_worker
from tests.testapp import tasks as t

WORKERS = [{"id": "w1", "assigned_users": ["a", "b", "c"]}]


@pytest.fixture
def queue(make_config: Callable[..., FairQueueConfig]) -> TaskQueue:
    return TaskQueue(make_config(workers=WORKERS))


def job(user: str, n: int, **kw: Any) -> Task:
    return Task.create(user, func_name="job", args=[n], **kw)


def state(client: redis.Redis, queue: TaskQueue, task_id: str) -> str | None:
    raw = client.hget(queue.keys.task(task_id), "st")
    return None if raw is None else raw.decode()


def args_of(client: redis.Redis, queue: TaskQueue, task_id: str) -> list[Any]:
    raw = client.hget(queue.keys.task(task_id), "b") or b"{}"
    assert "id" not in json.loads(raw)  # a swapped body (compact format) names no task id: it is the key's
    return list(Task.from_json(raw, task_id, "?").args)


# --- unique keys ------------------------------------------------------------------------------------
def test_drop_returns_the_queued_task_until_it_finishes(queue: TaskQueue, redis_client: redis.Redis) -> None:
    first = queue.push(job("a", 1, unique_key="report:42"))
    second = queue.push(job("a", 2, unique_key="report:42"))
    assert second["task_id"] == first["task_id"] and second["conflict"] == "dropped"
    assert args_of(redis_client, queue, first["task_id"]) == [1]
    # another tenant's key of the same name is another key
    other = queue.push(job("b", 3, unique_key="report:42"))
    assert other["task_id"] != first["task_id"] and "conflict" not in other
    popped = queue.pop("w1")
    assert popped is not None and popped.task_id == first["task_id"]
    # still held while it runs
    assert queue.push(job("a", 4, unique_key="report:42"))["task_id"] == first["task_id"]
    queue.complete(popped)
    assert redis_client.get(queue.keys.unique("a", "report:42")) is None
    third = queue.push(job("a", 5, unique_key="report:42"))
    assert third["task_id"] != first["task_id"] and "conflict" not in third


def test_key_released_when_the_task_dies_or_is_deleted(queue: TaskQueue, redis_client: redis.Redis) -> None:
    first = queue.push(job("a", 1, unique_key="k", max_retries=0))
    popped = queue.pop("w1")
    assert popped is not None
    assert queue.fail(popped, RuntimeError("boom"), retry=False) == "dead"
    assert redis_client.get(queue.keys.unique("a", "k")) is None
    second = queue.push(job("a", 2, unique_key="k"))
    assert second["task_id"] != first["task_id"]
    assert queue.delete(second["task_id"]) == [second["task_id"]]
    assert redis_client.get(queue.keys.unique("a", "k")) is None
    assert "conflict" not in queue.push(job("a", 3, unique_key="k"))


def test_unique_for_bounds_how_long_the_key_is_held(queue: TaskQueue, redis_client: redis.Redis) -> None:
    first = queue.push(job("a", 1, unique_key="k", unique_for=0.2))
    assert 0 < redis_client.pttl(queue.keys.unique("a", "k")) <= 200
    time.sleep(0.3)
    second = queue.push(job("a", 2, unique_key="k", unique_for=0.2))
    assert second["task_id"] != first["task_id"]


def test_replace_swaps_the_arguments_of_a_queued_task(queue: TaskQueue, redis_client: redis.Redis) -> None:
    first = queue.push(job("a", 1, unique_key="k", on_conflict="replace"))
    queue.push(job("a", 9, priority=1))  # another task of the user, later in line
    out = queue.push(job("a", 2, unique_key="k", on_conflict="replace"))
    assert out["task_id"] == first["task_id"] and out["conflict"] == "replaced"
    popped = queue.pop("w1")
    assert popped is not None and popped.task_id == first["task_id"] and popped.args == [2]
    # running: a replace pushes a new task, which takes the key; the running one keeps its arguments
    newer = queue.push(job("a", 3, unique_key="k", on_conflict="replace"))
    assert newer["task_id"] != first["task_id"] and "conflict" not in newer
    assert redis_client.get(queue.keys.unique("a", "k")) == newer["task_id"].encode()
    queue.complete(popped)  # the old task's end does not release the newer task's key
    assert redis_client.get(queue.keys.unique("a", "k")) == newer["task_id"].encode()


def test_debounce_delays_and_re_delays(queue: TaskQueue, redis_client: redis.Redis) -> None:
    t0 = time.time()
    first = queue.push(job("a", 1, unique_key="k", unique_for=0.6, on_conflict="debounce"))
    assert first["state"] == "delayed"
    assert queue.pop("w1") is None
    time.sleep(0.4)
    out = queue.push(job("a", 2, unique_key="k", unique_for=0.6, on_conflict="debounce"))
    assert out["task_id"] == first["task_id"] and out["conflict"] == "debounced"
    due = redis_client.zscore(queue.keys.delayed, first["task_id"])
    assert due is not None and due / 1000 >= t0 + 0.4 + 0.6 - 0.05
    time.sleep(0.4)  # 0.8 s after the first push: it would have been due without the second
    assert queue.pop("w1") is None
    popped = eventually(lambda: queue.pop("w1"), timeout=5, what="the debounced task came due")
    assert popped.task_id == first["task_id"] and popped.args == [2]


def test_debounce_needs_unique_for() -> None:
    with pytest.raises(fairque_django.TaskValidationError, match="unique_for"):
        job("a", 1, unique_key="k", on_conflict="debounce")
    with pytest.raises(fairque_django.TaskValidationError, match="on_conflict"):
        job("a", 1, unique_key="k", on_conflict="ignore")


def test_a_retried_push_with_a_unique_key_is_safe(queue: TaskQueue, redis_client: redis.Redis) -> None:
    """Every push of one Task (what a retry after a lost reply sends) ends in the same task."""
    task = job("a", 1, unique_key="k")
    first = queue.push(task)
    again = queue.push(task)
    assert again["task_id"] == first["task_id"]
    assert len([k for k in redis_client.scan_iter(match=queue.keys.task("*"))]) == 1


# --- dependencies -----------------------------------------------------------------------------------
def test_dependent_waits_then_becomes_ready(queue: TaskQueue, redis_client: redis.Redis) -> None:
    a = queue.push(job("a", 1))
    b = queue.push(job("a", 2))
    c = queue.push(job("a", 3, depends_on=[("a", a["task_id"]), b["task_id"]]))
    assert c["state"] == "waiting" and state(redis_client, queue, c["task_id"]) == "waiting"
    stats = queue.get_stats()
    assert stats["tasks_pending"] == 3  # unfinished, waiting included
    assert redis_client.zscore(queue.keys.live, "a") == 2  # but not live (in no lane) until it is ready
    first = queue.pop("w1")
    assert first is not None
    queue.complete(first)
    assert state(redis_client, queue, c["task_id"]) == "waiting"
    second = queue.pop("w1")
    assert second is not None and second.task_id == b["task_id"]
    queue.complete(second)
    third = queue.pop("w1")
    assert third is not None and third.task_id == c["task_id"]
    queue.complete(third)
    assert redis_client.exists(queue.keys.dependents(a["task_id"]), queue.keys.dependents(b["task_id"])) == 0


def test_death_cascades_cancellation_unless_failure_is_allowed(queue: TaskQueue, redis_client: redis.Redis) -> None:
    a = queue.push(job("a", 1, max_retries=0))
    b = queue.push(job("a", 2, depends_on=[a["task_id"]]))
    c = queue.push(job("a", 3, depends_on=[b["task_id"]], unique_key="c"))
    d = queue.push(job("a", 4, depends_on=[a["task_id"]], allow_failure=True))
    popped = queue.pop("w1")
    assert popped is not None and popped.task_id == a["task_id"]
    assert queue.fail(popped, RuntimeError("boom"), retry=False) == "dead"
    # cancelled as cancel() cancels: the hash is gone, the record reads CANCELLED (and says why)
    assert state(redis_client, queue, b["task_id"]) is None and state(redis_client, queue, c["task_id"]) is None
    assert redis_client.get(queue.keys.unique("a", "c")) is None  # released on cancellation
    assert redis_client.ttl(queue.keys.result("a", c["task_id"])) > 0  # kept for a while, then gone
    snap = queue.read_result(c["task_id"], "a")
    assert snap.status is TaskStatus.CANCELLED and "failed or was cancelled" in snap.errors[0].message
    assert snap.errors[0].error_type == "DependencyFailed"
    assert queue.read_result(b["task_id"], "a").status is TaskStatus.CANCELLED
    assert queue.get_stats()["tasks_cancelled"] == 2
    runs = queue.pop("w1")
    assert runs is not None and runs.task_id == d["task_id"]


def test_dependency_finished_before_the_dependent_was_pushed(queue: TaskQueue, redis_client: redis.Redis) -> None:
    ok = job("a", 1)
    queue.push(ok)
    popped = queue.pop("w1")
    assert popped is not None
    # the worker keeps the result record (with the ack); a dependent pushed afterwards is ready at once
    redis_client.set(queue.keys.result("a", ok.task_id), json.dumps({"status": "SUCCESSFUL", "return_value": 1}))
    queue.complete(popped)
    after = queue.push(job("a", 2, depends_on=[ok.task_id]))
    assert after["state"] == "queued" and state(redis_client, queue, after["task_id"]) == "queued"
    # died before: cancelled at once, or ready with allow_failure
    bad = job("a", 3, max_retries=0)
    queue.push(bad)
    dead = queue.pop("w1")
    dead = queue.pop("w1") if dead is not None and dead.task_id != bad.task_id else dead
    assert dead is not None and dead.task_id == bad.task_id
    queue.fail(dead, RuntimeError("x"), retry=False)
    assert queue.push(job("a", 4, depends_on=[bad.task_id]))["state"] == "cancelled"
    assert queue.push(job("a", 5, depends_on=[bad.task_id], allow_failure=True))["state"] == "queued"
    # finished without a kept result, or never pushed: refused, not stalled
    with pytest.raises(DependencyError, match="unknown"):
        queue.push(job("a", 6, depends_on=["no-such-task"]))


def test_dependencies_cross_tenants_only_where_named(queue: TaskQueue) -> None:
    theirs = queue.push(job("b", 1))
    with pytest.raises(DependencyError, match="not a task of user a"):
        queue.push(job("a", 2, depends_on=[theirs["task_id"]]))  # a bare id is the dependent's user's
    with pytest.raises(DependencyError, match="not a task of user a"):
        queue.push(job("c", 2, depends_on=[("a", theirs["task_id"])]))  # a wrong owner named
    named = queue.push(job("a", 3, depends_on=[("b", theirs["task_id"])]))
    assert named["state"] == "waiting"


def test_push_batch_with_options(queue: TaskQueue, redis_client: redis.Redis) -> None:
    a = job("a", 1, unique_key="k")
    out = queue.push_batch([a, job("a", 2, unique_key="k"), job("a", 3, depends_on=[a.task_id])])
    assert out["task_ids"][:2] == [a.task_id, a.task_id] and out["pushed"] == 3
    assert state(redis_client, queue, out["task_ids"][2]) == "waiting"


# --- through Django: enqueue, @task(unique_key=...), chain ------------------------------------------
@pytest.mark.usefixtures("redis_client")
def test_enqueue_options_task_unique_key_and_chain() -> None:
    first = fairque_django.enqueue(t.multiply(2, 3), user="user:1", on_commit=False, unique_key="m")
    again = fairque_django.enqueue(t.multiply(4, 5), user="user:1", on_commit=False, unique_key="m")
    assert again.id == first.id
    handles = fairque_django.chain(t.multiply(2, 3), t.multiply(7), t.multiply(1), user="user:1",
                                   on_commit=False)
    doomed = fairque_django.chain(t.fails_once_for_good("x"), t.multiply(1), user="user:1", on_commit=False)
    with running_worker(get_config(), "worker-001"):
        assert handles[-1].wait(timeout=20) == 42
        with pytest.raises(fairque_django.TaskFailedError):
            doomed[1].wait(timeout=20)
    assert doomed[1].status is TaskStatus.CANCELLED
    assert first.refresh().status is TaskStatus.SUCCESSFUL
    assert get_queue().get_result(first.id, user_id="user:1") == {
        "status": "SUCCESSFUL", "return_value": 6, "attempts": 1,
        "finished_at": get_queue().get_result(first.id, user_id="user:1")["finished_at"]}  # type: ignore[index]


def test_task_decorator_unique_key_from_arguments() -> None:
    @fairque_django.task(name="tests.dedup.report", unique_key=lambda org, day: f"report:{org}:{day}",
                         unique_for=60)
    def report(org: int, day: str) -> None: ...

    made = report(7, "2026-01-01")
    assert made.unique_key == "report:7:2026-01-01" and made.unique_for == 60
    assert report.create_task((8, "x")).unique_key == "report:8:x"
