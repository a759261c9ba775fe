"""A sharded prefix (``queue.shards`` > 1) on one Redis: each tenant's keys in its shard, the queue's
operations routed and merged across shards, and a worker serving every shard fairly and promptly.

``EACH`` and ``OTHERS`` name one user per shard each (of 4, by the shard map: shard 0 is ``{fq}``).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from fairque_django import AsyncWorker, Task, Worker, xcom_pull, xcom_push
from fairque_django.core import shard_turns
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.errors import DependencyError, SerializationError
from fairque_django.core.keys import Keys
from fairque_django.core.ops import drive
from fairque_django.core.queue import TaskQueue
from fairque_django.core.results import CancelResult
from fairque_django.core.sharded import ShardedTaskQueue, merge_stats, open_queue
from fairque_django.core.shards import ShardMap
from fairque_django.core.transport import Transport
from tests.integration.test_worker import log, run_to_end, run_until
from tests.support import eventually
from tests.testapp import tasks as t

MAP = ShardMap("fq", 4)
_POOL = [*"abcdefghijklmnopqrstuvwxyz", *(f"u{i}" for i in range(200))]
EACH = [next(u for u in _POOL if MAP.of(u) == n) for n in range(4)]
OTHERS = [next(u for u in _POOL if MAP.of(u) == n and u not in EACH) for n in range(4)]


def tag(user: str) -> str:
    """The hash tag of ``user``'s shard."""
    return MAP.keys_of(user).base
FAST = {"poll_interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2, "graceful_shutdown_timeout": 2}


def sharded(make_config: Any, shards: int = 4, **queue: Any) -> FairQueueConfig:
    config: FairQueueConfig = make_config(
        workers=[{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 1, **FAST}], worker_id="w1",
        shards=shards, **queue)
    return config


@pytest.fixture
def q(make_config: Any) -> ShardedTaskQueue:
    queue = open_queue(sharded(make_config), worker_id="w1")
    assert isinstance(queue, ShardedTaskQueue)
    return queue


def pop_all(q: ShardedTaskQueue, count: int, worker_id: str | None = None, **kw: Any) -> list[Task]:
    """Every task ready for ``worker_id``: pops of ``count`` until one leases nothing."""
    got: list[Task] = []
    while batch := q.pop_many(count, worker_id, **kw):
        assert len(batch) <= count
        got += batch
    return got


def keys(client: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(count=1000))


def test_one_shard_is_a_plain_task_queue(make_config: Any) -> None:
    assert type(open_queue(make_config())) is TaskQueue


def test_the_sharded_queue_has_the_task_queue_s_operations() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
                if inspect.isfunction(member) and not name.startswith("_")}

    sync, sharded_ = public(TaskQueue), public(ShardedTaskQueue)
    assert sorted(sync) == sorted(set(sharded_) - {"queue_of"})
    for name, signature in sync.items():
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in sharded_[name].parameters.values()], name
    assert not hasattr(ShardedTaskQueue, "keys")  # code reading it would read the wrong shard


def test_each_tenant_s_keys_live_in_its_shard(q: ShardedTaskQueue, redis_client: redis.Redis) -> None:
    ids = {u: q.push(Task.create(user_id=u, payload={}))["task_id"] for u in EACH + OTHERS}
    found = keys(redis_client)
    for user, task_id in ids.items():
        assert f"{tag(user)}:t:{task_id}" in found
        assert f"{tag(user)}:queue:user:{user}:p3" in found
        other = {MAP.keys[n].base for n in range(4)} - {tag(user)}
        assert not [k for k in found if k.startswith(tuple(other)) and (task_id in k or f":{user}:" in k)]
    assert "{fq}:wake:w1" in found  # the home wake list (shard 0's tag) the pushes left a token on
    assert {k.split("}")[0] + "}" for k in found} == {MAP.keys[n].base for n in range(4)}


def test_push_pop_ack_and_merged_stats(q: ShardedTaskQueue) -> None:
    for u in EACH:
        for i in range(3):
            q.push(Task.create(user_id=u, payload={"i": i}))
    got = q.pop_many(4)  # turns of the weighted rotation (ceil(4 / BATCH_SHARDS) = 1 task each): a task per shard
    assert len(got) == 4 and {x.user_id for x in got} == set(EACH)
    codes, more, _ = q.complete_and_pop_many([(x, 0.05, None) for x in got], 2)  # acks to four shards, one trip
    assert codes == [1] * 4 and len(more) == 2 and len({x.user_id for x in more}) == 2
    rest = pop_all(q, 4)
    assert len(got) + len(more) + len(rest) == 12
    assert q.release(more) == 2
    stats = q.get_stats()
    assert stats["tasks_pushed"] == 12 and stats["tasks_completed"] == 4
    assert stats["tasks_active"] == len(rest) and stats["tasks_queued"] == 2
    assert set(stats["users"]) == set(EACH) and all(s["pushed"] == 3 for s in stats["users"].values())
    assert sum(stats["priorities"].values()) == 12
    assert q.pushed_tenants() == sorted(EACH)
    assert q.extend(rest) == []
    assert sum(q.user_depth(u)["normal"] for u in EACH) == 2


