"""Observing tenant limits against a real Redis: the snapshot's per-tenant limits and state (still
three round trips), the tenant page's reader (bounded windows), the ``tenant_at_cap`` alert rule."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.client import Pipeline

from fairque_django.core.models import Priority, Task
from fairque_django.core.observe import QueueMetrics, TenantView, collect_metrics
from fairque_django.core.observe.alert_rules import TenantAtCap, evaluate, parse_rules, required_top_n
from fairque_django.core.observe.alerts import AlertTracker
from fairque_django.core.queue import TaskQueue

WORKERS = [{"id": "w1", "assigned_users": ["*"]}]


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(workers=WORKERS, worker_id="w1", lease_timeout_seconds=30,
                                 tenant_limits={"free:*": {"concurrency": 1, "rate": "100/m"}}))


def push(q: TaskQueue, user: str, n: int = 1, *, priority: Priority = Priority.NORMAL, func: str | None = None,
         delay: float | None = None) -> list[str]:
    ids = []
    for _ in range(n):
        task = Task.create(user_id=user, priority=priority, func_name=func, payload={} if func is None else None,
                           execute_after=time.time() + delay if delay else None)
        q.push(task)
        ids.append(task.task_id)
    return ids


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every round trip to Redis: a pipeline's execute, or a command sent on its own."""
    seen: list[str] = []
    execute, command = Pipeline.execute, redis.Redis.execute_command

    def counted_execute(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        seen.append(f"pipeline of {len(self.command_stack)}")
        return execute(self, *args, **kwargs)

    def counted_command(self: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, Pipeline):
            seen.append(str(args[0]))
        return command(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted_execute)
    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    yield seen


# --- the snapshot ---------------------------------------------------------------------------------
def test_the_snapshot_reads_each_tenants_limits_and_state_in_its_three_round_trips(
        q: TaskQueue, round_trips: list[str]) -> None:
    q.set_tenant_limits("org:1", concurrency=2)
    push(q, "org:1", 5)
    push(q, "free:7", 3)  # the settings: concurrency 1, 100/m
    push(q, "paused:1", 2)
    q.pause_tenant("paused:1")
    push(q, "plain", 1)
    leased = q.pop_many(10, "w1")
    assert sorted(t.user_id for t in leased) == ["free:7", "org:1", "org:1", "plain"]
    round_trips.clear()
    m = collect_metrics(q, 10, check_starved=False)
    assert len(round_trips) == 3, round_trips
    rows = {r.tenant: r for r in m.tenants}
    org, free, paused, plain = rows["org:1"], rows["free:7"], rows["paused:1"], rows["plain"]
    assert (org.running, org.cap, org.rate, org.paused, org.held, org.at_cap) == (2, 2, None, False, "cap", True)
    assert (free.running, free.cap, free.rate, free.held, free.at_cap) == (1, 1, "100/m", "cap", True)
    assert (paused.running, paused.cap, paused.paused, paused.held, paused.at_cap) == (0, None, True, "paused", False)
    assert (plain.running, plain.cap, plain.paused, plain.held, plain.at_cap) == (1, None, False, None, False)
    assert (m.tenants_paused, m.tenants_held) == (1, 3)
    assert m.to_dict()["tenants"][0]["limits"].keys() == {"running", "cap", "rate", "paused", "held"}
    q.complete(next(t for t in leased if t.user_id == "org:1"))
    after = collect_metrics(q, 10, check_starved=False).tenant("org:1")
    assert after is not None and (after.running, after.held) == (1, None)  # it rejoined its rotation


def test_garbage_in_the_limit_keys_reads_as_no_state(q: TaskQueue) -> None:
    push(q, "org:1", 2)
    q.client.hset(q.keys.tenant_leased, "org:1", "lots")
    q.client.hset(q.keys.tenant_limits, "org:1", "garbage")
    row = collect_metrics(q, 10, check_starved=False).tenant("org:1")
    assert row is not None and (row.running, row.cap) == (0, None)
    q.client.delete(q.keys.tenant_held)
    q.client.set(q.keys.tenant_held, "not a hash")  # the wrong type must not hide the rest
    m = collect_metrics(q, 10, check_starved=False)
    assert m.tenant("org:1") is not None and m.tenants_held == 0


# --- the tenant page's reader ----------------------------------------------------------------------
@pytest.fixture
def ranges(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, int]]]:
    """The (command, start, end) of every LRANGE / ZRANGE a pipeline queues."""
    seen: list[tuple[str, int, int]] = []
    lrange, zrange = Pipeline.lrange, Pipeline.zrange

    def lr(self: Pipeline, name: str, start: int, end: int) -> Any:
        seen.append(("lrange", start, end))
        return lrange(self, name, start, end)

    def zr(self: Pipeline, name: str, start: int, end: int, *args: Any, **kwargs: Any) -> Any:
        seen.append(("zrange", start, end))
        return zrange(self, name, start, end, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "lrange", lr)
    monkeypatch.setattr(Pipeline, "zrange", zr)
    yield seen


