"""Cancellation meets unique keys, dependencies and tenant limits (issue 15 merged with the dedup
and limits work): a cancel ends a task the way its other ends do -- its unique key is released,
its dependents are cancelled (the same record and counter as any cancel), its lease ends for its
tenant's cap -- and a held tenant whose queue is cancelled is held no longer."""

from __future__ import annotations

from typing import Any

import redis

from fairque_django import Task, TaskQueue, TaskStatus
from tests.reliability.helpers import assert_stats_balance

WORKERS = [{"id": "w1", "assigned_users": ["*"]}]


def job(user: str, n: int, **kw: Any) -> Task:
    return Task.create(user, func_name="job", args=[n], **kw)


def test_cancel_releases_the_unique_key(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(workers=WORKERS))
    first = q.push(job("a", 1, unique_key="report:1"))
    assert q.push(job("a", 2, unique_key="report:1"))["conflict"] == "dropped"  # held by the first
    assert q.cancel(first["task_id"]) == "cancelled"
    assert redis_client.get(q.keys.unique("a", "report:1")) is None
    again = q.push(job("a", 3, unique_key="report:1"))
    assert again["success"] and again.get("conflict") is None and again["task_id"] != first["task_id"]
    # a running one: the key is released when its flagged lease ends, not before
    running = q.pop("w1")
    assert running is not None and running.task_id == again["task_id"]
    assert q.cancel(running.task_id) == "cancelling"
    assert q.push(job("a", 4, unique_key="report:1"))["conflict"] == "dropped"
    assert q.complete_code(running) == 2
    assert q.push(job("a", 5, unique_key="report:1")).get("conflict") is None
    assert_stats_balance(q, redis_client)


def test_cancelling_a_dependency_cancels_its_dependents(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(workers=WORKERS))
    dep = q.push(job("a", 1))
    child = q.push(job("a", 2, depends_on=[dep["task_id"]], unique_key="child"))
    grandchild = q.push(job("b", 3, depends_on=[("a", child["task_id"])]))
    tolerant = q.push(job("a", 4, depends_on=[dep["task_id"]], allow_failure=True))
    assert (child["state"], grandchild["state"], tolerant["state"]) == ("waiting", "waiting", "waiting")
    assert q.cancel(dep["task_id"]) == "cancelled"
    for user, tid in (("a", child["task_id"]), ("b", grandchild["task_id"])):
        snap = q.read_result(tid, user)
        assert snap.status is TaskStatus.CANCELLED and snap.errors[0].error_type == "DependencyFailed", snap
        assert redis_client.exists(q.keys.task(tid)) == 0
    assert redis_client.get(q.keys.unique("a", "child")) is None  # released with its cancel
    runs = q.pop("w1")  # allow_failure: it runs
    assert runs is not None and runs.task_id == tolerant["task_id"]
    assert q.get_stats()["tasks_cancelled"] == 3  # counted once each, the same counter
    # a dependency cancelled before the dependent is pushed: cancelled at once (its record says so)
    assert q.push(job("a", 5, depends_on=[dep["task_id"]]))["state"] == "cancelled"
    q.complete(runs)
    assert_stats_balance(q, redis_client)
    assert not list(redis_client.scan_iter(match=f"{q.keys.base}:deps:*"))


def test_cancelling_a_waiting_task(make_config: Any, redis_client: redis.Redis) -> None:
    """A task waiting for its dependencies is in no lane: cancelled all the same, out of the list
    of its dependency (which then completes without touching it)."""
    q = TaskQueue(make_config(workers=WORKERS))
    dep = q.push(job("a", 1))
    waiting = q.push(job("a", 2, depends_on=[dep["task_id"]], unique_key="w"))
    assert q.cancel(waiting["task_id"], user_id="a") == "cancelled"
    assert q.read_result(waiting["task_id"], "a").status is TaskStatus.CANCELLED
    assert redis_client.smembers(q.keys.base + ":deps:" + dep["task_id"]) == set()
    assert redis_client.get(q.keys.unique("a", "w")) is None
    assert q.cancel(waiting["task_id"], user_id="a") == "cancelled"  # again: its record says so
    popped = q.pop("w1")
    assert popped is not None and popped.task_id == dep["task_id"]
    q.complete(popped)
    assert q.pop("w1") is None  # the cancelled dependent does not come back
    stats = q.get_stats()
    assert (stats["tasks_cancelled"], stats["tasks_completed"], stats["tasks_pending"]) == (1, 1, 0)
    assert_stats_balance(q, redis_client)


def test_cancelling_a_running_task_frees_its_tenants_cap(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(workers=WORKERS, tenant_limits={"a": {"concurrency": 1}}))
    for n in range(3):
        q.push(job("a", n))
    running = q.pop("w1")
    assert running is not None
    assert q.pop("w1") is None and q.get_tenant_limits("a")["held"] == "cap"
    assert q.cancel(running.task_id) == "cancelling"
    lost, cancelling = q.extend_leases([running])
    assert (lost, cancelling) == ([], [running.task_id])
    assert q.fail(running, RuntimeError("stopped"), retry=True) == "cancelled"  # never retried
    state = q.get_tenant_limits("a")
    assert state["leased"] == 0 and state["held"] is None
    nxt = q.pop("w1")  # the cap is free: the next task is leased
    assert nxt is not None and nxt.user_id == "a"
    assert_stats_balance(q, redis_client)


def test_a_held_tenant_whose_queue_is_cancelled_is_held_no_longer(make_config: Any,
                                                                   redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(workers=WORKERS, tenant_limits={"a": {"concurrency": 1}}))
    for n in range(3):
        q.push(job("a", n))
    running = q.pop("w1")
    assert running is not None and q.pop("w1") is None
    assert q.get_tenant_limits("a")["held"] == "cap"
    assert q.cancel_tenant("a") == {"cancelled": 2, "cancelling": 0}
    assert q.get_tenant_limits("a")["held"] is None
    assert redis_client.hget(q.keys.base + ":theld", "a") is None
    q.pause_tenant("a")
    late = q.push(job("a", 9))
    assert q.get_tenant_limits("a")["held"] == "paused"
    assert q.cancel(late["task_id"]) == "cancelled"  # its last queued task: not held any more
    assert q.get_tenant_limits("a")["held"] is None and q.is_paused("a")
    q.complete(running)
    assert q.get_tenant_limits("a")["leased"] == 0
    assert_stats_balance(q, redis_client)
