"""Periodic schedules against a real Redis: exactly-once ticks across schedulers, catch-up on and
off, pause, run now, stale claims finished by another worker, retried claims, garbage in the state,
the per-tenant fan-out over 1,000 tenants served in rotation, and both worker kinds firing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.queue import TaskQueue
from fairque_django.core.registry import task
from fairque_django.core.schedule import Schedule
from fairque_django.core.scheduler import Scheduler, fire_now, known_tenants, schedule_status
from fairque_django.core.worker import AsyncWorker, Worker

LOG = "test:sched:log"
T0 = 1_900_000_800  # a fixed clock: a whole hour (a tick of every schedule here)


@task
def record(tag: str = "") -> None:
    from fairque_django.core.context import running_task

    running = running_task()
    assert running is not None
    redis.Redis.from_url(_URL[0]).rpush(LOG, f"{running.task.user_id}|{running.task.task_id}")


_URL: list[str] = []


@pytest.fixture
def config(make_config: Any, redis_url: str) -> FairQueueConfig:
    _URL[:] = [redis_url]
    return make_config(workers=[{"id": "w1", "assigned_users": ["org:*", "a", "b"]},
                                {"id": "w2", "assigned_users": ["other:*"], "steal_targets": ["org:*"]}])


def every(seconds: int = 1, **kw: Any) -> Schedule:
    if "tenants" not in kw:
        kw.setdefault("user", "a")
    return Schedule(name=kw.pop("name", "tick"), task=record.name, every=seconds, **kw)


def stored(client: redis.Redis, prefix: str = "fq") -> list[str]:
    return sorted(k.decode().split(":t:", 1)[1] for k in client.keys(f"{{{prefix}}}:t:*"))


def test_each_tick_is_claimed_by_exactly_one_of_many_schedulers(config: FairQueueConfig,
                                                                 redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = every(1)
    schedulers = [Scheduler(queue, [schedule], worker_id=f"s{i}") for i in range(5)]
    for step in range(40):  # 20 s of fixed clock, every scheduler looks twice a second
        for s in schedulers[step % 5:] + schedulers[:step % 5]:  # a different one looks first
            s.run_once(T0 + step / 2 + 0.01)
    fired = [f for s in schedulers for f in s.fired]
    ticks = sorted(int(tick) for _, tick, _ in fired)
    assert ticks == list(range(T0, T0 + 20)), ticks  # every second once, none twice
    assert all(pushed == 1 for _, _, pushed in fired)
    assert stored(redis_client) == sorted(f"sched:tick:{t}:a" for t in ticks)
    assert len({s.worker_id for s in schedulers if s.fired}) > 1  # not one scheduler doing all of it
    state = queue.schedule_states(["tick"])["tick"]
    assert state["fired"] == "20" and state["last"] == str(T0 + 19)
    assert not [k for k in state if k.startswith("c:")]  # every claim confirmed


def test_claims_race_from_threads(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    """Many threads claim the same ticks at the same moment: each tick is claimed once."""
    queue = TaskQueue(config)
    claimed: list[int] = []
    lock = threading.Lock()

    def claim(token: str) -> None:
        for tick in range(T0, T0 + 50):
            status, _, _ = queue.schedule_tick("race", tick, token)
            if status == "claimed":
                with lock:
                    claimed.append(tick)

    threads = [threading.Thread(target=claim, args=(f"tok{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(T0, T0 + 50))


def test_a_retried_claim_is_still_the_claimers(config: FairQueueConfig) -> None:
    """A claim whose reply was lost and is sent again answers 'claimed' to the same token only."""
    queue = TaskQueue(config)
    assert queue.schedule_tick("r", T0, "me")[0] == "claimed"
    assert queue.schedule_tick("r", T0, "me")[0] == "claimed"
    assert queue.schedule_tick("r", T0, "you")[0] == "behind"


def test_missed_ticks_fire_once_with_catch_up(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = every(60, catch_up=True)
    first = Scheduler(queue, [schedule])
    first.run_once(T0 + 60 * 10 + 1)  # tick T0+600 fires on time
    # every worker is down for an hour; one starts again at T0+600+3600+30
    later = Scheduler(queue, [schedule])
    later.run_once(T0 + 600 + 3600 + 30)
    fired = [int(t) for _, t, _ in first.fired + later.fired]
    # the 59 ticks missed in between fire once (as the latest of them), the on-time one fires
    assert fired == [T0 + 600, T0 + 600 + 3600], fired
    later.run_once(T0 + 600 + 3600 + 31)
    assert len(later.fired) == 1


def test_missed_ticks_are_skipped_without_catch_up(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = every(60, catch_up=False)
    first = Scheduler(queue, [schedule])
    first.run_once(T0 + 600 + 1)
    later = Scheduler(queue, [schedule])
    later.run_once(T0 + 600 + 3600 + 30)  # the missed ticks are 30 s and more late: skipped
    assert [int(t) for _, t, _ in later.fired] == []
    state = queue.schedule_states(["tick"])["tick"]
    assert state["last"] == str(T0 + 600 + 3600) and state["skipped"] == "1"
    later.run_once(T0 + 600 + 3660 + 1)  # the next one fires
    assert [int(t) for _, t, _ in later.fired] == [T0 + 600 + 3660]


def test_a_tick_a_little_late_is_on_time(config: FairQueueConfig) -> None:
    """Within grace_seconds a late tick (a slow worker) is not missed: it fires, catch_up or not."""
    queue = TaskQueue(config)
    schedule = every(60, catch_up=False, grace_seconds=10)
    s = Scheduler(queue, [schedule])
    s.run_once(T0 + 1)
    s.run_once(T0 + 60 + 8)
    assert [int(t) for _, t, _ in s.fired] == [T0, T0 + 60]


def test_pause_skips_ticks_and_resume_fires_again(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    s = Scheduler(queue, [every(1)])
    s.run_once(T0 + 0.1)
    queue.schedule_set("tick", {"paused": "1"})
    for k in range(1, 5):
        s.run_once(T0 + k + 0.1)
    assert [int(t) for _, t, _ in s.fired] == [T0]
    assert schedule_status(queue, [every(1)], T0 + 4.5)[0].paused
    queue.schedule_set("tick", {}, ["paused"])
    s.run_once(T0 + 5.1)
    assert [int(t) for _, t, _ in s.fired] == [T0, T0 + 5]  # paused ticks are not caught up
    assert stored(redis_client) == [f"sched:tick:{T0}:a", f"sched:tick:{T0 + 5}:a"]


def test_run_now_pushes_outside_the_ticks(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = every(3600, tenants=("a", "b"))
    assert fire_now(queue, schedule) == 2
    ids = stored(redis_client)
    assert len(ids) == 2 and all(i.startswith("sched:tick:now") for i in ids)
    status = schedule_status(queue, [schedule])[0]
    assert status.last_tick is None and status.last_run_now_ms is not None


def test_a_claim_left_by_a_crashed_worker_is_pushed_by_another(config: FairQueueConfig,
                                                               redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = every(1, tenants=("a", "b"))
    # a worker claims T0 and dies before pushing (no push, no confirmation)
    assert queue.schedule_tick("tick", T0, "dead-worker")[0] == "claimed"
    other = Scheduler(queue, [schedule], stale_claim_seconds=0.2, stale_check_seconds=0.1)
    other.run_once(T0 + 0.5)  # the claim is fresh: T0 is behind for it, nothing pushed yet
    assert stored(redis_client) == []
    time.sleep(0.3)
    other.run_once(T0 + 0.6)
    assert stored(redis_client) == [f"sched:tick:{T0}:a", f"sched:tick:{T0}:b"]
    # the dead worker's claim is finished: pushed again later (a second takeover), nothing new
    redis_client.hset(queue.keys.schedule("tick"), f"c:{T0}", "x|0")
    other._next_stale = 0
    other.run_once(T0 + 0.7)
    assert stored(redis_client) == [f"sched:tick:{T0}:a", f"sched:tick:{T0}:b"]
    assert queue.get_stats()["tasks_pushed"] == 2
    assert not [k for k in queue.schedule_states(["tick"])["tick"] if k.startswith("c:")]


def test_garbage_in_the_schedule_state_is_repaired(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    redis_client.hset(queue.keys.schedule("tick"),
                      mapping={"last": "garbage", "fired": "x", "c:zz": "no-bar", f"c:{T0 - 5}": "x|garbage"})
    s = Scheduler(queue, [every(1)])
    s.run_once(T0 + 0.1)
    state = queue.schedule_states(["tick"])["tick"]
    assert state["last"] == str(T0) and state["fired"] == "1"
    assert queue.get_stats()["tasks_repaired"] == 3  # last, fired, the claim field of no tick
    # the claim with a garbage time is handed over (stale) and pushed; the field of no tick is deleted
    assert [t for _, t, _ in s.fired] == [str(T0), str(T0 - 5)]
    assert not [k for k in queue.schedule_states(["tick"])["tick"] if k.startswith("c:")]
    redis_client.delete(queue.keys.schedule("tick"))
    redis_client.set(queue.keys.schedule("tick"), "not a hash")  # wrong type: moved aside
    assert Scheduler(queue, [every(1)]).run_once(T0 + 1.1) is None
    assert queue.get_stats()["tasks_quarantined"] == 1


def test_per_tenant_schedule_over_1000_tenants_is_served_in_rotation(config: FairQueueConfig,
                                                                     redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    tenants = tuple(f"org:{i}" for i in range(1000))
    schedule = Schedule(name="fan", task=record.name, every=60, tenants=tenants)
    s = Scheduler(queue, [schedule])
    s.run_once(T0 + 0.5)
    s.run_once(T0 + 60.5)
    assert [(t, n) for _, t, n in s.fired] == [(str(T0), 1000), (str(T0 + 60), 1000)]
    assert queue.get_stats()["tasks_pushed"] == 2000
    # one task per tenant per tick; the first 1000 pops serve 1000 different tenants
    first = [queue.pop("w1") for _ in range(1000)]
    assert len({t.user_id for t in first if t is not None}) == 1000
    second = [queue.pop("w1") for _ in range(1000)]
    assert len({t.user_id for t in second if t is not None}) == 1000
    assert queue.pop("w1") is None


def test_patterns_match_known_tenants(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    """A pattern in tenants matches the ids the configuration names and the tenants the queue has
    seen (those with a push counter)."""
    queue = TaskQueue(config)
    from fairque_django.core.models import Task

    queue.push_batch([Task.create(user_id=u) for u in ("org:7", "org:8", "other:1")])
    assert {"org:7", "org:8", "other:1", "a", "b"} <= set(known_tenants(queue))
    s = Scheduler(queue, [Schedule(name="p", task=record.name, every=60, tenants=("org:*", "b"))])
    s.run_once(T0 + 1)
    assert sorted(i for i in stored(redis_client) if i.startswith("sched:")) == \
        [f"sched:p:{T0}:b", f"sched:p:{T0}:org:7", f"sched:p:{T0}:org:8"]


def active_orgs() -> list[str]:
    return ["org:1", "org:2"]


def test_tenants_from_a_dotted_path(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = Schedule(name="d", task=record.name, every=60, tenants=f"{__name__}.active_orgs")
    Scheduler(queue, [schedule]).run_once(T0 + 1)
    assert stored(redis_client) == [f"sched:d:{T0}:org:1", f"sched:d:{T0}:org:2"]


def test_an_unserved_tenant_does_not_stop_the_others(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    queue = TaskQueue(config)
    schedule = Schedule(name="u", task=record.name, every=60, tenants=("a", "nobody-serves-me", "b"))
    Scheduler(queue, [schedule]).run_once(T0 + 1)
    assert stored(redis_client) == [f"sched:u:{T0}:a", f"sched:u:{T0}:b"]


def wait_for(redis_client: redis.Redis, n: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [x.decode() for x in redis_client.lrange(LOG, 0, -1)]
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError(f"only {redis_client.llen(LOG)} of {n} runs within {timeout}s")


def test_thread_workers_fire_and_run_schedules(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    schedule = every(1, tenants=("a", "b"))
    workers = [Worker(config, worker_id=w, schedules=[schedule], install_signal_handlers=False, concurrency=2)
               for w in ("w1", "w2")]
    threads = [threading.Thread(target=w.start, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        runs = wait_for(redis_client, 6)
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(20)
    ticks = [r.split("|")[1] for r in runs]
    assert len(ticks) == len(set(ticks))  # no task of a tick ran twice
    assert {r.split("|")[0] for r in runs} == {"a", "b"}


def test_async_worker_fires_schedules(config: FairQueueConfig, redis_client: redis.Redis) -> None:
    worker = AsyncWorker(config, worker_id="w1", schedules=[every(1)], install_signal_handlers=False)

    async def main() -> int:
        run = asyncio.create_task(worker.run())
        await asyncio.to_thread(wait_for, redis_client, 2)
        worker.stop()
        return await run

    assert asyncio.run(main()) == 0
    assert worker.scheduler.fired
