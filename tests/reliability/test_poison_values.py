"""Wrong values of the right type, one family per key (table ``FAMILIES``): garbage written into a
key of the right type never stops push / pop / ack / fail / requeue / stats / admin reads, loses no
task, runs none twice, and is reported (repaired and counted in ``tasks_repaired``, or the task
dead-lettered as corrupt, or shown by the reader).

``test_every_key_family_has_a_poison_case`` fails when a key builder of ``core/keys.py`` has no row
in the table: a new key family needs its poison case."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from fairque_django import FairQueueConfig, SerializationError, Task, TaskQueue
from fairque_django.core.keys import Keys
from fairque_django.core.observe import collect_metrics, load_history
from fairque_django.core.observe.alert_rules import BUILTIN_RULES, evaluate
from fairque_django.core.observe.alerts import AlertTracker
from fairque_django.management.commands.fairque_stats import Command as StatsCommand
from fairque_django.management.commands.fairque_stats import collect

from .helpers import task_states

WORKERS = [
    {"id": "w1", "assigned_users": ["a", "b"], "steal_targets": ["c"]},
    {"id": "w2", "assigned_users": ["c"]},
    {"id": "w3", "assigned_users": ["d"]},
]
HAND_TOKEN = "poison-token"
INF = float("inf")

# How a poisoned family is reported: REPAIRED: the value was rewritten, counted in tasks_repaired
# and in the scripts' problems; CORRUPT: the victim task is dead-lettered as corrupt (requeue runs
# it); QUARANTINED: a key of the wrong type was moved aside; READ: only a Python reader reads it
# and shows / skips it; TOLERATED: the value cannot harm (an id without a task is skipped, a
# metric reads as unknown, a token mismatch is a lost lease).
REPAIRED, CORRUPT, QUARANTINED, READ, TOLERATED = "repaired", "corrupt", "quarantined", "read", "tolerated"


@dataclass
class Scene:
    """The task ids the scenario set up before the poison is planted."""

    queue: TaskQueue
    dead: str = ""  # in the DLQ
    delayed: str = ""  # ready 0.3 s after the setup
    held: str = ""  # leased for 0.5 s by a worker that never acknowledges (crashed)
    victims: dict[str, str] = field(default_factory=dict)  # user -> a queued task

    @property
    def keys(self) -> Keys:
        return self.queue.keys


Plant = Callable[[redis.Redis, Scene], None]


@dataclass(frozen=True)
class Family:
    name: str
    builders: tuple[str, ...]  # the Keys builders this case covers
    report: str
    plant: Plant
    victim: Callable[[Scene], str] | None = None  # CORRUPT: the task dead-lettered
    balanced: bool = True  # the stats still balance (a repaired counter restarts)


def hset(key: Callable[[Scene], str], mapping: dict[str, Any]) -> Plant:
    return lambda c, s: c.hset(key(s), mapping=mapping)


def zadd(key: Callable[[Scene], str], member: Callable[[Scene], str], score: float) -> Plant:
    return lambda c, s: c.zadd(key(s), {member(s): score})


def sset(key: Callable[[Scene], str], value: Any) -> Plant:
    return lambda c, s: c.set(key(s), value)


def both(*plants: Plant) -> Plant:
    def plant(c: redis.Redis, s: Scene) -> None:
        for p in plants:
            p(c, s)
    return plant


def now_ms(c: redis.Redis) -> int:
    sec, usec = c.time()
    return int(sec) * 1000 + int(usec) // 1000


def histogram_garbage(key: Callable[[Scene], str]) -> Plant:
    fields = [f"{k}:{b}" for k in "wr" for b in (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                                   60000, 300000, "inf", "sum")]
    return hset(key, dict.fromkeys(fields, "garbage"))


def tput_garbage(c: redis.Redis, s: Scene) -> None:
    minute = int(time.time() * 1000) // 60000
    c.hset(s.keys.metrics_throughput, mapping={str(minute): "x", str(minute + 1): "x"})


def parked_garbage(c: redis.Redis, s: Scene) -> None:
    c.zadd(s.keys.parked("w3"), {"garbage": now_ms(c) + 60_000})


def samples_garbage(c: redis.Redis, s: Scene) -> None:
    at = now_ms(c)
    c.zadd(s.keys.samples, {"garbage": at - 30_000, '{"t": 1, "completed": "x"}': at - 20_000, "[1]": at - 10_000})


def history_garbage(c: redis.Redis, s: Scene) -> None:
    c.zadd(s.keys.history, {"garbage": now_ms(c), '{"t": "x", "u": 5}': now_ms(c) - 1})


def quarantined_garbage(c: redis.Redis, s: Scene) -> None:
    c.set(s.keys.quarantined, "garbage")
    c.delete(s.keys.vfinish("w3"))
    c.set(s.keys.vfinish("w3"), "a string, not a hash")  # moved aside when d joins its rotation


def unique_key_garbage(c: redis.Redis, s: Scene) -> None:
    c.hset(s.keys.unique("a", "k"), "x", "1")
    c.hset(s.keys.task(s.victims["a"]), "uk", s.keys.unique("a", "k"))


V_B: Callable[[Scene], str] = lambda s: s.keys.task(s.victims["b"])  # noqa: E731
HELD: Callable[[Scene], str] = lambda s: s.keys.task(s.held)  # noqa: E731

FAMILIES: list[Family] = [
    Family("stats counter", ("stats",), REPAIRED, hset(lambda s: s.keys.stats, {"completed": "garbage"}),
           balanced=False),
    Family("stats priority counter", ("stats",), REPAIRED, hset(lambda s: s.keys.stats, {"p:3:pushed": "1.5"}),
           balanced=False),
    Family("seq garbage", ("seq",), REPAIRED, sset(lambda s: s.keys.seq, "garbage")),
    Family("seq beyond 2^39", ("seq",), REPAIRED, sset(lambda s: s.keys.seq, 2**45)),
    Family("gate garbage", ("gate",), REPAIRED, sset(lambda s: s.keys.gate, "garbage")),
    Family("gate inf", ("gate",), REPAIRED, sset(lambda s: s.keys.gate, "inf")),
    Family("gate far ahead", ("gate",), TOLERATED, sset(lambda s: s.keys.gate, 10**15)),
    Family("vclock", ("vclock",), REPAIRED, hset(lambda s: s.keys.vclock, {"w3": "garbage"})),
    Family("vfinish", ("vfinish",), REPAIRED, hset(lambda s: s.keys.vfinish("w3"), {"d": "nan"})),
    Family("ready score -inf", ("ready",), REPAIRED, zadd(lambda s: s.keys.ready("w1"), lambda s: "a", -INF)),
    Family("ready score inf", ("ready",), REPAIRED, zadd(lambda s: s.keys.ready("w1"), lambda s: "a", INF)),
    Family("lease deadline inf", ("leases",), REPAIRED, zadd(lambda s: s.keys.leases, lambda s: s.held, INF)),
    Family("delayed time inf", ("delayed",), REPAIRED, zadd(lambda s: s.keys.delayed, lambda s: s.delayed, INF)),
    Family("dlq score inf", ("dlq",), TOLERATED, zadd(lambda s: s.keys.dlq, lambda s: s.dead, INF)),
    Family("live count inf", ("live",), REPAIRED, zadd(lambda s: s.keys.live, lambda s: "a", INF)),
    Family("runavg", ("runavg",), REPAIRED, hset(lambda s: s.keys.runavg, {"a": "garbage", "c": "inf"})),
    Family("task attempts", ("task",), CORRUPT, hset(V_B, {"a": "garbage"}), victim=lambda s: s.victims["b"]),
    Family("task retries", ("task",), CORRUPT, hset(V_B, {"r": "-1.5"}), victim=lambda s: s.victims["b"]),
    Family("task header", ("task",), CORRUPT, hset(V_B, {"h": "garbage"}), victim=lambda s: s.victims["b"]),
    Family("task header priority", ("task",), CORRUPT, hset(V_B, {"h": "9\t1\tw1\t1\t3"}),
           victim=lambda s: s.victims["b"]),
    Family("leased task retries", ("task",), CORRUPT, hset(HELD, {"r": "x"}), victim=lambda s: s.held),
    Family("task ready-since", ("task",), TOLERATED, hset(V_B, {"e": "garbage"})),
    Family("leased task wait and cost", ("task",), TOLERATED, hset(HELD, {"wt": "x", "ch": "nan"})),
    Family("leased task progress", ("task",), TOLERATED, hset(HELD, {"pg": "garbage\tnan\tsoon"})),
    Family("critical lane member", ("critical",), TOLERATED,
           lambda c, s: c.lpush(s.keys.critical("b"), "no-such-task")),
    Family("lane member", ("lane", "lanes"), TOLERATED,
           lambda c, s: c.rpush(s.keys.lanes("b")[3], "no-such-task")),
    # a lane of the former layout (a zset of priorities 1-5): converted by the first script that touches it
    Family("former lane member", ("normal",), TOLERATED,
           zadd(lambda s: s.keys.normal("b"), lambda s: "no-such-task", 0)),
    # stale lane entry counts: garbage, a count beyond the lane's length (the lane then reads empty: the
    # cancel that looks at it repairs it), an id never cancelled
    Family("stale lane entries", ("gone",), TOLERATED,
           hset(lambda s: s.keys.gone("b"), {"\t3": "garbage", "\t6": "-4", "\t5": "99", "no-such-task": "x"})),
    Family("wake list", ("wake",), TOLERATED, lambda c, s: c.lpush(s.keys.wake("w1"), "garbage")),
    Family("parked slot", ("parked",), REPAIRED, parked_garbage),
    # a sharded prefix's idle workers wait on the home wake list; a token names a shard ('s<n>'), garbage
    # makes the woken slot ask every shard
    Family("home wake list", ("home_wake",), TOLERATED, lambda c, s: c.lpush(s.keys.home_wake("w2"), "garbage")),
    # only a move between shards reads it (whether a pause is the move's own)
    Family("moving tenant", ("tenant_moving",), TOLERATED, hset(lambda s: s.keys.tenant_moving, {"zz": "garbage"})),
    Family("hand list", ("hand",), READ, lambda c, s: c.lpush(s.keys.hand(HAND_TOKEN), "garbage")),
    Family("steal set member", ("steal_set",), TOLERATED, lambda c, s: c.sadd(s.keys.steal_set("w1"), "garbage")),
    Family("steal digest", ("steal_digest",), TOLERATED, sset(lambda s: s.keys.steal_digest("w1"), "garbage")),
    # steal copies: a stale member is dropped before use, a bad definition or epoch makes every stealer rebuild
    Family("steal copy member", ("steal_ready",), TOLERATED,
           zadd(lambda s: s.keys.steal_ready("w2", "w1"), lambda s: "not-ready", -INF)),
    Family("stealer definition", ("stealers",), TOLERATED, hset(lambda s: s.keys.stealers("w2"), {"w1": "\t\t"})),
    Family("steal epoch", ("steal_epoch",), TOLERATED, sset(lambda s: s.keys.steal_epoch, "garbage")),
    Family("steal partitions", ("steal_parts",), TOLERATED, lambda c, s: c.sadd(s.keys.steal_parts("w1"), "nowhere")),
    Family("stealer last sync", ("steal_seen",), TOLERATED, zadd(lambda s: s.keys.steal_seen, lambda s: "w1", -INF)),
    # only the key's existence counts (a live heartbeat): its value is never read
    Family("heartbeat key", ("beat",), TOLERATED, lambda c, s: c.set(s.keys.beat("w3"), "garbage", px=2000)),
    Family("workers seen", ("workers",), READ, zadd(lambda s: s.keys.workers, lambda s: "w1", INF)),
    Family("workers stopped", ("workers_stopped",), READ, hset(lambda s: s.keys.workers_stopped, {"w1": "x"})),
    Family("worker record", ("worker",), READ,
           hset(lambda s: s.keys.worker("w1"), {"last_seen": "x", "started": "inf", "current": "{not json",
                                                 "processed": "many", "pid": "x"})),
    Family("histogram of a user", ("metrics_user",), REPAIRED, histogram_garbage(lambda s: s.keys.metrics_user("a"))),
    Family("histogram of all", ("metrics_all",), REPAIRED, histogram_garbage(lambda s: s.keys.metrics_all)),
    Family("throughput", ("metrics_throughput",), REPAIRED, tput_garbage),
    Family("counter samples", ("samples",), READ, samples_garbage),
    Family("chart history", ("history",), READ, history_garbage),
    Family("alert states", ("alerts",), READ,
           hset(lambda s: s.keys.alerts, {"s:tenant-starved": "firing", "t:tenant-starved": "x",
                                          "e:tenant-starved": "inf", "d:tenant-starved": "{"})),
    Family("guard", ("guard",), TOLERATED, sset(lambda s: s.keys.guard(s.keys.samples), "garbage")),
    Family("xcom value", ("xcom",), READ, sset(lambda s: s.keys.xcom("a", "k"), "{not json")),
    Family("result", ("result",), READ, sset(lambda s: s.keys.result("a", s.victims["a"]), "{not json")),
    Family("result owner", ("result_owner",), TOLERATED, sset(lambda s: s.keys.result_owner(s.victims["a"]), "zz")),
    Family("quarantine counter", ("quarantined",), QUARANTINED, quarantined_garbage),
    # any value reads "already pushed" for an idempotent (outbox) push of that id, by design
    Family("idempotency marker", ("idempotency",), TOLERATED, sset(lambda s: s.keys.idempotency("other"), "junk")),
    # a periodic schedule's state: the queue never reads it; schedule_tick.lua repairs it
    # (tests/integration/test_schedules.py::test_garbage_in_the_schedule_state_is_repaired)
    Family("schedule state", ("schedule",), TOLERATED,
           hset(lambda s: s.keys.schedule("nightly"), {"last": "garbage", "c:x": "junk"})),
    # a unique key of the wrong type, named by a queued task: moved aside when the task's end releases it
    Family("unique key", ("unique",), QUARANTINED, unique_key_garbage),
    # dependents that are no task, or not waiting: the end of the task they name skips them
    Family("dependents", ("dependents",), TOLERATED,
           both(lambda c, s: c.sadd(s.keys.dependents(s.victims["b"]), "no-such-task", s.victims["c"]),
                hset(V_B, {"hd": "1"}))),
    # the retention sweep's idle marks: a mark of a tenant never seen, due at once, is folded (nothing
    # to fold: read_everything sweeps); one at +inf is never due (the tenant keeps its state)
    Family("idle mark", ("idle",), TOLERATED,
           both(zadd(lambda s: s.keys.idle, lambda s: "zz", -INF), zadd(lambda s: s.keys.idle, lambda s: "b", INF))),
    Family("moved-aside key", ("quarantine",), TOLERATED, sset(lambda s: s.keys.quarantine("x", 1), "junk")),
]


FAMILIES += [  # tenant limits (issue 15); the scene's config caps b and rate-limits a
    Family("leased counter", ("tenant_leased",), REPAIRED, hset(lambda s: s.keys.tenant_leased, {"b": "x", "c": "-2"})),
    Family("runtime limit spec", ("tenant_limits",), REPAIRED, hset(lambda s: s.keys.tenant_limits, {"a": "1\tx"})),
    Family("limit settings mirror", ("limit_config",), REPAIRED, hset(lambda s: s.keys.limit_config, {"p": "no tab"})),
    # any field is a pause (its value, the time since, is only shown): garbage for a tenant without work
    Family("paused tenant", ("tenant_paused",), READ, hset(lambda s: s.keys.tenant_paused, {"zz": "garbage"})),
    Family("held tenant", ("tenant_held",), TOLERATED, hset(lambda s: s.keys.tenant_held, {"a": "x", "zz": "x"})),
    Family("rate bucket", ("tenant_rate",), REPAIRED, hset(lambda s: s.keys.tenant_rate, {"a": "nan"})),
    Family("rate timer", ("tenant_next",), REPAIRED, zadd(lambda s: s.keys.tenant_next, lambda s: "a", INF)),
    # the flag 'any limit may apply' (issue 17): garbage is looked at again (limits exist: '1'), reported
    Family("limits flag", ("limits_on",), REPAIRED, sset(lambda s: s.keys.limits_on, "garbage")),
]


def test_every_key_family_has_a_poison_case() -> None:
    builders = {n for n in dir(Keys) if not n.startswith("_")
                and n not in ("prefix", "base", "home", "shard", "tag", "of_shard")}
    covered = {b for f in FAMILIES for b in f.builders}
    assert builders - covered == set(), "key families without a poison case in FAMILIES"
    assert covered - builders == set(), "FAMILIES names builders Keys does not have"


@pytest.fixture
def config(make_config: Any, prefix: str) -> FairQueueConfig:
    return make_config(workers=WORKERS, stats_prefix=prefix, lease_timeout_seconds=1, default_max_retries=2,
                       retry_backoff_base_seconds=0.05, fairness="time",
                       tenant_limits={"a": {"rate": "1000/s", "burst": 100}, "b": {"concurrency": 5}})


def new(user: str, **kwargs: Any) -> Task:
    return Task.create(user_id=user, payload={"n": 1}, **kwargs)


def setup_scene(queue: TaskQueue) -> Scene:
    """Every key family in use: a served round per user (clocks, finish tags, averages, histograms),
    a dead task, a delayed task, a task held by a crashed worker and a queued task per user."""
    scene = Scene(queue)
    queue.push_batch([new(u) for u in "abcd"])
    for worker in ("w1", "w2", "w3", "w1"):
        task = queue.pop(worker)
        if task is not None:
            queue.complete(task, duration=0.01)
    dead = new("a", max_retries=0)
    queue.push(dead)
    task = queue.pop("w1")
    assert task is not None and task.task_id == dead.task_id
    assert queue.fail(task, "boom") == "dead"
    scene.dead = dead.task_id
    delayed = new("b", delay_seconds=0.3)
    queue.push(delayed)
    scene.delayed = delayed.task_id
    held = new("c")
    queue.push(held)
    task = queue.pop("w2", lease_seconds=0.5)
    assert task is not None and task.task_id == held.task_id
    scene.held = held.task_id
    for user in "abc":
        victim = new(user)
        queue.push(victim)
        scene.victims[user] = victim.task_id
    return scene


def drain(queue: TaskQueue, expected: set[str], done: Counter[str], dead_ok: set[str], timeout: float = 20,
          failures: int = 2) -> None:
    """Pop from every worker and acknowledge (failing the first ``failures`` once) until every expected
    task is done or, for ``dead_ok``, dead; a task popped after its acknowledgement ran twice."""
    failed_once: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = True
        for worker in ("w1", "w2", "w3"):
            task = queue.pop(worker)
            if task is None:
                continue
            idle = False
            assert done[task.task_id] == 0, f"task {task.task_id} ran again after it was acknowledged"
            if task.task_id not in failed_once and len(failed_once) < failures:
                failed_once.add(task.task_id)
                queue.fail(task, "transient")
            else:
                assert queue.complete_code(task, duration=0.005) == 1
                done[task.task_id] += 1
        left = {t for t in expected if not done[t] and not (t in dead_ok and queue.get_dead(t) is not None)}
        if not left:
            return
        if idle:
            time.sleep(0.05)
    raise AssertionError(f"not done within {timeout}s: {sorted(left)}; stats {queue.get_stats()}")


def read_everything(queue: TaskQueue) -> None:
    """The admin and monitoring reads all work (a poisoned value reads as unknown / 0 / skipped)."""
    queue.get_dlq()
    queue.next_delayed_seconds()
    for user in (*"abcd", "zz"):
        queue.user_depth(user)
        queue.get_tenant_limits(user)
    metrics = collect_metrics(queue, 10, windows=(60.0,), alerts=True)
    metrics.to_dict()
    tracker = AlertTracker(queue)
    tracker.update(evaluate(metrics, BUILTIN_RULES), at=metrics.timestamp)
    tracker.load()
    load_history(queue)
    StatsCommand().render(collect(queue, 5))
    queue.fold_idle_tenants(window_seconds=0)  # the retention sweep over whatever is idle now
    step = queue.take_handed(HAND_TOKEN, "w3")
    assert step.tasks == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_a_wrong_value_of_the_right_type_does_not_break_the_queue(
        config: FairQueueConfig, redis_client: redis.Redis, family: Family) -> None:
    queue = TaskQueue(config)
    scene = setup_scene(queue)
    before = queue.get_stats()
    family.plant(redis_client, scene)
    if family.builders == ("stats",):  # the reader shows the garbage (read as 0) instead of failing
        assert queue.get_stats()["problems"], queue.get_stats()
    # new work, a new user joining an empty rotation, a requeue: everything still runs once
    later = [new("d"), new("a"), new("b"), new("c"), new("d")]
    queue.push(later[0])
    queue.push_batch(later[1:])
    assert queue.requeue_dead([scene.dead]) == [scene.dead]
    expected = {scene.dead, scene.delayed, scene.held, *scene.victims.values(), *(t.task_id for t in later)}
    victim = family.victim(scene) if family.victim else None
    done: Counter[str] = Counter()
    drain(queue, expected, done, {victim} if victim else set())
    read_everything(queue)
    stats = queue.get_stats()
    if family.report == REPAIRED:
        assert stats["tasks_repaired"] > before["tasks_repaired"], stats
    elif family.report == QUARANTINED:
        assert stats["tasks_quarantined"] > before["tasks_quarantined"], stats
        assert len(redis_client.keys(f"{queue.keys.base}:quarantine:*")) == 1
    elif family.report == CORRUPT:
        assert victim is not None
        entry = queue.get_dead(victim)
        assert entry is not None and entry.failure_type == "corrupt" and "corrupt task" in entry.error, entry
        assert queue.requeue_dead([victim]) == [victim]  # repaired: a requeue runs it
        drain(queue, {victim}, done, set(), failures=0)  # (its max_retries may be unknown: 0)
    if family.builders == ("xcom",):
        with queue, pytest.raises(SerializationError, match="not JSON"):
            from fairque_django.core.xcom import xcom_pull
            xcom_pull("k", user_id="a")
    if family.builders == ("result",):
        assert queue.read_result(scene.victims["a"], "a").found
    assert set(done) == expected and set(done.values()) == {1}, done
    assert queue.dlq_size() == 0
    if family.balanced:  # (per user, a requeued task counts dead and completed: globals only)
        stats = queue.get_stats()
        states = Counter(task_states(redis_client, queue.config.queue.stats_prefix).values())
        assert stats["tasks_pushed"] == (stats["tasks_completed"] + stats["tasks_deleted"] + stats["tasks_cancelled"]
                                         + sum(states.values()))
        assert stats["tasks_pending"] == sum(states.values()) == 0, (stats, states)


# --------------------------------------------------------------------------- never a silent stall


def test_a_stalled_tenant_is_detected_and_reported(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    """Ready tasks of a tenant that is in no rotation (what garbage in a clock used to cause) are
    reported by the snapshot, the health body, ``fairque_stats`` and the built-in alert; a push
    for the tenant ends the stall. Healthy tenants are never reported."""
    queue = TaskQueue(config)
    queue.push_batch([new(u) for u in "aabcd"])
    assert collect_metrics(queue, 10).stalled == []
    queue.pop("w2")  # c's only task is leased: not stalled, not ready
    assert collect_metrics(queue, 0).stalled == []
    redis_client.zrem(queue.keys.ready("w1"), "a")  # a's two tasks are now invisible to every pop

    metrics = collect_metrics(queue, 10)
    assert [(s.tenant, s.partition, s.ready) for s in metrics.stalled] == [("a", "w1", 2)]
    assert metrics.to_dict()["stalled"] == [{"tenant": "a", "partition": "w1", "ready": 2}]
    from fairque_django.core.observe import health_status, light_snapshot
    assert [s.tenant for s in light_snapshot(queue).stalled] == ["a"]
    assert health_status(queue)[1]["stalled_tenants"] == 1
    alert = {s.rule.name: s for s in evaluate(metrics, BUILTIN_RULES)}["partition-stalled"]
    assert alert.firing and "a (2 ready, partition w1)" in alert.message, alert
    assert "no partition's rotation" in StatsCommand().render(collect(queue, 5))

    queue.push(new("a"))  # a joins its rotation again: all three of its tasks run
    assert collect_metrics(queue, 10).stalled == []
    ran = [t.user_id for t in iter(lambda: queue.pop("w1"), None)]
    assert ran.count("a") == 3
    assert not {s.rule.name: s for s in evaluate(collect_metrics(queue, 10), BUILTIN_RULES)}["partition-stalled"].firing
