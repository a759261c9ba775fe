"""The metrics read API (core/observe: collect_metrics) against a real Redis and real workers: the numbers match
known pushes, pops, completions and failures; the tenant set is bounded with an exact ``other``."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.management import call_command

from fairque_django import conf
from fairque_django.core.models import Priority, Task
from fairque_django.core.observe import (
    BUCKETS_MS,
    Histogram,
    collect_metrics,
    load_history,
    record_history,
    throughput_estimate,
    trim_throughput,
)
from fairque_django.core.queue import TaskQueue
from tests.support import FAST, Clock, eventually, running_worker
from tests.testapp import tasks as t

WORKERS = [
    {"id": "w1", "assigned_users": ["a", "b", "c"], "steal_targets": ["d", "t*"], "max_concurrent_tasks": 2, **FAST},
    {"id": "w2", "assigned_users": ["d"]},
]


@pytest.fixture
def q(make_config: Any) -> TaskQueue:
    return TaskQueue(make_config(workers=WORKERS, worker_id="w1", lease_timeout_seconds=30))


def push(q: TaskQueue, user: str, priority: Priority = Priority.NORMAL, **kw: Any) -> Task:
    task = Task.create(user_id=user, priority=priority, payload={"u": user}, **kw)
    assert q.push(task)["success"]
    return task


# --- histograms and estimators (pure) -----------------------------------------------------
def test_histogram_quantiles_sums_and_differences() -> None:
    empty = Histogram()
    assert empty.count == 0 and empty.quantile(0.5) is None
    ten = Histogram(tuple(4 if b == 10 else 0 for b in (*BUCKETS_MS, 0)), 30)  # 4 observations in (5, 10] ms
    assert ten.count == 4 and ten.sum_seconds == 0.03
    assert ten.quantile(0.5) == pytest.approx(0.0075)  # linear inside the bucket, like histogram_quantile
    assert ten.quantile(1.0) == pytest.approx(0.010)
    inf = Histogram((0,) * len(BUCKETS_MS) + (2,), 10_000_000)
    assert inf.quantile(0.5) == 300.0  # the +Inf bucket: the largest finite bound
    both = ten + inf
    assert both.count == 6 and both.minus(inf) == ten and inf.minus(both).count == 0  # clamped at zero
    cumulative = both.cumulative()
    assert cumulative[0] == (0.005, 0) and cumulative[1] == (0.01, 4) and cumulative[-1] == (float("inf"), 6)


def test_throughput_estimate_weights_the_partial_minute() -> None:
    now_min = 29_000_000
    now_ms = now_min * 60_000 + 30_000  # half-way through the current minute
    counts = {now_min: 3, now_min - 1: 4, now_min - 59: 5, now_min - 60: 10, now_min - 61: 100}
    assert throughput_estimate(counts, now_ms, 1) == 3 + 4 * 0.5
    assert throughput_estimate(counts, now_ms, 60) == 3 + 4 + 5 + 10 * 0.5


# --- the numbers ------------------------------------------------------------------------------
def test_metrics_match_known_pushes_pops_completions_and_failures(q: TaskQueue) -> None:
    pushed: dict[str, Counter[str]] = {"a": Counter(), "b": Counter(), "c": Counter(), "d": Counter()}
    push(q, "a", Priority.CRITICAL)
    pushed["a"]["critical"] += 1
    for _ in range(3):
        push(q, "a")
        pushed["a"]["normal"] += 1
    for _ in range(2):
        push(q, "b", Priority.HIGH)
        pushed["b"]["normal"] += 1
    push(q, "c", execute_after=time.time() + 600)
    push(q, "d")
    pushed["d"]["normal"] += 1
    popped = [q.pop("w1") for _ in range(3)]
    assert all(p is not None for p in popped)
    done, dead, held = popped  # type: ignore[misc]
    q.complete(done, duration=0.2)
    assert q.fail(dead, ValueError("boom"), retry=False) == "dead"
    time.sleep(0.3)  # the scenario: the ready tasks age 0.3 s (oldest_wait_seconds below)
    m = collect_metrics(q, 10)

    assert m.tenants_with_work == 4 and m.other is None
    assert m.tenants[0].tenant == "a"  # most unfinished work first
    for user in "abcd":
        row = m.tenant(user)
        assert row is not None
        mine = [p for p in popped if p.user_id == user]
        crit_popped = sum(1 for p in mine if int(p.priority) == 6)
        assert row.critical == pushed[user]["critical"] - crit_popped, user
        assert row.normal == pushed[user]["normal"] - (len(mine) - crit_popped), user
        assert row.leased == (1 if held.user_id == user else 0)
        assert row.delayed == (1 if user == "c" else 0)
        assert row.enqueued == sum(pushed[user].values()) + (1 if user == "c" else 0)
        assert row.completed == (1 if done.user_id == user else 0)
        assert row.failed == row.dead == (1 if dead.user_id == user else 0)
        assert row.unfinished == row.enqueued - row.completed - row.dead
        # one wait observation per attempt that ended (completed or failed), none for the held one
        assert row.wait.count == len([t for t in mine if t is not held])
        assert row.run.count == row.completed
        if row.ready:
            assert row.oldest_wait_seconds is not None and row.oldest_wait_seconds >= 0.3
        else:
            assert row.oldest_wait_seconds is None
    runner = m.tenant(done.user_id or "")
    assert runner is not None and runner.run.sum_ms == 200
    assert runner.run.counts[BUCKETS_MS.index(250)] == 1  # 200 ms lands in the (100, 250] bucket
    assert m.totals["pushed"] == 8 and m.totals["completed"] == 1 and m.totals["failed"] == 1
    assert m.totals["dead"] == 1 and m.totals["popped"] == 3
    assert (m.ready, m.delayed, m.leased, m.dlq_size) == (4, 1, 1, 1)
    assert m.wait.count == 2 and m.run.count == 1  # the held task's wait counts when it ends
    assert m.throughput_last_hour == 1 and 0 < m.throughput_last_minute <= 1
    assert sum(n for _, n in m.throughput_per_minute) == 1
    as_json = json.loads(json.dumps(m.to_dict()))
    assert as_json["dlq_size"] == 1 and as_json["tenants"][0]["tenant"] == "a"


def test_top_n_bounds_the_tenants_and_other_aggregates_the_rest(q: TaskQueue) -> None:
    for i in range(30):
        for _ in range(i + 1):
            push(q, f"t{i:02d}")
        if i % 3 == 0:
            push(q, f"t{i:02d}", Priority.CRITICAL)
    for _ in range(20):  # serve some tasks: histograms and counters of every kind of tenant
        task = q.pop("w1")
        assert task is not None
        q.complete(task, duration=0.01)
    full = collect_metrics(q, 100)
    top = collect_metrics(q, 5)
    assert len(full.tenants) == 30 and len(top.tenants) == 5
    assert [r.tenant for r in top.tenants] == [r.tenant for r in full.tenants[:5]]
    other = top.other
    assert other is not None and other.tenant == "other" and other.tenants == 25 and other.exact_lanes
    rest = full.tenants[5:]
    for name in ("unfinished", "critical", "normal", "delayed", "leased", "enqueued", "completed", "failed", "dead"):
        assert getattr(other, name) == sum(getattr(r, name) for r in rest), name
    assert other.wait.counts == tuple(map(sum, zip(*(r.wait.counts for r in rest), strict=True)))
    assert other.run.count == sum(r.run.count for r in rest)
    assert sum(r.ready for r in top.all_tenant_rows()) == top.ready
    # a bounded scan of the remaining tenants: the critical count becomes a lower bound
    coarse = collect_metrics(q, 5, other_scan_limit=3)
    assert coarse.other is not None and not coarse.other.exact_lanes
    assert coarse.other.critical <= other.critical and coarse.other.ready == other.ready


def test_workers_busy_slots_current_tasks_and_counts(make_config: Any) -> None:
    config = make_config(workers=WORKERS, lease_timeout_seconds=30)
    q = TaskQueue(config)
    q.push(t.record("slow", sleep=1.0), user_id="a")
    with running_worker(config, "w1"):
        def busy() -> Any:
            w = collect_metrics(q).workers[0]
            return w if w.busy_slots == 1 else None

        w1 = eventually(busy, what="w1 running the task")
        assert w1.worker_id == "w1" and w1.alive and w1.slots == 2 and w1.configured
        assert w1.current[0]["user"] == "a" and w1.heartbeat_age is not None and w1.heartbeat_age < 1.0
        assert w1.host and w1.pid
        eventually(lambda: collect_metrics(q).workers[0].processed == 1, what="processed count")
    rows = {w.worker_id: w for w in collect_metrics(q).workers}
    # stopped cleanly: down at once, with the time it was last seen; w2 never ran
    assert rows["w1"].status == "down" and rows["w1"].heartbeat_age is not None and rows["w1"].busy_slots == 0
    assert rows["w2"].status == "never seen" and not rows["w2"].alive and rows["w2"].heartbeat_age is None


def test_trim_throughput_and_the_worker_heartbeat_trims(make_config: Any) -> None:
    config = make_config(workers=WORKERS, lease_timeout_seconds=30)
    q = TaskQueue(config)
    clock = Clock(time.time())  # the worker below trims by the real clock: start from it
    now_min = clock.now_ms() // 60_000
    key = q.keys.metrics_throughput
    q.client.hset(key, mapping={str(now_min): 5, str(now_min - 119): 1, str(now_min - 121): 7,
                                str(now_min - 500): 9})
    assert trim_throughput(q.client, q.keys, now_ms=clock.now_ms()) == 2
    assert sorted(int(f) for f in q.client.hkeys(key)) == [now_min - 119, now_min]
    q.client.hset(key, str(now_min - 300), 3)  # e.g. written by a worker long ago
    with running_worker(config, "w1"):
        eventually(lambda: not q.client.hexists(key, str(now_min - 300)), what="heartbeat trim")
    assert q.client.hget(key, str(now_min)) == b"5"


def test_counter_windows_from_shared_snapshots(q: TaskQueue) -> None:
    first = collect_metrics(q, windows=(0.5,), sample_interval=0.2)
    assert first.windows == {}  # no snapshot old enough yet
    assert q.client.zcard(q.keys.samples) == 1  # the one set of snapshots, shared by every reader
    for _ in range(3):
        push(q, "a")
    for _ in range(3):
        task = q.pop("w1")
        assert task is not None
        q.complete(task)
    later = eventually(lambda: (m := collect_metrics(q, windows=(0.5,), sample_interval=0.2)).windows.get(0.5)
                       and m.windows[0.5].seconds >= 0.5 and m, timeout=5, what="a snapshot 0.5 s old")
    window = later.windows[0.5]
    assert window["completed"] == 3 and window["pushed"] == 3 and window["failed"] == 0
    assert window.seconds >= 0.5


def test_history_points_store_depth_and_median_wait(q: TaskQueue) -> None:
    push(q, "a")
    assert record_history(q, collect_metrics(q), interval=0.1)
    assert not record_history(q, collect_metrics(q), interval=0.1)  # at most one per interval
    eventually(lambda: not q.client.exists(q.keys.guard(q.keys.history)), timeout=5, interval=0.01,
               what="the end of the history interval")
    task = q.pop("w1")
    assert task is not None
    q.complete(task)  # its wait is observed when the attempt ends
    push(q, "a")
    push(q, "a")
    assert record_history(q, collect_metrics(q), interval=0.1)
    points = load_history(q)
    assert len(points) == 2
    assert points[0]["tenants"]["a"] == {"ready": 1, "wait_p50_ms": None}
    assert points[1]["tenants"]["a"]["ready"] == 2
    assert points[1]["tenants"]["a"]["wait_p50_ms"] is not None  # the one task run in between
    for _ in range(70):  # bounded: at most 61 points kept
        q.client.delete(q.keys.guard(q.keys.history))
        record_history(q, collect_metrics(q), interval=60)
    assert q.client.zcard(q.keys.history) <= 61


# --- fairque_stats ------------------------------------------------------------------------
@pytest.fixture
def django_queue(redis_client: redis.Redis) -> Iterator[TaskQueue]:
    conf.install_providers()
    conf.reset()
    yield conf.get_queue()
    conf.reset()


def test_fairque_stats_json_has_metrics_and_text_has_percentiles(django_queue: TaskQueue) -> None:
    q = django_queue
    for _ in range(3):
        q.push(Task.create(user_id="user:1", payload={}))
    task = q.pop("worker-001")
    assert task is not None
    q.complete(task, duration=0.05)
    out = io.StringIO()
    call_command("fairque_stats", "--json", stdout=out)
    data = json.loads(out.getvalue())
    metrics = data["metrics"]
    assert metrics["tenants"][0]["tenant"] == "user:1" and metrics["tenants"][0]["depth"]["normal"] == 2
    assert metrics["tenants"][0]["run"]["count"] == 1 and metrics["throughput"]["last_hour"] == 1
    assert {w["worker_id"] for w in metrics["workers"]} == {"worker-001", "worker-002"}
    out = io.StringIO()
    call_command("fairque_stats", stdout=out)
    text = out.getvalue()
    assert "user:1: wait p50" in text and "run p50 38 ms, p95 49 ms (n=1)" in text


def test_a_key_of_the_wrong_type_does_not_hide_the_rest(q: TaskQueue) -> None:
    push(q, "a")
    push(q, "a")
    push(q, "b")
    q.client.delete(q.keys.critical("b"))
    q.client.set(q.keys.critical("b"), "corrupt")  # e.g. written by something else by mistake
    q.client.rpush(q.keys.metrics_all, "not a hash")
    m = collect_metrics(q)
    a, b = m.tenant("a"), m.tenant("b")
    assert a is not None and (a.normal, a.unfinished) == (2, 2)
    assert b is not None and (b.critical, b.normal) == (0, 1)
    assert m.wait.count == 0 and m.totals["pushed"] == 3


# --- a worker's metrics buffer (issue 17): the acks leave the histograms to the process -----------
@pytest.mark.parametrize("buffered", [False, True], ids=["per-ack", "buffered"])
def test_buffered_acks_write_the_same_histograms_once_flushed(q: TaskQueue, redis_client: redis.Redis,
                                                               buffered: bool) -> None:
    from fairque_django.core.scripts.buffered import BOUNDS_MS, MetricsBuffer

    assert BOUNDS_MS == BUCKETS_MS  # the buffer files observations in the buckets the readers use
    if buffered:
        q.metrics_buffer = MetricsBuffer(interval=3600)  # no tick during the test: one flush at the end
    for i in range(6):
        push(q, "a" if i % 3 else "b")
    task = q.pop("w1")
    waits: Counter[str] = Counter()
    codes = []
    while task is not None:
        waits[task.user_id or ""] += int(redis_client.hget(q.keys.task(task.task_id), "wt") or -1)
        code, task_next, _ = q.complete_and_pop(task, duration=0.12, worker_id="w1")
        codes.append(code)
        task = task_next
    assert codes == [1] * 6
    if buffered:  # nothing written yet; the flush writes it all in one call
        assert not redis_client.exists(q.keys.metrics_user("a"), q.keys.metrics_all, q.keys.metrics_throughput)
        assert q.flush_metrics() > 0 and q.flush_metrics() == 0
    assert q.metrics_buffer is None or not q.metrics_buffer.due()

    def hist(key: str, kind: str) -> tuple[int, int, int]:  # (observations, sum ms, in the (100, 250] bucket)
        h = {k.decode(): int(v) for k, v in redis_client.hgetall(key).items()}
        count = sum(v for k, v in h.items() if k.startswith(f"{kind}:") and k != f"{kind}:sum")
        return count, h.get(f"{kind}:sum", 0), h.get(f"{kind}:250", 0)

    for user, n in (("a", 4), ("b", 2)):
        assert hist(q.keys.metrics_user(user), "w")[:2] == (n, waits[user])
        assert hist(q.keys.metrics_user(user), "r") == (n, 120 * n, n)  # 120 ms: the (100, 250] bucket
    assert hist(q.keys.metrics_all, "w")[:2] == (6, sum(waits.values()))
    assert hist(q.keys.metrics_all, "r") == (6, 720, 6)
    assert sum(n for _, n in collect_metrics(q, 10).throughput_per_minute) == 6


def test_a_failed_flush_keeps_the_metrics_for_the_next(q: TaskQueue, redis_client: redis.Redis) -> None:
    from fairque_django.core.scripts.buffered import MetricsBuffer

    buffer = q.metrics_buffer = MetricsBuffer(interval=3600)
    push(q, "a")
    task = q.pop("w1")
    assert task is not None
    assert q.complete_and_pop(task, duration=0.01, worker_id="w1")[0] == 1
    redis_client.set(q.keys.metrics_user("a"), "a string, not a hash")  # moved aside by the flush, reported
    taken = buffer.take()
    buffer.restore(taken)  # (what a flush that raised does)
    assert buffer.take() == taken
    buffer.restore(taken)
    assert q.flush_metrics() == len(taken)
    assert redis_client.hget(q.keys.metrics_user("a"), "r:10") == b"1"
    assert int(redis_client.hget(q.keys.stats, "quarantined") or 0) == 1
