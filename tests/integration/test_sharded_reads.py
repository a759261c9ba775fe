"""The read side over keyspace shards (``queue.shards`` > 1): the snapshot, the dead-letter queue
pages, the tenant view, the chart points and alert states read every shard (or the home keys) and
merge. Ground truth is read shard by shard with plain ``TaskQueue(config, shard=i)`` queues; the
sharded queue is ``tests/support/sharded.py``'s stand-in (what the readers need of the facade)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.client import Pipeline
from redis.cluster import RedisCluster

from fairque_django.core.models import Priority, Task
from fairque_django.core.observe import (
    DeadLetters,
    Histogram,
    TenantMetrics,
    TenantView,
    collect_metrics,
    health_status,
    light_snapshot,
    load_history,
    mark_stopped,
    record_history,
)
from fairque_django.core.observe.alerts import AlertTracker
from fairque_django.core.observe.fanout import shard_index_of, split_limit
from fairque_django.core.queue import TaskQueue
from fairque_django.core.sharded import ShardedTaskQueue
from fairque_django.prometheus import render
from tests.support.sharded import ShardedReadsStandIn, users_per_shard

SHARDS = 4
WORKERS = [{"id": "w1", "assigned_users": ["*"]}]
ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, RuntimeError)


@pytest.fixture
def sq(make_config: Callable[..., Any]) -> ShardedReadsStandIn:
    return ShardedReadsStandIn(make_config(workers=WORKERS, worker_id="w1", shards=SHARDS,
                                           lease_timeout_seconds=30))


@pytest.fixture
def users(sq: ShardedReadsStandIn) -> list[list[str]]:
    return users_per_shard(sq.shard_map, 3)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many pipelines were executed (each one round trip on a single Redis)."""
    seen: list[int] = []
    original = Pipeline.execute

    def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        seen.append(len(self))
        return original(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", execute)
    yield seen


def push(q: TaskQueue, user: str, n: int = 1, priority: Priority = Priority.NORMAL) -> list[str]:
    ids = []
    for i in range(n):
        task = Task.create(user_id=user, priority=priority, payload={"u": user, "i": i})
        assert q.push(task)["success"]
        ids.append(task.task_id)
    return ids


def fill(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    """Different amounts of work per shard: queued (both lanes), leased, completed, dead."""
    for shard, names in enumerate(users):
        q = sq.shard_queues[shard]
        for k, user in enumerate(names):
            push(q, user, 2 + shard + 3 * k)
            push(q, user, 1 + k, Priority.CRITICAL)
        done = q.pop_many(2 + shard, "w1")
        q.complete_and_pop_many([(t, 0.01 * (shard + 1), None) for t in done], 0)
        for i, task in enumerate(q.pop_many(1 + shard % 2, "w1")):
            assert q.fail(task, ERRORS[(shard + i) % 3]("boom"), retry=False) == "dead"
        q.pop_many(1, "w1")  # one leased task per shard


def same(a: TenantMetrics, b: TenantMetrics) -> bool:
    """Equal rows but for the heads' ages (read at two moments)."""
    return replace(a, oldest_critical_seconds=None, oldest_normal_seconds=None) == replace(
        b, oldest_critical_seconds=None, oldest_normal_seconds=None)


def add_hist(rows: list[Histogram]) -> Histogram:
    total = Histogram()
    for h in rows:
        total += h
    return total


def test_one_shard_reads_in_the_same_three_round_trips(make_config: Callable[..., Any],
                                                       round_trips: list[int]) -> None:
    q = TaskQueue(make_config(workers=WORKERS, worker_id="w1"))
    assert q.shard_queues == (q,) and q.home_queue is q
    push(q, "a", 3)
    round_trips.clear()
    collect_metrics(q, 10, windows=(60,))
    assert len(round_trips) == 3


def test_several_shards_on_one_redis_still_read_in_three_round_trips(sq: ShardedReadsStandIn,
                                                                     users: list[list[str]],
                                                                     round_trips: list[int]) -> None:
    fill(sq, users)
    round_trips.clear()
    collect_metrics(sq, 10, windows=(60,))
    assert len(round_trips) == 3  # one pipeline per trip holds every shard's section


def test_the_snapshot_sums_every_shard(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    fill(sq, users)
    merged = collect_metrics(sq, 50, record_sample=False)
    parts = [collect_metrics(q, 50, record_sample=False) for q in sq.shard_queues]
    assert all(p.tenants_with_work == 3 for p in parts)
    for name in ("pushed", "completed", "failed", "dead"):
        assert merged.totals[name] == sum(p.totals[name] for p in parts) > 0
    for name in ("ready", "delayed", "leased", "dlq_size", "tenants_with_work", "leases_scanned"):
        assert getattr(merged, name) == sum(getattr(p, name) for p in parts), name
    assert merged.leased == SHARDS and merged.dlq_size == sum(1 + s % 2 for s in range(SHARDS))
    stats = [q.get_stats() for q in sq.shard_queues]
    for key in ("tasks_pushed", "tasks_completed", "tasks_active", "tasks_queued", "dlq_size", "tasks_pending"):
        assert merged.stats()[key] == sum(s[key] for s in stats), key
    assert merged.wait == add_hist([p.wait for p in parts]) and merged.wait.count > 0
    assert merged.run == add_hist([p.run for p in parts]) and merged.run.count == merged.totals["completed"]
    assert sum(n for _, n in merged.throughput_per_minute) == merged.totals["completed"]
    # per-tenant rows: the union (a tenant lives in one shard), most unfinished work first
    by_tenant = {r.tenant: r for p in parts for r in p.tenants}
    assert {r.tenant for r in merged.tenants} == set(by_tenant) == {u for names in users for u in names}
    assert [r.unfinished for r in merged.tenants] == sorted((r.unfinished for r in merged.tenants), reverse=True)
    for row in merged.tenants:
        assert same(row, by_tenant[row.tenant])
        assert (row.oldest_critical_seconds is None) == (row.critical == 0)
        assert (row.oldest_normal_seconds is None) == (row.normal == 0)
    assert merged.other is None and merged.problems == []


def test_top_n_across_shards_and_other_adds_up(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    fill(sq, users)
    everyone = {r.tenant: r for q in sq.shard_queues for r in collect_metrics(q, 50, record_sample=False).tenants}
    merged = collect_metrics(sq, 4, record_sample=False)
    want = sorted(everyone.values(), key=lambda r: -r.unfinished)[:4]
    assert sorted(r.unfinished for r in merged.tenants) == sorted(r.unfinished for r in want)
    assert all(same(r, everyone[r.tenant]) for r in merged.tenants)
    other = merged.other
    assert other is not None and other.tenants == len(everyone) - 4 and other.exact_lanes
    rest = [r for t, r in everyone.items() if t not in {m.tenant for m in merged.tenants}]
    assert other.unfinished == sum(r.unfinished for r in rest)
    assert other.critical == sum(r.critical for r in rest)  # read per shard, past each shard's top
    assert other.normal == sum(r.normal for r in rest)
    assert other.completed == sum(r.completed for r in rest)
    assert other.wait == add_hist([r.wait for r in rest])


def test_workers_samples_and_windows_come_from_the_home_keys(sq: ShardedReadsStandIn, users: list[list[str]],
                                                             redis_client: redis.Redis) -> None:
    fill(sq, users)
    prefix = sq.config.queue.stats_prefix
    mark_stopped(sq.client, sq.home_queue.keys, "w1")
    first = collect_metrics(sq, 5, windows=(60,), sample_interval=0.001)
    w1 = first.worker("w1")
    assert w1 is not None and w1.status == "down"
    samples = redis_client.zrange(f"{{{prefix}}}:admin:samples", 0, -1)
    assert len(samples) == 1 and json.loads(samples[0])["pushed"] == first.totals["pushed"]
    assert not any(redis_client.exists(f"{{{prefix}:{n}}}:admin:samples") for n in range(SHARDS))
    push(sq.shard_queues[2], users[2][0], 5)
    second = collect_metrics(sq, 5, windows=(60,), sample_interval=0.001)
    assert second.windows[60.0]["pushed"] == 5


def test_the_health_probe_counts_every_shard(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    fill(sq, users)
    ok, body = health_status(sq)
    assert not ok and body["redis"] and body["dlq_size"] == sum(q.dlq_size() for q in sq.shard_queues) > 0
    assert light_snapshot(sq).ready == sum(q.get_stats()["tasks_queued"] for q in sq.shard_queues)


def test_record_and_load_history_and_alert_states_use_the_home_keys(sq: ShardedReadsStandIn,
                                                                    users: list[list[str]],
                                                                    redis_client: redis.Redis) -> None:
    fill(sq, users)
    prefix = sq.config.queue.stats_prefix
    metrics = collect_metrics(sq, 8, record_sample=False)
    assert record_history(sq, metrics)
    assert redis_client.zcard(f"{{{prefix}}}:m:history") == 1
    points = load_history(sq, now=metrics.timestamp + 1)
    assert len(points) == 1 and set(points[0]["tenants"]) == {r.tenant for r in metrics.tenants[:8]}
    assert AlertTracker(sq).key == f"{{{prefix}}}:alerts"


def test_stalled_tenants_are_found_in_every_shard(sq: ShardedReadsStandIn, users: list[list[str]],
                                                  redis_client: redis.Redis) -> None:
    for shard in (1, 3):
        q = sq.shard_queues[shard]
        push(q, users[shard][0], 2)
        assert redis_client.zrem(q.keys.ready("w1"), users[shard][0])  # out of its rotation: stalled
    push(sq.shard_queues[0], users[0][0], 1)
    metrics = collect_metrics(sq, 0)
    assert sorted(s.tenant for s in metrics.stalled) == sorted([users[1][0], users[3][0]])
    assert all(s.ready == 2 for s in metrics.stalled)


def test_starved_partitions_merge_the_shards_ready_sets(make_config: Callable[..., Any]) -> None:
    config = make_config(workers=[{"id": "w1", "assigned_users": ["org:*"]}, {"id": "w2", "assigned_users": ["x"]}],
                         worker_id="w1", shards=SHARDS)
    sq = ShardedReadsStandIn(config)
    users = users_per_shard(sq.shard_map, 2)
    for shard, names in enumerate(users):
        for user in names:
            push(sq.shard_queues[shard], user)
    metrics = collect_metrics(sq, 0)  # no worker ever ran: w1's partition waits for it
    starved = {p.partition: p for p in metrics.starved}
    assert starved["w1"].waiting == 2 * SHARDS
    assert sorted(starved["w1"].tenants) == sorted(u for names in users for u in names)


def test_prometheus_exposition_sums_the_shards(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    fill(sq, users)
    body = render(collect_metrics(sq, 3, record_sample=False)).decode()
    stats = [q.get_stats() for q in sq.shard_queues]

    def sample(line_start: str) -> float:
        return float(next(line for line in body.splitlines() if line.startswith(line_start)).rsplit(" ", 1)[1])

    assert sample('fairque_tasks_total{event="pushed"}') == sum(s["tasks_pushed"] for s in stats)
    assert sample('fairque_tasks_total{event="completed"}') == sum(s["tasks_completed"] for s in stats)
    assert sample("fairque_dlq_size ") == sum(s["dlq_size"] for s in stats)
    assert sample('fairque_queue_depth{lane="leased"}') == SHARDS
    assert sample("fairque_tenants_with_work ") == 3 * SHARDS
    assert sample("fairque_other_tenants ") == 3 * SHARDS - 3
    # each shard's part, labelled by shard, adds up to the merged series
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    depth = {(x.labels["shard"], x.labels["lane"]): x.value for x in fams["fairque_shard_queue_depth"].samples}
    tenants = {x.labels["shard"]: x.value for x in fams["fairque_shard_tenants_with_work"].samples}
    assert len(depth) == 3 * SHARDS and len(tenants) == SHARDS
    for shard, s in enumerate(stats):
        assert depth[str(shard), "ready"] == s["tasks_queued"] > 0
        assert depth[str(shard), "delayed"] == s["tasks_delayed"]
        assert depth[str(shard), "leased"] == s["tasks_active"] == 1
        assert tenants[str(shard)] == 3
    assert len({s["tasks_queued"] for s in stats}) == SHARDS  # (fill: a different amount in each shard)
    assert sample('fairque_queue_depth{lane="ready"}') == sum(s["tasks_queued"] for s in stats)


def test_one_shard_has_no_per_shard_series(make_config: Callable[..., Any]) -> None:
    q = TaskQueue(make_config(workers=WORKERS, worker_id="w1"))
    push(q, "a", 3)
    metrics = collect_metrics(q, 3, record_sample=False)
    body = render(metrics).decode()
    assert metrics.shards == [] and "fairque_shard_" not in body
    assert 'fairque_queue_depth{lane="ready"} 3.0' in body.splitlines()


# --------------------------------------------------------------------------- dead-letter queue

def dead_everywhere(sq: ShardedReadsStandIn, users: list[list[str]], per_shard: tuple[int, ...]) -> list[str]:
    """Dead tasks in each shard (``per_shard[i]`` of them), error types by turn; the ground truth:
    every dead id in death-time order, newest first (ties: id descending)."""
    for shard, n in enumerate(per_shard):
        q = sq.shard_queues[shard]
        for i in range(n):
            push(q, users[shard][i % len(users[shard])])
        for i, task in enumerate(q.pop_many(n, "w1")):
            assert q.fail(task, ERRORS[i % 3]("boom"), retry=False) == "dead"
    rows = [(score, member.decode()) for q in sq.shard_queues
            for member, score in q.client.zrange(q.keys.dlq, 0, -1, withscores=True)]
    return [task_id for _, task_id in sorted(rows, reverse=True)]


def test_dlq_pages_list_every_dead_task_once_in_death_time_order(sq: ShardedReadsStandIn,
                                                                 users: list[list[str]]) -> None:
    truth = dead_everywhere(sq, users, (5, 0, 9, 3))
    dead = DeadLetters(sq)
    for limit in (1, 4, 7, 17, 50):
        seen: list[str] = []
        offset = 0
        while True:
            page = dead.page(offset, limit)
            assert page.total == page.dlq_size == len(truth) and page.exact and not page.filtered
            if not page.entries:
                break
            seen += [e.task_id for e in page.entries]
            offset += limit
        assert seen == truth, limit
    assert dead.page(len(truth) + 3, 5).entries == []
    entry = dead.page(len(truth) - 1, 5).entries[0]  # the oldest, read from the oldest end
    assert entry.task_id == truth[-1] and "boom" in entry.error and entry.user_id in {u for n in users for u in n}


def test_dlq_filters_search_facets_and_lookups_span_the_shards(sq: ShardedReadsStandIn,
                                                               users: list[list[str]]) -> None:
    truth = dead_everywhere(sq, users, (4, 2, 0, 6))
    dead = DeadLetters(sq)
    entries = {e.task_id: e for e in dead.page(0, 100).entries}
    assert list(entries) == truth
    by_type = Counter(e.error_type for e in entries.values())
    page = dead.page(0, 100, error_type="ValueError")
    assert page.filtered and page.exact and page.total == by_type["ValueError"]
    assert [e.task_id for e in page.entries] == [i for i in truth if entries[i].error_type == "ValueError"]
    user = users[3][1]
    page = dead.page(0, 100, user=user)
    assert [e.task_id for e in page.entries] == [i for i in truth if entries[i].user_id == user]
    assert page.total == 2 and page.exact and page.dlq_size == len(truth)
    assert page.scanned == 6  # only the user's shard was scanned
    target = next(i for i in truth if entries[i].user_id == users[1][0])
    page = dead.page(0, 10, search=target)
    assert [e.task_id for e in page.entries] == [target] and page.scanned == 1
    page = dead.page(0, 100, search=target[:3])
    assert target in [e.task_id for e in page.entries]
    facets = dead.facets()
    assert facets.dlq_size == facets.scanned == len(truth) and not facets.truncated
    assert dict(facets.error_types) == dict(by_type)
    assert dict(facets.users) == dict(Counter(e.user_id for e in entries.values()))
    found, missing = dead.dead_tasks([truth[-1], "nope", truth[0], truth[-1]])
    assert [e.task_id for e in found] == [truth[-1], truth[0]] and missing == ["nope"]
    one = dead.dead_task(truth[3])
    assert one is not None and one.task_id == truth[3]
    assert dead.dead_task("nope") is None


def test_dlq_filter_scan_limit_is_the_newest_of_the_merge(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    truth = dead_everywhere(sq, users, (3, 3, 3, 3))
    dead = DeadLetters(sq, scan_limit=5)
    page = dead.page(0, 100, error_type="ValueError")
    assert page.scanned == 5 and not page.exact
    newest = set(truth[:5])
    assert {e.task_id for e in page.entries} <= newest
    assert dead.facets().scanned == 5


# --------------------------------------------------------------------------- one tenant

def test_the_read_side_s_shard_of_a_tenant_is_the_sharded_queue_s_routing(make_config: Callable[..., Any],
                                                                           users: list[list[str]]) -> None:
    real = ShardedTaskQueue(make_config(workers=WORKERS, worker_id="w1", shards=SHARDS))
    for shard, names in enumerate(users):
        for user in names:
            assert shard_index_of(real, user) == shard and real.queue_of(user) is real.shard_queues[shard]
    plain = TaskQueue(make_config(workers=WORKERS, worker_id="w1"))
    assert shard_index_of(plain, users[1][0]) == 0 and plain.shard_queues == (plain,)


def test_the_tenant_view_reads_the_tenant_s_shard(sq: ShardedReadsStandIn, users: list[list[str]]) -> None:
    fill(sq, users)
    for shard, names in enumerate(users):
        for user in names:
            view = TenantView(sq, user)
            assert view.shard == shard == sq.shard_map.of(user) and view.shards == SHARDS
            depth = sq.shard_queues[shard].user_depth(user)
            detail = view.detail()
            assert detail.depth["critical"] == depth["critical"]
            assert detail.ready == depth["critical"] + depth["normal"] > 0 and detail.unfinished == depth["live"]
            assert view.queued(0, 100).total == detail.ready
            assert all(t.state == "queued" for t in view.queued(0, 100).tasks)


def test_split_limit_shares_a_scan_among_the_shards() -> None:
    assert split_limit(10_000, 1) == 10_000 and split_limit(0, 12) == 0
    assert split_limit(10_000, 12) == 834 and split_limit(50, 12) == 5 and split_limit(1, 4) == 1


# --------------------------------------------------------------------------- on a Redis Cluster

def test_sharded_reads_on_a_cluster(cluster: RedisCluster, make_config: Callable[..., Any]) -> None:
    """On a cluster the transactions run per keyspace (one slot each), the other trips as one
    cluster pipeline; the figures are those of a single Redis."""
    config = make_config(workers=WORKERS, worker_id="w1", shards=SHARDS, stats_prefix=f"cs{time.monotonic_ns()}")
    sq = ShardedReadsStandIn(config, cluster)
    users = users_per_shard(sq.shard_map, 3)
    assert len({cluster.keyslot(q.keys.dlq) for q in sq.shard_queues}) == SHARDS
    fill(sq, users)
    merged = collect_metrics(sq, 50, windows=(60,))
    parts = [q.get_stats() for q in sq.shard_queues]
    assert merged.totals["pushed"] == sum(p["tasks_pushed"] for p in parts) > 0
    assert merged.dlq_size == sum(p["dlq_size"] for p in parts) and merged.leased == SHARDS
    assert merged.tenants_with_work == 3 * SHARDS
    truth = [e.task_id for e in DeadLetters(sq).page(0, 100).entries]
    assert len(truth) == merged.dlq_size
    assert [e.task_id for p in range(0, len(truth), 2) for e in DeadLetters(sq).page(p, 2).entries] == truth
    view = TenantView(sq, users[2][1])
    assert view.detail().ready == sq.shard_queues[2].user_depth(users[2][1])["critical"] + \
        sq.shard_queues[2].user_depth(users[2][1])["normal"]
    assert record_history(sq, merged) and load_history(sq)