def test_merge_stats_sums_numbers_and_merges_users() -> None:
    merged = merge_stats([{"tasks_pushed": 2, "users": {"a": {"pushed": 2}}, "priorities": {3: 2}, "problems": ["x"],
                           "timestamp": 1.0},
                          {"tasks_pushed": 5, "users": {"b": {"pushed": 5}}, "priorities": {3: 4, 6: 1},
                           "problems": [], "timestamp": 2.0}])
    assert merged == {"tasks_pushed": 7, "users": {"a": {"pushed": 2}, "b": {"pushed": 5}},
                      "priorities": {3: 6, 6: 1}, "problems": ["x"], "timestamp": 2.0}


def test_a_batch_is_all_or_nothing_across_shards(q: ShardedTaskQueue) -> None:
    good = [Task.create(user_id=u, payload={}) for u in EACH]
    bad = Task.create(user_id=OTHERS[3], payload={"x": object()})  # shard 3: its stream comes last
    with pytest.raises(SerializationError):
        q.push_batch([*good, bad])
    assert all(q.get_task_state(x.task_id) is None for x in good)
    assert q.get_stats()["tasks_queued"] == 0
    pushed = q.push_batch(good)
    assert sorted(pushed["task_ids"]) == sorted(x.task_id for x in good) and pushed["success"]
    assert q.push_batch(good, idempotent=True)["duplicates"] == [x.task_id for x in [good[0], good[1], good[2],
                                                                                      good[3]]]


def test_a_dependency_must_live_in_the_dependent_s_shard(q: ShardedTaskQueue) -> None:
    a, same_shard, other_shard = EACH[1], OTHERS[1], EACH[2]
    first = q.push(Task.create(user_id=a, payload={}))["task_id"]
    same = Task.create(user_id=same_shard, payload={}, depends_on=[(a, first)])
    assert q.push(same)["state"] == "waiting"
    other = Task.create(user_id=other_shard, payload={}, depends_on=[(a, first)])
    with pytest.raises(DependencyError, match="shard"):
        q.push(other)
    with pytest.raises(DependencyError, match="shard"):
        q.push_batch([other])
    assert q.get_task_state(other.task_id) is None


def test_the_dlq_pages_across_shards_by_time_of_death(q: ShardedTaskQueue) -> None:
    users = EACH + OTHERS
    for u in users:
        q.push(Task.create(user_id=u, payload={}))
    order = []
    while (task := q.pop()) is not None:
        assert q.fail(task, "boom", retry=False) == "dead"
        order.append(task.task_id)
        time.sleep(0.003)  # distinct times of death (ms)
    assert len(order) == len(users) and q.dlq_size() == len(users)
    newest = list(reversed(order))
    assert [e.task_id for e in q.get_dlq(0, 100)] == newest
    pages = [q.get_dlq(offset, 3) for offset in (0, 3, 6)]
    assert [e.task_id for page in pages for e in page] == newest
    assert [e.task_id for e in q.get_dlq(2, 3, newest_first=False)] == order[2:5]
    assert q.get_dead(order[4]) is not None and q.get_dead("nope") is None
    assert sorted(q.requeue_dead([order[0], order[1]])) == sorted(order[:2])
    assert q.dlq_size() == len(users) - 2
    assert q.delete_dead([order[2]]) == [order[2]]
    assert q.purge_dlq() == len(users) - 3 and q.dlq_size() == 0
    assert q.get_task_state(order[0])["st"] == "queued"  # type: ignore[index]


def test_results_xcom_and_progress_in_the_tenant_s_shard(q: ShardedTaskQueue, redis_client: redis.Redis) -> None:
    b, a = EACH[1], EACH[0]
    q.push(Task.create(user_id=b, payload={}))
    task = q.pop()
    assert task is not None and q.set_progress(task, 0.5, "half")
    q.store_result(task, {"status": "SUCCESSFUL", "return_value": 7})
    assert q.complete_code(task) == 1
    assert q.get_result(task.task_id, user_id=b) == {"status": "SUCCESSFUL", "return_value": 7}
    assert q.get_result(task.task_id, user_id=a) is None
    assert q.result(task.task_id, user_id=b).return_value == 7
    with q:
        xcom_push("k", {"v": 1}, user_id=b)
        assert xcom_pull("k", user_id=b) == {"v": 1}
        assert xcom_pull("k", user_id=a) is None
    found = keys(redis_client)
    assert any(k.startswith(f"{MAP.keys[1].base}:result:") for k in found)
    assert any(k.startswith(f"{MAP.keys[1].base}:") and ":xcom:" in k for k in found), found


