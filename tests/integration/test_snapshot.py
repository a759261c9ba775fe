"""The read model (``core.observe``: one snapshot of a queue, and the dead-letter queue pages)
against a real Redis."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
import redis

from fairque_django.core.models import Priority, Task
from fairque_django.core.observe import (
    DeadLetters,
    QueueMetrics,
    collect_metrics,
    down_after,
    mark_stopped,
    stale_after,
)
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import Worker

WORKERS = [
    {"id": "w1", "assigned_users": ["a", "b", "c"], "steal_targets": ["d"], "heartbeat_interval_seconds": 1},
    {"id": "w2", "assigned_users": ["d"], "steal_targets": ["a", "b", "c"]},
]


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(workers=WORKERS, worker_id="w1", lease_timeout_seconds=30))


@pytest.fixture
def insp(q: TaskQueue) -> DeadLetters:
    return DeadLetters(q)


def snap(q: TaskQueue, **kw: Any) -> QueueMetrics:
    """The dashboard's snapshot: the busiest users and a one-minute rate window."""
    return collect_metrics(q, 50, windows=(60,), **kw)


def push(q: TaskQueue, user: str, priority: Priority = Priority.NORMAL, **kw: Any) -> str:
    task = Task.create(user_id=user, priority=priority, payload={"u": user}, **kw)
    assert q.push(task)["success"]
    return task.task_id


def make_dead(q: TaskQueue, user: str, error: BaseException, *, func: str | None = None) -> str:
    """Push, lease and fail one task without retry (nothing else may be ready)."""
    task = Task.create(user_id=user, func_name=func, args=[user], payload={} if func else {"u": user})
    q.push(task)
    popped = q.pop("w1")
    assert popped is not None and popped.task_id == task.task_id
    assert q.fail(popped, error, traceback="Traceback: ...", retry=False) == "dead"
    return task.task_id


def order_dlq(q: TaskQueue, ids: list[str]) -> None:
    """Give the dead tasks distinct death times in list order (oldest first)."""
    base = int(time.time() * 1000) - 100_000
    q.client.zadd(q.keys.dlq, {task_id: base + i for i, task_id in enumerate(ids)})


# --- totals and rates -------------------------------------------------------------------------
def test_totals_match_get_stats_and_rates_wait_for_a_sample(q: TaskQueue) -> None:
    push(q, "a")
    push(q, "b")
    t = q.pop("w1")
    assert t is not None
    q.complete(t)
    m = snap(q)
    stats = m.stats()
    assert stats["tasks_pushed"] == 2
    assert stats["tasks_completed"] == 1
    assert m.totals["completed"] == 1
    assert {k: v for k, v in stats.items() if k != "timestamp"} == {
        k: v for k, v in q.get_stats().items() if k not in ("timestamp", "users", "priorities")}
    assert m.tenants_with_work == 1
    assert m.windows == {}  # no snapshot old enough yet: no made-up rate
    assert q.client.zcard(q.keys.samples) == 1
    snap(q)
    assert q.client.zcard(q.keys.samples) == 1  # at most one snapshot per 10 s


def test_rates_come_from_a_real_older_snapshot(q: TaskQueue, insp: DeadLetters) -> None:
    for _ in range(4):
        push(q, "a")
    for _ in range(4):
        t = q.pop("w1")
        assert t is not None
        q.complete(t)
    now = insp.redis_time()
    # a snapshot 60 s old, when 1 task had completed and 2 had been pushed
    old = {"t": now - 60, "pushed": 2, "completed": 1, "failed": 0, "dead": 0}
    q.client.zadd(q.keys.samples, {json.dumps(old): int((now - 60) * 1000)})
    rates = snap(q).windows[60.0]
    assert rates.seconds == pytest.approx(60, abs=2)
    assert rates.per_minute("completed") == pytest.approx(3.0, rel=0.05)  # 3 completions in one minute
    assert rates.per_minute("pushed") == pytest.approx(2.0, rel=0.05)
    assert rates.per_minute("dead") == 0


def test_rates_are_none_for_a_counter_that_went_down(q: TaskQueue, insp: DeadLetters) -> None:
    now = insp.redis_time()
    old = {"t": now - 30, "pushed": 50, "completed": 0}
    q.client.zadd(q.keys.samples, {json.dumps(old): int((now - 30) * 1000)})
    rates = snap(q).windows[60.0]
    assert rates.per_minute("pushed") is None  # the stats were reset: no negative rate
    assert rates.per_minute("completed") == 0


def test_no_samples_are_written_when_disabled(q: TaskQueue) -> None:
    snap(q, record_sample=False)
    assert q.client.exists(q.keys.samples) == 0