def test_queued_pages_follow_the_serving_order_with_bounded_windows(
        q: TaskQueue, ranges: list[tuple[str, int, int]]) -> None:
    crit = push(q, "org:1", 30, priority=Priority.CRITICAL)
    high = push(q, "org:1", 20, priority=Priority.HIGH)
    low = push(q, "org:1", 2000, priority=Priority.VERY_LOW)
    order = [*crit, *high, *low]
    view = TenantView(q, "org:1")
    detail = view.detail()
    assert detail.depth == {"critical": 30, "5": 0, "4": 20, "3": 0, "2": 0, "1": 2000}
    assert (detail.unfinished, detail.leased, detail.delayed) == (2050, 0, 0)
    for offset in (0, 25, 40, 1000):
        ranges.clear()
        page = view.queued(offset, 25)
        assert [t.task_id for t in page.tasks] == order[offset:offset + 25]
        assert page.total == 2050 and page.exact
        assert ranges and all(not start >= 0 > end and 0 < end - start + 1 <= 25 for _, start, end in ranges), \
            ranges  # windows of the page's size, never a whole lane (0, -1)
    served = [t.task_id for t in q.pop_many(30, "w1")]
    assert served == crit  # what the page said comes first does


def test_delayed_leased_and_search(q: TaskQueue) -> None:
    mine = push(q, "org:1", 3, func="app.tasks.send_invoice", delay=3600)
    push(q, "org:2", 5, func="app.tasks.send_invoice", delay=60)  # sooner due: scanned first
    queued = push(q, "org:1", 2, func="app.tasks.resize")
    q.set_tenant_limits("org:1", concurrency=5)
    task = q.pop("w1")
    assert task is not None and task.task_id == queued[0]
    q.set_progress(task, 0.5, "half")
    view = TenantView(q, "org:1")
    leased = view.leased()
    assert [(t.task_id, t.worker, t.lane) for t in leased.tasks] == [(queued[0], "w1", "leased")]
    assert leased.tasks[0].progress is not None and leased.tasks[0].progress["percent"] == 50
    assert leased.tasks[0].deadline is not None and leased.tasks[0].deadline > time.time()
    delayed = view.delayed()
    # (same due time, pushed in one batch: ties are ordered by id, not by push order)
    assert sorted(t.task_id for t in delayed.tasks) == sorted(mine) and delayed.exact and delayed.scanned == 8
    assert all(t.since is not None and t.since > time.time() + 3000 for t in delayed.tasks)
    assert [t.task_id for t in view.queued(search="RESIZE").tasks] == queued[1:]
    assert sorted(t.task_id for t in view.delayed(search="invoice").tasks) == sorted(mine)
    assert [t.task_id for t in view.delayed(search=mine[1]).tasks] == [mine[1]]
    assert view.queued(search=mine[1]).tasks == []  # a delayed task's id is not a queued task
    small = TenantView(q, "org:1", delayed_scan=5)
    page = small.delayed()
    assert (page.tasks, page.exact, page.scanned) == ([], False, 5)  # org:2's come first: a lower bound
    found, missing = view.tasks([mine[0], queued[0], "nope", mine[0]])
    assert [t.task_id for t in found] == [mine[0], queued[0]] and missing == ["nope"]
    assert TenantView(q, "org:2").tasks([mine[0]]) == ([], [mine[0]])  # another tenant's task
    with pytest.raises(ValueError):
        TenantView(q, "{bad}")


# --- the tenant_at_cap alert rule ------------------------------------------------------------------
def evaluated(q: TaskQueue, rules: tuple[Any, ...]) -> tuple[QueueMetrics, dict[str, Any]]:
    m = collect_metrics(q, required_top_n(rules, 5), alerts=True)
    states = evaluate(m, rules)
    AlertTracker(q).update(states, at=m.timestamp)
    return m, {s.name: s for s in states}


def test_tenant_at_cap_fires_once_a_tenant_stays_at_its_cap(q: TaskQueue) -> None:
    rules = parse_rules([{"name": "capped", "type": "tenant_at_cap", "for_seconds": 1.0},
                         {"name": "now", "type": "tenant_at_cap", "for_seconds": 0},
                         {"name": "only-org", "type": "tenant_at_cap", "for_seconds": 0, "tenants": ["org:*"]}])
    assert isinstance(rules[0], TenantAtCap) and rules[0].threshold_value == 1.0
    q.set_tenant_limits("free:1", concurrency=1)
    push(q, "free:1", 3)
    _, states = evaluated(q, rules)
    assert not any(s.firing for s in states.values())  # nothing leased yet
    task = q.pop("w1")
    assert task is not None
    _, states = evaluated(q, rules)
    assert not states["capped"].firing and "1 tenant(s) at their cap, none for 1 s yet" in states["capped"].message
    assert states["now"].firing and states["now"].details["tenants"] == ["free:1"]
    assert not states["only-org"].firing
    time.sleep(1.1)
    _, states = evaluated(q, rules)
    assert states["capped"].firing
    assert states["capped"].details["at_cap"][0]["tenant"] == "free:1"
    assert states["capped"].details["at_cap"][0]["leased"] == 1 and states["capped"].details["at_cap"][0]["cap"] == 1
    assert states["capped"].value is not None and states["capped"].value >= 1.0
    q.complete(task)  # below its cap: resolved, and its clock starts again next time
    _, states = evaluated(q, rules)
    assert not states["capped"].firing and not states["now"].firing
    assert q.pop("w1") is not None
    _, states = evaluated(q, rules)
    assert not states["capped"].firing and states["now"].firing


def test_tenant_at_cap_without_recorded_states_needs_only_the_snapshot(q: TaskQueue) -> None:
    (rule,) = parse_rules([{"name": "capped", "type": "tenant_at_cap", "for_seconds": 60}])
    q.set_tenant_limits("org:1", concurrency=1)
    push(q, "org:1", 1)
    assert q.pop("w1") is not None
    m = collect_metrics(q, 5)  # no alert states read: a tenant at its cap now has been so for 0 s
    state = rule.check(m)
    assert not state.firing and state.details["at_cap_since"] == {"org:1": m.timestamp}