def test_tenant_limits_pause_and_cancel_in_the_tenant_s_shard(q: ShardedTaskQueue) -> None:
    for u in "ab":
        for _ in range(2):
            q.push(Task.create(user_id=u, payload={}))
    assert q.pause_tenant("a")["paused"] and q.is_paused("a") and not q.is_paused("b")
    assert {x.user_id for x in q.pop_many(10)} == {"b"}
    assert q.set_tenant_limits("a", concurrency=1)["concurrency"] == 1
    q.resume_tenant("a")
    assert [x.user_id for x in q.pop_many(10)] == ["a"]  # its cap: one at a time
    assert q.get_tenant_limits("a")["leased"] == 1
    q.clear_tenant_limits("a")
    assert q.cancel_tenant("a") == {"cancelled": 1, "cancelling": 0}
    late = q.push(Task.create(user_id="e", payload={}))["task_id"]
    assert q.cancel(late) == CancelResult.CANCELLED  # found without a user: every shard is asked
    assert q.cancel("nope") == CancelResult.NOT_FOUND
    other = q.push(Task.create(user_id="d", payload={}))["task_id"]
    assert q.delete(other) == [other] and q.delete_task(other) is False


def test_delayed_tasks_and_expired_leases_of_every_shard(q: ShardedTaskQueue) -> None:
    for u in EACH:
        q.push(Task.create(user_id=u, payload={}, execute_after=time.time() + 0.3))
    task, due = q.pop_reply()
    assert task is None and due is not None and 0 < due <= 0.3
    assert q.next_delayed_seconds() is not None
    time.sleep(0.35)
    got = pop_all(q, 10, lease_seconds=0.2)
    assert sorted(x.user_id or "" for x in got) == sorted(EACH)  # every shard's promoted
    time.sleep(0.3)
    again = pop_all(q, 10)
    assert sorted(x.task_id for x in again) == sorted(x.task_id for x in got)  # every shard's recovered
    assert all(x.attempts == 2 for x in again)


def assert_pushes_wake_the_waiter(q: ShardedTaskQueue, users: Sequence[str]) -> None:
    """A push for each user (each in its shard) wakes an idle ``wait_and_pop`` at once."""
    assert q.wait_and_pop("w1", timeout=0.15) == (None, None)
    for user in users:
        pusher = threading.Timer(0.1, lambda u=user: q.push(Task.create(user_id=u, payload={})))
        started = time.monotonic()
        pusher.start()
        task, _ = q.wait_and_pop("w1", timeout=3.0)
        pusher.join()
        assert task is not None and task.user_id == user and time.monotonic() - started < 1.0
        q.complete(task)


def test_idle_wait_wakes_on_a_push_into_any_shard(q: ShardedTaskQueue) -> None:
    assert_pushes_wake_the_waiter(q, EACH)


def test_a_worker_drains_a_backlog_of_every_shard(make_config: Any, redis_client: redis.Redis) -> None:
    config = sharded(make_config)
    q = open_queue(config)
    for i in range(32):
        q.push(t.record(f"x{i}"), user_id=(EACH + OTHERS)[i % 8])
    q.push(t.always_fails("boom"), user_id=EACH[2])
    w = run_to_end(Worker(config, worker_id="w1", burst=True, concurrency=2, install_signal_handlers=False))
    assert isinstance(w.queue, ShardedTaskQueue) and not w.prefetch
    assert sorted(log(redis_client)) == sorted(f"{(EACH + OTHERS)[i % 8]}|x{i}" for i in range(32))
    stats = q.get_stats()
    assert stats["tasks_completed"] == 32 and stats["dlq_size"] == 1 and stats["tasks_active"] == 0


def test_the_cross_shard_share_of_a_worker(make_config: Any, redis_client: redis.Redis) -> None:
    """2 shards, one tenant alone in shard 1, three in shard 0: a worker's pops start
    at the shards in proportion to their tenants with ready work (1 and 3), so each tenant gets a
    quarter, as with one shard (plain rotation would give d a half and a, b, c a sixth each)."""
    config = sharded(make_config, shards=2)
    two = ShardMap("fq", 2)
    users = [next(u for u in _POOL if two.of(u) == 1), *[u for u in _POOL if two.of(u) == 0][:3]]
    q = open_queue(config)
    for i in range(30):
        for u in users:
            q.push(t.record(f"{u}{i}"), user_id=u)
    run_to_end(Worker(config, worker_id="w1", burst=True, max_tasks=48, install_signal_handlers=False))
    share = Counter(x.split("|")[0] for x in log(redis_client)[:48])
    assert all(11 <= share[u] <= 13 for u in users), share