# --- users ----------------------------------------------------------------------------------
def test_users_depth_per_lane(q: TaskQueue) -> None:
    for _ in range(3):
        push(q, "a")
    push(q, "a", Priority.CRITICAL)
    push(q, "a", delay_seconds=300)
    push(q, "b")
    push(q, "b")
    leased = q.pop("w1")  # a's critical task goes first
    assert leased is not None and leased.user_id == "a"
    m = snap(q)
    rows = {r.tenant: r for r in m.tenants}
    assert m.tenants_with_work == 2
    assert [r.tenant for r in m.tenants] == ["a", "b"]  # most unfinished work first
    a, b = rows["a"], rows["b"]
    assert (a.critical, a.normal, a.delayed, a.leased, a.unfinished) == (0, 3, 1, 1, 5)
    assert (b.critical, b.normal, b.delayed, b.leased, b.unfinished) == (0, 2, 0, 0, 2)
    assert a.owner == "w1"
    assert not m.leases_truncated and m.leases_scanned == 1


def test_oldest_waiting_age_reads_the_head_of_each_lane(q: TaskQueue, insp: DeadLetters) -> None:
    first_crit = push(q, "a", Priority.CRITICAL)
    push(q, "a", Priority.CRITICAL)
    first_normal = push(q, "a", Priority.LOW)
    now_ms = int(insp.redis_time() * 1000)
    q.client.hset(q.keys.task(first_crit), "e", now_ms - 42_000)
    q.client.hset(q.keys.task(first_normal), "e", now_ms - 7_000)
    (row,) = snap(q).tenants
    assert row.oldest_critical_seconds == pytest.approx(42, abs=1)
    assert row.oldest_normal_seconds == pytest.approx(7, abs=1)
    assert row.oldest_wait_seconds == pytest.approx(42, abs=1)
    push(q, "b")
    rows = {r.tenant: r for r in snap(q).tenants}
    assert rows["b"].oldest_critical_seconds is None
    assert rows["b"].oldest_normal_seconds is not None and rows["b"].oldest_normal_seconds < 5


def test_users_limit_and_bounded_lease_scan(q: TaskQueue) -> None:
    for user, n in (("a", 3), ("b", 2), ("c", 1)):
        for _ in range(n):
            push(q, user)
        push(q, user, delay_seconds=600)
    popped: Counter[str] = Counter()
    for _ in range(4):
        task = q.pop("w1")
        assert task is not None
        popped[task.user_id] += 1
    m = collect_metrics(q, 2, lease_scan_limit=2)
    assert [r.tenant for r in m.tenants] == ["a", "b"]
    assert m.tenants_with_work == 3 and len(m.tenants) < m.tenants_with_work
    assert m.leased == 4 and m.leases_scanned == 2
    assert m.leases_truncated  # the page shows "≥"
    assert sum(r.leased for r in m.tenants) <= 2
    assert sum(w.leased for w in m.workers) == 2 and all(w.leases_truncated for w in m.workers)
    # leased + delayed stays exact per user: the delayed count is an upper bound
    assert all(r.leased + r.delayed == r.unfinished - r.ready for r in m.tenants)
    full = collect_metrics(q, 2)
    assert [(r.delayed, r.leased) for r in full.tenants] == [(1, popped["a"]), (1, popped["b"])]
    assert not full.leases_truncated


# --- workers --------------------------------------------------------------------------------
def workers(q: TaskQueue) -> dict[str, Any]:
    return {w.worker_id: w for w in collect_metrics(q).workers}


def test_workers_never_seen_alive_and_stale(q: TaskQueue) -> None:
    rows = workers(q)
    assert set(rows) == {"w1", "w2"}
    assert all(w.status == "never seen" and w.heartbeat_age is None for w in rows.values())
    assert rows["w1"].assigned == ("a", "b", "c") and rows["w1"].steals == ("d",)

    push(q, "a")
    task = q.pop("w1")
    assert task is not None
    worker = Worker(q.config, worker_id="w1", queue=q, install_signal_handlers=False)
    worker.publish_health([task])
    # w2 heartbeated a while ago (between the stale and down thresholds) and its record expired:
    # it died without a clean stop
    stale, down = stale_after(q.config, q.config.get_worker("w2")), down_after(q.config, q.config.get_worker("w2"))
    q.client.zadd(q.keys.workers, {"w2": time.time() - (stale + down) / 2})
    rows = workers(q)
    w1, w2 = rows["w1"], rows["w2"]
    assert w1.status == "alive" and w1.alive
    assert w1.heartbeat_age is not None and w1.heartbeat_age < 5
    assert w1.current == [{"task_id": task.task_id, "user": "a", "func": None, "progress": None}]
    assert w1.record is not None and w1.record["pid"] == w1.pid
    assert [{**c, "progress": None} for c in w1.record["current"]] == w1.current
    assert w1.leased == 1
    assert w2.status == "stale" and w2.heartbeat_age is not None and w2.heartbeat_age > stale

    # a record whose heartbeat is older than the stale threshold also counts as stale
    q.client.hset(q.keys.worker("w1"), "last_seen", time.time() - stale - 1)
    assert workers(q)["w1"].status == "stale"
    # silent for longer than the down threshold: down
    q.client.zadd(q.keys.workers, {"w2": time.time() - down - 1})
    assert workers(q)["w2"].status == "down"
    # a clean stop reads down at once (the id stays in {prefix}:workers)
    mark_stopped(q.client, q.keys, "w1")
    assert workers(q)["w1"].status == "down"


