"""Orphan takeover with real worker processes: the tenants of a worker id without a live
heartbeat (never started, or SIGKILLed) are served by the live workers within
``orphan_after + 2 s``, rotating by virtual time; the owner gets them back when it beats again;
with ``orphan_takeover`` off they wait. No worker may steal here (``FAIRQUE_REL_STEAL=""``), so
takeover is the only way rel-2's tenants (``t2:*``) reach rel-1."""

from __future__ import annotations

import time

import pytest
import redis

from fairque_django import TaskQueue
from fairque_django.core.observe import orphan_after
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import text
from .relconfig import core_config


def starts(client: redis.Redis) -> list[tuple[str, str, float]]:
    """(user, worker, start time) of every ``tasks.trace`` run, in start order."""
    out = []
    for raw in client.lrange(tasks.EVENTS, 0, -1):
        user, worker, at = text(raw).split("|")
        out.append((user, worker, float(at)))
    return out


def beating(queue: TaskQueue, worker_id: str) -> bool:
    return bool(queue.client.exists(queue.keys.beat(worker_id)))


@pytest.fixture
def no_steal(rel_env: dict[str, str]) -> dict[str, str]:
    rel_env.update(FAIRQUE_REL_STEAL="", FAIRQUE_REL_CONCURRENCY="1")
    return rel_env


@pytest.mark.timeout(120)
def test_a_never_started_workers_tenants_are_taken_over(redis_client: redis.Redis, no_steal: dict[str, str],
                                                        workers: Workers) -> None:
    config = core_config(no_steal)
    after = orphan_after(config, config.get_worker("rel-2"))
    queue = TaskQueue(config)
    workers.start("rel-1")
    eventually(lambda: beating(queue, "rel-1"), timeout=30, what="rel-1 beats")
    pushed = time.time()
    queue.push_batch([tasks.trace.create_task((), user_id=f"t2:{k}") for k in range(3)])
    got = eventually(lambda: len(starts(redis_client)) == 3 and starts(redis_client), timeout=30,
                     what="rel-2's tenants served by rel-1")
    assert {w for _, w, _ in got} == {"rel-1"}
    latency = got[0][2] - pushed
    print(f"\nnever-started owner: first task started {latency:.2f} s after the push (orphan_after {after:g} s)")
    assert latency <= after + 2
    assert queue.get_stats()["tasks_orphan_served"] == 3


@pytest.mark.timeout(180)
def test_a_killed_workers_tenants_are_taken_over_and_given_back(redis_client: redis.Redis, no_steal: dict[str, str],
                                                                workers: Workers) -> None:
    config = core_config(no_steal)
    after = orphan_after(config, config.get_worker("rel-2"))
    queue = TaskQueue(config)
    workers.start("rel-1")
    owner = workers.start("rel-2")
    eventually(lambda: beating(queue, "rel-1") and beating(queue, "rel-2"), timeout=30, what="both beat")
    time.sleep(1.5)  # rel-1 has seen rel-2 alive (it reads the heartbeat keys once a second)
    queue.push(tasks.trace.create_task((), user_id="t2:0"))
    eventually(lambda: len(starts(redis_client)) == 1, timeout=30, what="a task of rel-2's while it runs")
    assert starts(redis_client)[0][1] == "rel-2"

    owner.kill()
    killed = time.time()
    queue.push_batch([tasks.trace.create_task((), user_id=f"t2:{k}") for k in range(1, 4)])
    got = eventually(lambda: len(starts(redis_client)) == 4 and starts(redis_client)[1:], timeout=30,
                     what="rel-2's tenants taken over after its death")
    assert {w for _, w, _ in got} == {"rel-1"}
    latency = got[0][2] - killed
    print(f"\nkilled owner: first task taken over {latency:.2f} s after the SIGKILL (orphan_after {after:g} s)")
    assert latency <= after + 2

    # the owner comes back: once rel-1 has seen its heartbeat (within a second), rel-1 -- idle and
    # free to take them if it still thought them orphaned -- takes none of rel-2's tenants
    workers.start("rel-2")
    eventually(lambda: beating(queue, "rel-2"), timeout=30, what="rel-2 beats again")
    time.sleep(1.5)
    queue.push_batch([tasks.trace.create_task((0.05,), user_id=f"t2:{k}") for k in range(10)])
    back = eventually(lambda: len(starts(redis_client)) == 14 and starts(redis_client)[4:], timeout=30,
                      what="rel-2's tenants served again")
    assert [w for _, w, _ in back] == ["rel-2"] * 10
    assert queue.get_stats()["tasks_orphan_served"] == 3


@pytest.mark.timeout(120)
def test_with_takeover_off_they_wait(redis_client: redis.Redis, no_steal: dict[str, str], workers: Workers) -> None:
    no_steal.update(FAIRQUE_REL_ORPHANS="0")
    config = core_config(no_steal)
    queue = TaskQueue(config)
    workers.start("rel-1")
    eventually(lambda: beating(queue, "rel-1"), timeout=30, what="rel-1 beats")
    queue.push_batch([tasks.trace.create_task((), user_id=f"t2:{k}") for k in range(3)]
                     + [tasks.trace.create_task((), user_id="t1:0")])
    eventually(lambda: len(starts(redis_client)) >= 1, timeout=30, what="rel-1's own task")
    time.sleep(orphan_after(config, config.get_worker("rel-2")) + 3)
    assert [(u, w) for u, w, _ in starts(redis_client)] == [("t1:0", "rel-1")]
    assert queue.get_stats()["tasks_orphan_served"] == 0
    workers.start("rel-2")  # the owner serves them
    got = eventually(lambda: len(starts(redis_client)) == 4 and starts(redis_client)[1:], timeout=30,
                     what="rel-2 serves its tenants")
    assert {w for _, w, _ in got} == {"rel-2"}


@pytest.mark.timeout(120)
def test_takeover_rotates_by_virtual_time(redis_client: redis.Redis, no_steal: dict[str, str],
                                          workers: Workers) -> None:
    """Three tenants of the orphaned partition, their tasks pushed tenant after tenant: served by
    takeover on one slot, every round of three starts holds each tenant once."""
    queue = TaskQueue(core_config(no_steal))
    users = ["t2:a", "t2:b", "t2:c"]
    queue.push_batch([tasks.trace.create_task((0.02,), user_id=u) for u in users for _ in range(6)])
    workers.start("rel-1")
    got = eventually(lambda: len(starts(redis_client)) == 18 and starts(redis_client), timeout=60,
                     what="all 18 tasks served by takeover")
    assert {w for _, w, _ in got} == {"rel-1"}
    order = [u for u, _, _ in got]
    rounds = [order[i:i + 3] for i in range(0, 18, 3)]
    assert all(sorted(r) == users for r in rounds), order