def test_an_idle_worker_serves_delayed_tasks_and_pushes_of_every_shard(make_config: Any,
                                                                       redis_client: redis.Redis) -> None:
    config = sharded(make_config)
    serve_while_idle(Worker(config, worker_id="w1", concurrency=2, install_signal_handlers=False), config,
                     redis_client, idle=0.3)


def serve_while_idle(worker: Worker | AsyncWorker, config: FairQueueConfig, redis_client: redis.Redis, *,
                     idle: float) -> None:
    """Start ``worker`` and leave its slots idle for ``idle`` s (waiting on the home wake list); then push
    a task due in 0.5 s for each of ``EACH`` (one per shard) and a ready one for each of ``OTHERS``: the
    ready ones run at once, the delayed ones when due, each once."""
    q = open_queue(config)
    th = threading.Thread(target=worker.start)
    th.start()
    try:
        time.sleep(idle)
        for u in EACH:
            q.push(_delayed(f"later-{u}", 0.5), user_id=u)
        started = time.monotonic()
        for u in OTHERS:
            q.push(t.record(f"now-{u}"), user_id=u)
        eventually(lambda: len(log(redis_client)) >= 4, timeout=3, what="the pushes to run")
        assert time.monotonic() - started < 1.5
        eventually(lambda: len(log(redis_client)) == 8, timeout=5, what="the delayed tasks of every shard")
    finally:
        worker.stop()
        th.join(10)
    assert sorted(log(redis_client)) == sorted([f"{u}|later-{u}" for u in EACH] + [f"{u}|now-{u}" for u in OTHERS])


def _delayed(tag: str, seconds: float) -> Task:
    task = t.record(tag)
    task.execute_after = time.time() + seconds
    return task


# --- a Redis Cluster (three masters: tests/integration/test_cluster.py's fixture) -------------------
def _spread_prefix(cluster: RedisCluster, shards: int) -> str:
    """A fresh prefix whose shard tags land on every master (6 tags over 3 masters miss one ~1 time in 4)."""
    primaries = cluster.get_primaries()
    for n in range(1000):
        prefix = f"cs{time.monotonic_ns()}{n}"
        nodes = {cluster.nodes_manager.get_node_from_slot(cluster.keyslot(Keys(prefix, s).base)).name
                 for s in range(shards)}
        if len(nodes) == len(primaries):
            return prefix
    raise AssertionError("no prefix spreads over every master")


def cluster_config(prefix: str, shards: int) -> FairQueueConfig:
    return FairQueueConfig.from_dict({
        "workers": [{"id": "w1", "assigned_users": ["*"], **FAST}],
        "queue": {"stats_prefix": prefix, "shards": shards, "retry_backoff_base_seconds": 0.01},
    }, worker_id="w1")


def test_a_sharded_prefix_spreads_over_a_cluster(cluster: RedisCluster, redis_client: redis.Redis) -> None:
    prefix = _spread_prefix(cluster, 6)
    config = cluster_config(prefix, 6)
    q = open_queue(config, cluster)
    assert isinstance(q, ShardedTaskQueue)
    users = [f"t{i}" for i in range(12)]
    for i in range(60):
        q.push(t.record(f"x{i}"), user_id=users[i % 12])
    q.push(t.always_fails("boom"), user_id="t3")
    per_master = {node.name: len(redis.Redis(host=node.host, port=node.port).keys(f"{{{prefix}[}}:]*"))
                  for node in cluster.get_primaries()}
    assert len(per_master) == 3 and all(n > 0 for n in per_master.values()), per_master
    first, _ = q.wait_and_pop("w1", timeout=0.01)
    assert first is not None and q.release([first]) == 1
    run_to_end(Worker(config, worker_id="w1", queue=q, burst=True, concurrency=2, install_signal_handlers=False))
    stats = q.get_stats()
    assert stats["tasks_completed"] == 60 and stats["dlq_size"] == 1 and stats["tasks_active"] == 0
    assert [e.user_id for e in q.get_dlq()] == ["t3"]


def test_an_idle_wait_on_a_cluster_wakes_on_a_push_into_any_shard(cluster: RedisCluster) -> None:
    q = open_queue(cluster_config(_spread_prefix(cluster, 6), 6), cluster)
    assert isinstance(q, ShardedTaskQueue)
    assert_pushes_wake_the_waiter(q, ("t0", "t3", "t4", "t6"))  # BLPOP on the home wake list (one slot)


