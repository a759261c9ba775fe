"""Per-tenant state that ends with the tenant's activity (issue 17): the retention sweep
(``TaskQueue.fold_idle_tenants``, ``fold_idle.lua``) folds the counters, histograms, run-time
average, spent rate bucket and finish tags of tenants idle longer than the window; totals stay,
active tenants and tenants within the window are untouched, and a tenant that comes back is
served at its fair place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.models import Task
from fairque_django.core.observe import collect_metrics
from fairque_django.core.observe.tenant import TenantView
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker.heartbeat import worker_health
from fairque_django.management.commands.fairque_stats import Command as StatsCommand
from fairque_django.management.commands.fairque_stats import collect
from tests.support import FAST, eventually, running_worker
from tests.testapp import tasks as t

WORKERS = [{"id": "w1", "assigned_users": ["*"], **FAST}]
TENANT_STATS = ("pushed", "completed", "failed", "dead", "cancelled")


def new(user: str, **kwargs: Any) -> Task:
    return Task.create(user_id=user, payload={}, **kwargs)


def drain(queue: TaskQueue, worker: str = "w1") -> list[str]:
    """Pop and acknowledge until nothing is ready; the users served, in order."""
    served = []
    while (task := queue.pop(worker)) is not None:
        queue.complete(task, duration=0.01)
        served.append(task.user_id or "")
    return served


def tenant_state(client: redis.Redis, queue: TaskQueue, user: str) -> dict[str, Any]:
    """Everything Redis keeps for ``user`` that the retention sweep is about (absent: not listed)."""
    k = queue.keys
    found: dict[str, Any] = {}
    stats = {f: client.hget(k.stats, f"u:{user}:{f}") for f in TENANT_STATS}
    found.update({f"stats u:{user}:{f}": v for f, v in stats.items() if v is not None})
    if client.exists(k.metrics_user(user)):
        found["histograms"] = client.hgetall(k.metrics_user(user))
    for name, key in (("runavg", k.runavg), ("trate", k.tenant_rate), ("tleased", k.tenant_leased)):
        if client.hexists(key, user):
            found[name] = client.hget(key, user)
    for part in ("w1", "w2", "~pool"):
        if client.hexists(k.vfinish(part), user):
            found[f"vfinish {part}"] = client.hget(k.vfinish(part), user)
    for name, key in (("idle", k.idle), ("live", k.live)):
        if client.zscore(key, user) is not None:
            found[name] = client.zscore(key, user)
    return found


def totals(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k.startswith("tasks_")}


def test_a_tenant_idle_past_the_window_is_folded_and_the_totals_stay(
        make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    """Every kind of per-tenant state (counters of each outcome, histograms, time-fairness average,
    rate bucket, finish tag) is gone after the sweep; the totals and the everyone histogram are not."""
    queue = TaskQueue(make_config(workers=WORKERS, fairness="time", default_max_retries=0,
                                  tenant_limits={"a": {"rate": "1000/s", "burst": 10}}))  # (no pop waits for a token)
    queue.push_batch([new("a"), new("a"), new("b")])
    later = new("b", delay_seconds=60)
    queue.push(later)
    task = queue.pop("w1")
    assert task is not None
    assert queue.fail(task, "boom") == "dead"
    drain(queue)
    assert queue.cancel(later.task_id)
    assert queue.purge_dlq() == 1  # (a dead task is not per-tenant state: it stays until deleted)
    before = queue.get_stats()
    all_hist = redis_client.hgetall(queue.keys.metrics_all)
    for user in "ab":
        state = tenant_state(redis_client, queue, user)
        assert "idle" in state and "histograms" in state and f"stats u:{user}:pushed" in state, state
        assert "live" not in state
    assert "trate" in tenant_state(redis_client, queue, "a") and "runavg" in tenant_state(redis_client, queue, "b")
    assert {"stats u:a:dead", "stats u:b:cancelled"} <= set(tenant_state(redis_client, queue, "a")) | set(
        tenant_state(redis_client, queue, "b"))

    result = queue.fold_idle_tenants(window_seconds=0)

    assert (result.folded, result.kept, result.back, result.more, result.problems) == (2, 0, 0, False, ())
    assert tenant_state(redis_client, queue, "a") == {} and tenant_state(redis_client, queue, "b") == {}
    after = queue.get_stats()
    assert totals(after) == totals(before) and after["priorities"] == before["priorities"]
    assert after["users"] == {} and set(before["users"]) == {"a", "b"}
    assert redis_client.hgetall(queue.keys.metrics_all) == all_hist
    assert queue.fold_idle_tenants(window_seconds=0).folded == 0  # nothing left to fold


def test_active_tenants_and_tenants_within_the_window_are_untouched(
        make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    queue = TaskQueue(make_config(workers=WORKERS))
    queue.push_batch([new("a"), new("b"), new("c")])
    drain(queue)  # a, b, c idle now
    queue.push(new("a"))  # a is back (still listed idle: the sweep finds it live)
    queue.push(new("c", delay_seconds=60))  # c is back, with a delayed task
    state = {u: tenant_state(redis_client, queue, u) for u in "abc"}

    assert {state[u]["idle"] for u in "abc"} == {0.0}  # marked, not stamped yet

    within = queue.fold_idle_tenants(window_seconds=60)  # b went idle less than a minute ago
    assert (within.folded, within.kept, within.back) == (0, 0, 0)
    now = {u: tenant_state(redis_client, queue, u) for u in "abc"}
    assert {u: now[u].pop("idle") > 0 for u in "abc"} == dict.fromkeys("abc", True)  # stamped by the sweep
    assert now == {u: {k: v for k, v in state[u].items() if k != "idle"} for u in "abc"}

    result = queue.fold_idle_tenants(window_seconds=0)
    assert (result.folded, result.kept, result.back) == (1, 0, 2)
    assert tenant_state(redis_client, queue, "b") == {}
    for user in "ac":  # active: everything kept but the idle mark
        assert tenant_state(redis_client, queue, user) == {k: v for k, v in state[user].items() if k != "idle"}
    assert queue.get_stats()["users"]["a"] == {"pushed": 2, "completed": 1}


def test_a_finish_tag_ahead_of_its_rotation_is_kept_so_the_tenant_comes_back_behind_others(
        make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    """a is served, then b (ready since) is still at the old round: a's tag is ahead of the
    rotation, so the sweep keeps it and a, back, is not served before b's turn."""
    queue = TaskQueue(make_config(workers=WORKERS))
    queue.push_batch([new("a"), *[new("b") for _ in range(3)]])
    task = queue.pop("w1")
    assert task is not None and task.user_id == "a"
    queue.complete(task)  # a idle, its tag 1; b's turn is at 0

    result = queue.fold_idle_tenants(window_seconds=0)
    assert (result.folded, result.kept) == (0, 1)
    state = tenant_state(redis_client, queue, "a")
    assert "vfinish w1" in state and "histograms" not in state and "stats u:a:pushed" not in state, state

    queue.push(new("a"))
    assert drain(queue) == ["b", "a", "b", "b"]  # at 1 a and b tie (a sorts first), then b alone
    assert queue.fold_idle_tenants(window_seconds=0).folded == 2  # caught up: both folded now
    assert tenant_state(redis_client, queue, "a") == {} == tenant_state(redis_client, queue, "b")