def test_unconfigured_worker_ids_that_heartbeat_are_listed(q: TaskQueue) -> None:
    q.client.zadd(q.keys.workers, {"old-worker": time.time() - 40, "gone-worker": time.time() - 2 * 86400})
    rows = workers(q)
    assert not rows["old-worker"].configured and rows["old-worker"].status == "stale"
    assert "gone-worker" not in rows  # unconfigured and down for more than a day: not listed


# --- dead-letter queue ----------------------------------------------------------------------
@pytest.fixture
def dead(q: TaskQueue) -> list[str]:
    ids = [
        make_dead(q, "a", ValueError("bad value")),
        make_dead(q, "b", KeyError("k")),
        make_dead(q, "a", KeyError("k2")),
        make_dead(q, "c", ValueError("bad again")),
        make_dead(q, "a", ValueError("third")),
    ]
    order_dlq(q, ids)
    return ids


def test_dlq_page_unfiltered_is_newest_first_and_exact(insp: DeadLetters, dead: list[str]) -> None:
    page = insp.page(0, 2)
    assert [e.task_id for e in page.entries] == [dead[4], dead[3]]
    assert page.total == 5 and page.exact and not page.filtered
    page2 = insp.page(4, 2)
    assert [e.task_id for e in page2.entries] == [dead[0]]
    entry = page.entries[0]
    assert (entry.user_id, entry.error_type, entry.error) == ("a", "ValueError", "third")


def test_dlq_filters_by_user_and_error_type(insp: DeadLetters, dead: list[str]) -> None:
    page = insp.page(0, 10, user="a")
    assert [e.task_id for e in page.entries] == [dead[4], dead[2], dead[0]]
    assert page.total == 3 and page.exact and page.filtered
    page = insp.page(0, 10, error_type="KeyError")
    assert [e.task_id for e in page.entries] == [dead[2], dead[1]]
    page = insp.page(0, 10, user="a", error_type="ValueError")
    assert [e.task_id for e in page.entries] == [dead[4], dead[0]]
    page = insp.page(1, 1, user="a")
    assert [e.task_id for e in page.entries] == [dead[2]] and page.total == 3
    assert insp.page(0, 10, user="nobody").total == 0


def test_dlq_search_by_exact_id_and_prefix(q: TaskQueue, insp: DeadLetters, dead: list[str]) -> None:
    page = insp.page(0, 10, search=dead[1])
    assert [e.task_id for e in page.entries] == [dead[1]]
    prefix = dead[3][:6]
    page = insp.page(0, 10, search=prefix)
    assert dead[3] in [e.task_id for e in page.entries]
    assert all(e.task_id.startswith(prefix) for e in page.entries)
    assert insp.page(0, 10, search="zzz-no-such-id").entries == []
    # search combined with a filter
    page = insp.page(0, 10, search=dead[1], user="a")
    assert page.entries == []


def test_dlq_filter_scan_is_bounded_and_says_so(q: TaskQueue, dead: list[str]) -> None:
    small = DeadLetters(q, scan_limit=3)
    page = small.page(0, 10, user="a")
    assert page.scanned == 3 and page.dlq_size == 5
    assert not page.exact and page.truncated
    assert [e.task_id for e in page.entries] == [dead[4], dead[2]]  # the older match is beyond the scan
    facets = small.facets()
    assert facets.truncated and facets.scanned == 3
    assert dict(facets.users) == {"a": 2, "c": 1}


def test_dlq_facets_and_dead_tasks(q: TaskQueue, insp: DeadLetters, dead: list[str]) -> None:
    facets = insp.facets()
    assert facets.users[0] == ("a", 3)
    assert dict(facets.users) == {"a": 3, "b": 1, "c": 1}
    assert dict(facets.error_types) == {"ValueError": 3, "KeyError": 2}
    assert not facets.truncated
    q.requeue_dead([dead[0]])
    found, missing = insp.dead_tasks([dead[1], dead[0], "nope", dead[1]])
    assert [e.task_id for e in found] == [dead[1]]
    assert missing == [dead[0], "nope"]
    assert insp.dead_task(dead[0]) is None
    entry = insp.dead_task(dead[1])
    assert entry is not None and entry.traceback == "Traceback: ..."


def test_reads_do_not_change_queue_state(q: TaskQueue, insp: DeadLetters, dead: list[str],
                                                 redis_client: redis.Redis) -> None:
    push(q, "a")
    push(q, "b", delay_seconds=60)
    before = snapshot(redis_client)
    snap(q)
    insp.page(0, 2, user="a", error_type="ValueError", search=dead[0][:3])
    insp.facets()
    insp.dead_tasks(dead)
    assert snapshot(redis_client) == before


def snapshot(client: redis.Redis) -> dict[Any, Any]:
    """Every key's content (except the counter snapshots that reads store for rates)."""
    out: dict[Any, Any] = {}
    for key in client.keys("*"):
        if b":admin:" in key:
            continue
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
        elif kind == b"set":
            out[key] = client.smembers(key)
        else:
            out[key] = client.get(key)
    return out