def test_a_burst_after_idle_wakes_every_idle_slot(make_config: Any, redis_client: redis.Redis) -> None:
    """One push of 8 tasks makes one tenant join (one wake-up token): each woken slot that leases a
    task passes the token on, so the 4 idle slots all work (8 x 0.3 s in ~0.6 s, not 2.4 s)."""
    config = make_config(workers=[{"id": "w1", "assigned_users": ["*"], "max_concurrent_tasks": 4,
                                   "poll_interval_seconds": 5.0, "heartbeat_interval_seconds": 0.5}],
                         worker_id="w1", shards=4)
    q = open_queue(config)
    w = Worker(config, worker_id="w1", install_signal_handlers=False, prefetch=False)
    th = threading.Thread(target=w.start)
    th.start()
    try:
        time.sleep(0.5)  # every slot idle, waiting on the home wake list (up to 5 s)
        started = time.monotonic()
        q.push_batch([t.record(f"x{i}", sleep=0.3) for i in range(8)], "b")
        eventually(lambda: len(log(redis_client)) == 8, timeout=5, what="the burst to run")
        assert time.monotonic() - started < 1.6
    finally:
        w.stop()
        th.join(10)


PARTITIONED = [
    {"id": "w1", "assigned_users": ["a:*"], "steal_targets": ["s:*"]},
    {"id": "w2", "assigned_users": ["b:*", "s:*"]},
]


def test_stealing_and_orphan_takeover_across_shards(make_config: Any) -> None:
    config = make_config(workers=PARTITIONED, shards=4)
    q = open_queue(config, worker_id="w1")
    assert isinstance(q, ShardedTaskQueue)
    for queue in q.shard_queues:
        queue.orphan_recheck_seconds = 0.0
    q.home_queue.orphan_recheck_seconds = 0.0
    stolen = [f"s:{i}" for i in range(8)]
    owned = [f"b:{i}" for i in range(8)]
    assert len({q.shard_map.of(u) for u in stolen}) > 1 and len({q.shard_map.of(u) for u in owned}) > 1
    q.push_batch([Task.create(user_id=u, payload={}) for u in stolen + owned])
    beat = q.home_queue.keys.beat
    q.client.set(beat("w1"), "1", px=60_000)
    q.client.set(beat("w2"), "1", px=60_000)
    got = pop_all(q, 32, "w1")
    assert sorted(x.user_id or "" for x in got) == sorted(stolen)  # stolen from every shard, b:* left to w2
    q.complete_and_pop_many([(x, None, None) for x in got], 0)
    q.client.delete(beat("w2"))  # w2 silent: w1 takes over its partition in every shard
    got = pop_all(q, 32, "w1")
    assert sorted(x.user_id or "" for x in got) == sorted(owned)
    assert q.get_stats()["tasks_orphan_served"] == 8


def test_a_rate_limit_holds_its_tenant_in_its_shard(q: ShardedTaskQueue) -> None:
    q.set_tenant_limits("b", rate="2/s")
    for _ in range(3):
        q.push(Task.create(user_id="b", payload={}))
    q.push(Task.create(user_id="e", payload={}))
    first = pop_all(q, 10)
    assert sorted(x.user_id or "" for x in first) == ["b", "e"]  # b's one token, e unlimited
    task, due = q.pop_reply()
    assert task is None and due is not None and 0 < due <= 0.5
    assert q.get_tenant_limits("b")["held"] == "rate"
    time.sleep(due + 0.05)
    assert [x.user_id for x in q.pop_many(10)] == ["b"]


def test_a_task_left_in_its_tenant_s_former_shard_is_served_and_acknowledged_there(make_config: Any) -> None:
    """After queue.shard_pins (or shards) changed and before fairque_shards --move: a worker pops every
    shard, and acknowledges, fails or releases a task in the shard it leased it from."""
    user = EACH[1]
    before = open_queue(sharded(make_config))
    ids = [before.push(Task.create(user_id=user, payload={}))["task_id"] for _ in range(3)]
    after = open_queue(sharded(make_config, shard_pins={user: 2}), worker_id="w1")
    assert isinstance(after, ShardedTaskQueue) and after.shard_map.of(user) == 2
    got = after.pop_many(3)
    assert sorted(x.task_id for x in got) == sorted(ids)
    assert after.extend(got) == []
    assert after.complete_code(got[0]) == 1
    assert after.fail(got[1], "boom", retry=False) == "dead"
    assert after.release([got[2]]) == 1
    stats = after.get_stats()
    assert stats["tasks_completed"] == 1 and stats["dlq_size"] == 1 and stats["tasks_queued"] == 1