def test_a_tag_forgotten_in_an_empty_rotation_moves_the_clock_so_the_tenant_does_not_jump_ahead(
        make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    """z and c were each served once (tags 1, the rotation then empty); only z is folded. Back
    together, z must not start before c (which kept its tag): the partition clock moved up to z's
    forgotten tag, so both start at 1 (a tie, c sorts first). A new tenant starts there too."""
    queue = TaskQueue(make_config(workers=WORKERS))
    queue.push(new("z"))
    assert drain(queue) == ["z"]
    assert queue.fold_idle_tenants(window_seconds=0.2).folded == 0  # z's idle mark stamped: its window starts
    time.sleep(0.3)  # z idle 0.3 s longer than c: a 0.2 s window takes z only
    queue.push(new("c"))
    assert drain(queue) == ["c"]

    result = queue.fold_idle_tenants(window_seconds=0.2)
    assert (result.folded, result.kept) == (1, 0)
    assert tenant_state(redis_client, queue, "z") == {} and "vfinish w1" in tenant_state(redis_client, queue, "c")

    queue.push_batch([new("z"), new("z"), new("c"), new("n")])
    assert drain(queue) == ["c", "n", "z", "z"]  # all at 1: by name; z's second at 2


def test_reads_after_folding(make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    """get_stats, the dashboard snapshot and the stats command read a queue with folded tenants."""
    queue = TaskQueue(make_config(workers=WORKERS))
    queue.push_batch([new(f"t{i}") for i in range(20)])
    drain(queue)
    assert queue.fold_idle_tenants(window_seconds=0).folded == 20
    queue.push_batch([new("busy"), new("busy")])
    stats = queue.get_stats()
    assert stats["tasks_completed"] == 20 and stats["tasks_pending"] == 2 and list(stats["users"]) == ["busy"]
    metrics = collect_metrics(queue, 10)
    assert [row.tenant for row in metrics.tenants] == ["busy"] and metrics.totals["completed"] == 20
    assert metrics.wait.count == 20  # the everyone histogram keeps what the folded tenants observed
    data = collect(queue, 5)
    assert "busy" in StatsCommand().render(data)
    detail = TenantView(queue, "t3").detail()  # the admin's tenant page of a folded tenant
    assert (detail.ready, detail.delayed, detail.unfinished) == (0, 0, 0)


def test_two_workers_sweeping_at_once_fold_each_tenant_once(
        make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    queue = TaskQueue(make_config(workers=WORKERS))
    n = 300
    queue.push_batch([new(f"t{i}") for i in range(n)])
    drain(queue)
    results = []
    lock = threading.Lock()

    def sweep() -> None:
        mine = TaskQueue(queue.config)  # a client of its own, as each worker has
        result = mine.fold_idle_tenants(window_seconds=0, limit=7, max_calls=1000)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert sum(r.folded for r in results) == n and sum(r.kept for r in results) == 0
    assert redis_client.zcard(queue.keys.idle) == 0 and redis_client.keys(f"{queue.keys.base}:m:t*") == []
    assert [f for f in redis_client.hkeys(queue.keys.stats) if f.startswith(b"u:")] == []
    assert queue.get_stats()["tasks_completed"] == n


def test_workers_run_the_sweep_from_their_heartbeat(make_config: Callable[..., FairQueueConfig],
                                                    redis_client: redis.Redis) -> None:
    """With a short window two running workers fold the tenants they drained, and a tenant idle
    without a mark (since before an upgrade); with 0 nothing is folded."""
    config = make_config(workers=[{"id": "w1", "assigned_users": ["*"], **FAST}, {"id": "w2", **FAST}],
                         tenant_retention_seconds=0.5)
    queue = TaskQueue(config)
    queue.push(new("legacy"))
    assert drain(queue) == ["legacy"]
    redis_client.zrem(queue.keys.idle, "legacy")  # as before the upgrade: no mark
    queue.push_batch([t.add.create_task((1, 2), user_id=f"t{i}") for i in range(50)])
    with running_worker(config, "w1"), running_worker(config, "w2"):
        eventually(lambda: queue.get_stats()["tasks_completed"] == 51, timeout=20)  # (and legacy)
        eventually(lambda: redis_client.zcard(queue.keys.idle) == 0 and queue.get_stats()["users"] == {}, timeout=20)
    assert redis_client.keys(f"{queue.keys.base}:m:t*") == [] and tenant_state(redis_client, queue, "legacy") == {}

    keep = make_config(workers=[{"id": "w1", "assigned_users": ["*"], **FAST}], stats_prefix="keep",
                       tenant_retention_seconds=0)
    kept = TaskQueue(keep)
    kept.push_batch([t.add.create_task((1, 2), user_id=f"t{i}") for i in range(5)])
    with running_worker(keep, "w1"):
        eventually(lambda: kept.get_stats()["tasks_completed"] == 5, timeout=20)
        time.sleep(1.5)  # several heartbeats: none may fold anything
    assert len(kept.get_stats()["users"]) == 5 and kept.fold_idle_tenants().folded == 0
    assert kept.fold_idle_tenants(window_seconds=0).folded == 5  # (asked explicitly, it still can)


def test_an_idle_set_of_the_wrong_type_is_moved_aside(make_config: Callable[..., FairQueueConfig],
                                                      redis_client: redis.Redis) -> None:
    """The end of a tenant's last task moves a P:idle that is no sorted set aside (data kept) and
    marks the tenant in a fresh one; the sweep then folds it."""
    queue = TaskQueue(make_config(workers=WORKERS))
    redis_client.set(queue.keys.idle, "junk")
    queue.push(new("a"))
    assert drain(queue) == ["a"]
    assert queue.get_stats()["tasks_quarantined"] == 1
    assert [redis_client.get(k) for k in redis_client.keys(f"{queue.keys.base}:quarantine:*")] == [b"junk"]
    assert queue.fold_idle_tenants(window_seconds=0).folded == 1
    assert tenant_state(redis_client, queue, "a") == {}


def test_tenants_idle_since_before_the_sweep_are_marked_then_folded(
        make_config: Callable[..., FairQueueConfig], redis_client: redis.Redis) -> None:
    """A tenant that went idle without a mark (before an upgrade) is marked by mark_idle_tenants
    (which workers run once when they start); a live tenant and a marked one keep their marks."""
    queue = TaskQueue(make_config(workers=WORKERS))
    queue.push_batch([new("old"), new("recent"), new("busy")])
    drain(queue)
    queue.push(new("busy"))
    redis_client.zrem(queue.keys.idle, "old", "busy")  # as before the upgrade: no mark
    recent_mark = redis_client.zscore(queue.keys.idle, "recent")
    assert queue.mark_idle_tenants() == (1, 0)  # (one page: the scan is complete, cursor 0)
    assert redis_client.zscore(queue.keys.idle, "old") is not None
    assert redis_client.zscore(queue.keys.idle, "recent") == recent_mark  # kept, not moved
    assert redis_client.zscore(queue.keys.idle, "busy") is None
    assert queue.mark_idle_tenants(pages=1) == (0, 0)
    result = queue.fold_idle_tenants(window_seconds=0)
    assert (result.folded, result.back) == (2, 0)
    assert tenant_state(redis_client, queue, "old") == {} and "stats u:busy:pushed" in tenant_state(
        redis_client, queue, "busy")


def test_a_sweep_that_raises_does_not_stop_the_heartbeat(make_config: Callable[..., FairQueueConfig],
                                                         redis_client: redis.Redis,
                                                         monkeypatch: Any) -> None:
    """An unexpected error in the heartbeat's housekeeping (here the retention sweep) is logged and
    the beats go on: the worker stays alive and keeps its leases."""
    config = make_config(workers=[{"id": "w1", "assigned_users": ["*"], **FAST}], tenant_retention_seconds=0.5)
    queue = TaskQueue(config)
    calls: list[int] = []

    def broken(self: TaskQueue, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise ValueError("a reply of an unexpected shape")

    monkeypatch.setattr(TaskQueue, "fold_idle_tenants", broken)
    with running_worker(config, "w1"):
        eventually(lambda: len(calls) >= 2, timeout=20, what="the sweep ran (and raised) twice")
        first = worker_health(queue, "w1")
        assert first is not None
        eventually(lambda: (worker_health(queue, "w1") or {}).get("last_seen", 0) > first["last_seen"], timeout=10,
                   what="beats after the failures")
        queue.push(t.add.create_task((1, 2), user_id="after"))
        eventually(lambda: queue.get_stats()["tasks_completed"] == 1, timeout=10, what="the worker still serves")