def test_a_light_tenant_arriving_in_any_shard_is_served_within_a_round(make_config: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The noisy neighbour at small scale (issue 18, bench_cluster.py part B): 4 shards, a heavy
    tenant backlogged in shard 1, light tenants of the other shards trickling one task per pop of a
    slot leasing batches of 8. A batch is turns of the shards weighted by their tenants with ready
    work (one task a turn, the shards' calls in one round trip), so each light task is leased by
    the next pop; one-shard batches waited for a batch of heavy's and the other light tasks, and
    filling a batch from the shards after the start shard (index order) made the light tenants of
    shards 2, 3 and 0 wait for pops that start at their shard (~4 batches). The
    weights are read at every pop here (the refresh interval, 20 ms, is a time bound: see
    docs/operations.md)."""
    monkeypatch.setattr(shard_turns, "SHARE_REFRESH_SECONDS", 0.0)
    monkeypatch.setattr(shard_turns, "SHARE_READS_PER_SECOND", float("inf"))  # counts read at every pop
    q = open_queue(sharded(make_config), worker_id="w1")
    assert isinstance(q, ShardedTaskQueue)
    heavy = next(u for u in _POOL if MAP.of(u) == 1)
    lights = [u for n in (2, 3, 0) for u in [u for u in _POOL if MAP.of(u) == n][:2]]
    q.push_batch([Task.create(user_id=heavy, payload={"i": i}) for i in range(400)])
    leased = 0
    for _ in range(3):  # steady state: heavy's batches only
        leased += len(q.pop_many(8))
    pushed_at: dict[str, int] = {}  # task id -> tasks leased before its push
    waits: list[int] = []  # per light task: tasks leased (to anyone) from its push to its lease
    for i in range(36):
        light = lights[i % len(lights)]
        pushed_at[q.push(Task.create(user_id=light, payload={"i": i}))["task_id"]] = leased
        batch = q.pop_many(8)
        assert batch and len(batch) <= 8
        for x in batch:
            leased += 1
            if x.task_id in pushed_at:
                waits.append(leased - pushed_at.pop(x.task_id))
    while pushed_at and (batch := q.pop_many(8)):
        for x in batch:
            leased += 1
            if x.task_id in pushed_at:
                waits.append(leased - pushed_at.pop(x.task_id))
    assert not pushed_at and len(waits) == 36
    # a light task is leased by the next pop (its shard, just given ready work, has the next turn;
    # one-shard batches waited for up to a batch of heavy's and the other light tasks: 8 + 7)
    assert max(waits) <= 8, waits


def _count_round_trips(monkeypatch: pytest.MonkeyPatch, lose_first_reply: bool = False) -> list[int]:
    """Count the transports' round trips (each: its number of commands); with ``lose_first_reply`` the
    first one runs in Redis and its connection drops before the reply is read."""
    trips: list[int] = []
    real = Transport.round_trip

    def counting(self: Transport, commands: Any, **kw: Any) -> list[Any]:
        commands = list(commands)
        trips.append(len(commands))
        replies = real(self, commands, **kw)
        if lose_first_reply and len(trips) == 1:
            raise redis.ConnectionError("the reply was lost")
        return replies

    monkeypatch.setattr(Transport, "round_trip", counting)
    return trips


def _acks_and_pops_in_one_round_trip(q: ShardedTaskQueue, users: Sequence[str], monkeypatch: pytest.MonkeyPatch,
                                     ) -> None:
    for user in users:
        q.push_batch([Task.create(user_id=user, payload={"i": i}) for i in range(3)])
    got = [q.pop_many(1)[0] for _ in users]
    shards = {q.shard_map.of(x.user_id or "") for x in got}
    assert len(shards) >= 2, got
    q.turns.forget()  # the ready counts read now (outside the counted call)
    drive(q.transport, q.turns.weights("w1"))
    trips = _count_round_trips(monkeypatch)
    # (tasks of 50 ms: turns of one task each, ceil(4 / BATCH_SHARDS), so the 4 pops go to several shards)
    codes, more, due = q.complete_and_pop_many([(x, 0.05, None) for x in got], 4, worker_id="w1")
    assert codes == [1] * len(got) and len(more) == 4 and due is None
    assert len(trips) == 1, trips  # every shard's acks and pops: one pipeline
    assert q.get_stats()["tasks_completed"] == len(got)


def test_acks_to_several_shards_and_the_next_pops_go_in_one_round_trip(q: ShardedTaskQueue,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _acks_and_pops_in_one_round_trip(q, EACH, monkeypatch)


def test_on_a_cluster_acks_and_pops_of_several_masters_go_in_one_round_trip(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_queue(cluster_config(_spread_prefix(cluster, 6), 6), cluster, worker_id="w1")
    assert isinstance(q, ShardedTaskQueue)
    users = [next(u for u in _POOL if q.shard_map.of(u) == n) for n in range(6)]
    _acks_and_pops_in_one_round_trip(q, users, monkeypatch)


def test_a_reply_lost_in_the_shared_round_trip_is_asked_again_per_shard(q: ShardedTaskQueue,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The shards' calls went out together and the connection dropped before the replies: each shard's
    call is made again alone; the acks made by the lost attempt count as done (each task once)."""
    for user in EACH:
        q.push(Task.create(user_id=user, payload={}))
    got = [x for _ in EACH for x in q.pop_many(1)]
    assert len(got) == 4 and len({x.user_id for x in got}) == 4
    trips = _count_round_trips(monkeypatch, lose_first_reply=True)
    codes, more, _ = q.complete_and_pop_many([(x, 0.001, None) for x in got], 0, worker_id="w1")
    assert codes == [1, 1, 1, 1] and more == []
    assert trips[0] == 4 and len(trips) == 1 + 4  # the shared one, then each shard's call again
    stats = q.get_stats()
    assert stats["tasks_completed"] == 4 and stats["tasks_active"] == 0 and stats["tasks_queued"] == 0


@pytest.mark.parametrize(("run_seconds", "shards_asked"), [(0.0002, 1), (0.05, shard_turns.BATCH_SHARDS)])
def test_a_batch_of_tiny_tasks_comes_from_one_shard(make_config: Any, run_seconds: float, shards_asked: int) -> None:
    """The acks a pop carries say how long the slot's tasks run: a batch of 16 tasks of 0.2 ms (3 ms in
    all, under TURN_SECONDS' worth of turn) is one shard's, one script call; tasks of 50 ms still take
    turns of ceil(16 / BATCH_SHARDS) over that many shards."""
    q = open_queue(sharded(make_config, shards=8), worker_id="w1")
    assert isinstance(q, ShardedTaskQueue)
    smap = ShardMap("fq", 8)
    users = [next(u for u in _POOL if smap.of(u) == n) for n in range(8)]
    q.push_batch([Task.create(user_id=u, payload={}) for u in users for _ in range(40)])
    first = q.pop_many(1)
    shards_per_batch = []
    done = [(x, run_seconds, None) for x in first]
    for _ in range(4):
        codes, batch, _ = q.complete_and_pop_many(done, 16, worker_id="w1")
        assert all(code == 1 for code in codes) and len(batch) == 16
        shards_per_batch.append(len({smap.of(x.user_id or "") for x in batch}))
        done = [(x, run_seconds, None) for x in batch]
    assert shards_per_batch == [shards_asked] * 4, shards_per_batch
    assert shard_turns.turn_size(16, run_seconds) == (16 if shards_asked == 1 else 4)


def test_a_batch_asks_a_few_shards_and_the_turns_keep_the_shares(make_config: Any) -> None:
    """A batch of 16 over 8 shards with ready work: turns of ceil(16 / BATCH_SHARDS) tasks, so at most
    BATCH_SHARDS shards per round trip; over many batches each shard gets its share by its tenants."""
    q = open_queue(sharded(make_config, shards=8), worker_id="w1")
    assert isinstance(q, ShardedTaskQueue)
    smap = ShardMap("fq", 8)
    users = {n: [u for u in _POOL if smap.of(u) == n][: 2 if n == 0 else 1] for n in range(8)}
    q.push_batch([Task.create(user_id=u, payload={}) for us in users.values() for u in us for _ in range(60)])
    served: Counter[str] = Counter()
    for _ in range(9):
        batch = q.pop_many(16)
        assert len(batch) == 16
        assert len({smap.of(x.user_id or "") for x in batch}) <= shard_turns.BATCH_SHARDS
        served.update(x.user_id or "" for x in batch)
        q.release(batch, count=False)  # back to the queue: the backlogs stay
        q.turns.forget()  # the counts read again (the backlogs are the same)
    per_tenant = 9 * 16 / 9  # 144 tasks over 9 tenants (shard 0 has two)
    assert all(abs(n - per_tenant) <= 6 for n in served.values()), served


def test_a_due_visit_and_the_count_reads_ride_on_the_pops_round_trip(q: ShardedTaskQueue,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot leasing one task at a time: the visit of a shard with no ready work (its timers: here a
    delayed task come due) is a pop of no task in the same round trip as the slot's acks and pop, and
    counts read more than one interval ago serve that pop while its round trip reads them again: one
    round trip a task (each cost one of its own before)."""
    monkeypatch.setattr(shard_turns, "SHARE_REFRESH_SECONDS", 0.3)
    heavy, idle = EACH[1], EACH[2]
    assert q.pop_many(1, "w1") == []  # (every shard asked once: each made its first checks of the worker's plan)
    q.push_batch([Task.create(user_id=heavy, payload={"i": i}) for i in range(5)])
    q.push(Task.create(user_id=idle, payload={}, delay_seconds=0.05))
    q.turns.forget()
    got = q.pop_many(1, "w1")
    assert [x.user_id for x in got] == [heavy]
    time.sleep(0.35)  # the delayed task is due; the counts (read by that pop) are older than the interval
    q.turns._visit_at[MAP.of(idle)] = 0.0  # its visit is due
    visit_key = q.shard_queues[MAP.of(idle)].keys.ready("w1")
    sent: list[list[str]] = []  # each round trip's command names
    real = Transport.round_trip

    def recording(self: Transport, commands: Any, **kw: Any) -> list[Any]:
        commands = list(commands)
        sent.append([str(c[0]) for c in commands])
        return real(self, commands, **kw)

    monkeypatch.setattr(Transport, "round_trip", recording)
    codes, more, _ = q.complete_and_pop_many([(got[0], 0.05, None)], 1, worker_id="w1")
    assert codes == [1] and [x.user_id for x in more] == [heavy]
    # acks + pop in heavy's shard, the visit, the count reads (last: they see the visit's work): one round trip
    assert sent == [["EVALSHA", "EVALSHA", "ZCARD", "ZCARD", "ZCARD", "ZCARD"]], sent
    assert q.turns._visit_at[MAP.of(idle)] > time.monotonic()  # visited
    # the visit promoted the delayed task: the idle shard's tenant is ready, and the carried counts say so
    assert q.client.zcard(visit_key) == 1
    assert q.turns._shares["w1"][1] == [0, 1, 1, 0]


def _sent_before_read(q: ShardedTaskQueue, users: Sequence[str]) -> None:
    """A sharded prefetch's two halves: the acks (of two shards) and the pops are sent, and run in Redis,
    before anything is read; ``result()`` reads the replies and gives what ``complete_and_pop_many`` would."""
    for user in users:
        q.push_batch([Task.create(user_id=user, payload={"i": i}) for i in range(4)])
    got = [q.pop_many(1, "w1")[0] for _ in users]
    # (the scripts loaded on every master first: a call refused for lack of its script runs when read)
    codes, got, _ = q.complete_and_pop_many([(x, 0.05, None) for x in got], len(users), worker_id="w1")
    assert codes == [1] * len(users) and len({q.shard_map.of(x.user_id or "") for x in got}) >= 2
    sent = q.send_complete_and_pop([(x, 0.05, None) for x in got], 2, worker_id="w1")
    done_in_redis = lambda: q.get_stats()["tasks_completed"] == len(users) + len(got)  # noqa: E731
    eventually(done_in_redis, timeout=5, what="the acks ran before their replies were read")
    codes, more, due = sent.result()
    assert codes == [1] * len(got) and len(more) == 2 and due is None
    assert q.get_stats()["tasks_completed"] == len(users) + len(got)
    assert [(q.get_task_state(m.task_id) or {}).get("st") for m in more] == ["leased", "leased"]
    assert q.complete_and_pop_many([(m, 0.05, None) for m in more], 0, worker_id="w1")[0] == [1, 1]


def test_a_sharded_prefetch_is_sent_before_its_replies_are_read(q: ShardedTaskQueue) -> None:
    _sent_before_read(q, [EACH[0], EACH[1], EACH[2]])


def test_on_a_cluster_a_prefetch_is_sent_to_each_master_before_the_replies_are_read(cluster: RedisCluster) -> None:
    q = open_queue(cluster_config(_spread_prefix(cluster, 6), 6), cluster, worker_id="w1")
    assert isinstance(q, ShardedTaskQueue)
    users = [next(u for u in _POOL if q.shard_map.of(u) == n) for n in range(6)]
    _sent_before_read(q, users)


def test_a_sharded_worker_prefetches_the_acks_of_whole_batches(make_config: Any, redis_client: redis.Redis,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker of a sharded prefix prefetches its next tasks while one runs (the round trip to the shards
    concerned at once), each prefetch with the acks of whole batches (those of the batch whose last task
    runs wait for the next): as a batch comes from one shard, a prefetch's acks are one shard's script
    call (sent as they finished, the last task's went with the next batch's: two). Every task runs once."""
    q = open_queue(sharded(make_config))
    names = {q.shard_queues[0].scripts.complete.sha: "complete", q.shard_queues[0].scripts.ack_pop.sha: "ack_pop"}
    acks_per_send: list[int] = []  # each prefetch's calls that carry acks
    real = Transport.send

    def sending(self: Transport, commands: Any, via: Any = None) -> Any:
        acks_per_send.append(sum(1 for c in commands if c[0] == "EVALSHA" and c[1] in names))
        return real(self, commands, via)

    monkeypatch.setattr(Transport, "send", sending)
    for i in range(40):
        for user in EACH:
            q.push(t.add(i, 1), user_id=user)
    for i in range(8):
        q.push(t.record(f"s{i}"), user_id=EACH[i % 4])
    w = Worker(sharded(make_config), worker_id="w1", concurrency=1, install_signal_handlers=False)
    assert w.prefetch and "prefetch (" in w.leasing()
    run_until(w, lambda: q.get_stats()["tasks_completed"] == 168, "every task ran")
    # (the first batches are leased before any run time is known: turns of ceil(count / 4), four shards)
    assert len(acks_per_send) >= 6 and max(acks_per_send[3:]) == 1, acks_per_send
    assert sorted(log(redis_client)) == sorted(f"{EACH[i % 4]}|s{i}" for i in range(8))
    stats = q.get_stats()
    assert stats["tasks_active"] == 0 and stats["tasks_queued"] == 0 and stats["dlq_size"] == 0
