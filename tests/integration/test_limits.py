"""Per-tenant concurrency caps, rate limits and pause/resume (issue 15), against real Redis: the
limits hold inside the scripts, whichever process pops."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from fairque_django import AsyncTaskQueue, Task, TaskQueue
from fairque_django.core.errors import ConfigurationError, TaskValidationError


def push(q: TaskQueue, user: str, n: int = 1, **kw: Any) -> list[str]:
    ids = []
    for _ in range(n):
        t = Task.create(user_id=user, payload={}, **kw)
        q.push(t)
        ids.append(t.task_id)
    return ids


def drain_users(q: TaskQueue, count: int = 50) -> list[str]:
    return [t.user_id or "" for t in q.pop_many(count)]


def test_a_capped_tenant_leaves_the_rotation_at_its_cap_and_rejoins_when_a_lease_ends(make_config: Any) -> None:
    q = TaskQueue(make_config(tenant_limits={"a": {"concurrency": 2}}))
    push(q, "a", 5)
    push(q, "b", 5)
    got = q.pop_many(10)
    assert [t.user_id for t in got].count("a") == 2  # the rest of b's work was leased, a waits at its cap
    assert [t.user_id for t in got].count("b") == 5
    state = q.get_tenant_limits("a")
    assert state["leased"] == 2 and state["held"] == "cap" and state["concurrency"] == 2
    assert state["concurrency_source"] == "settings:a"
    assert q.pop() is None  # nothing it may take: a is at its cap
    q.complete(next(t for t in got if t.user_id == "a"))
    nxt = q.pop()
    assert nxt is not None and nxt.user_id == "a"
    assert q.pop() is None
    assert q.get_tenant_limits("a")["leased"] == 2


def test_an_ack_frees_the_cap_for_the_pop_of_the_same_call(make_config: Any) -> None:
    """complete_and_pop_many is one script call (ack_pop.lua) whose leased counts are written once at
    its end: the pop must count the acks' ends all the same, and the count must come out right."""
    q = TaskQueue(make_config(tenant_limits={"a": {"concurrency": 2}}))
    push(q, "a", 7)
    first = q.pop_many(4)
    assert len(first) == 2  # at its cap
    codes, second, _ = q.complete_and_pop_many([(t, 0.001, None) for t in first], 4)
    assert codes == [1, 1] and len(second) == 2 and {t.task_id for t in second}.isdisjoint(t.task_id for t in first)
    assert q.get_tenant_limits("a")["leased"] == 2
    codes, third, _ = q.complete_and_pop_many([(second[0], 0.001, None)], 4)  # one end: one more lease
    assert codes == [1] and len(third) == 1 and q.get_tenant_limits("a")["leased"] == 2
    codes, rest, _ = q.complete_and_pop_many([(second[1], 0.001, None), (third[0], 0.001, None)], 4)
    assert codes == [1, 1] and len(rest) == 2 and q.get_tenant_limits("a")["leased"] == 2
    q.complete_and_pop_many([(t, 0.001, None) for t in rest], 0)
    assert q.get_tenant_limits("a")["leased"] == 0 and q.get_stats()["tasks_completed"] == 7


def test_batch_leases_and_release_and_expiry_respect_the_cap(make_config: Any) -> None:
    q = TaskQueue(make_config(tenant_concurrency=1))
    push(q, "a", 4)
    batch = q.pop_many(4)
    assert len(batch) == 1
    q.release(batch)  # the lease ends: a rejoins and its task is leased again, once
    again = q.pop_many(4)
    assert len(again) == 1
    short = q.pop_many(4)
    assert short == []
    time.sleep(0.05)
    q.extend(again, lease_seconds=0.001)  # the lease runs out: the next pop takes it back
    time.sleep(0.02)
    after = q.pop_many(4)
    assert len(after) == 1  # the expired lease no longer counts, the new one does
    assert q.get_tenant_limits("a")["leased"] == 1


def test_the_cap_holds_for_the_hand_off_to_a_parked_slot(make_config: Any) -> None:
    q = TaskQueue(make_config(tenant_limits={"a": {"concurrency": 1}}))
    push(q, "a")
    first = q.pop()
    assert first is not None
    step = q.pop_step(park_ms=60_000)  # a slot parks: nothing it may take
    assert not step.tasks
    push(q, "a")  # a is at its cap: not handed to the parked slot
    assert not q.take_handed(step.token).tasks
    q.complete(first)  # a rejoins: a wake-up, and the slot's pop takes it
    got = q.pop_step(unpark=step.token)
    assert [t.user_id for t in got.tasks] == ["a"]


def test_pause_keeps_the_queue_and_resume_rejoins_at_the_fair_place(make_config: Any) -> None:
    q = TaskQueue(make_config())
    push(q, "a", 3)
    push(q, "b", 3)
    assert q.pause_tenant("a")["paused"] is True
    assert q.is_paused("a")
    push(q, "a", 2)  # pushes are accepted while paused
    assert [t.user_id for t in q.pop_many(10)] == ["b", "b", "b"]
    assert q.user_depth("a")["normal"] == 5
    assert q.resume_tenant("a")["held"] is None
    assert not q.is_paused("a")
    assert len(q.pop_many(10)) == 5


def test_pause_while_running_lets_the_task_finish_and_holds_the_rest(make_config: Any) -> None:
    q = TaskQueue(make_config())
    push(q, "a", 2)
    running = q.pop()
    assert running is not None
    q.pause_tenant("a")
    assert q.pop() is None
    q.complete(running)  # the lease ends while paused: a stays out
    assert q.pop() is None
    assert q.get_tenant_limits("a")["held"] == "paused"
    q.resume_tenant("a")
    assert q.pop() is not None


def test_rejoin_keeps_the_turn(make_config: Any) -> None:
    """A tenant held at its cap rejoins with its finish tag: it neither jumps ahead of users that
    were waiting nor loses its turn."""
    q = TaskQueue(make_config(tenant_limits={"a": {"concurrency": 1}}))
    push(q, "a", 3)
    push(q, "b", 3)
    push(q, "c", 3)
    first = q.pop_many(3)
    assert [t.user_id for t in first] == ["a", "b", "c"]
    q.complete(first[0])  # a rejoins at its finish tag, level with b and c's next turn
    assert [t.user_id for t in q.pop_many(3)] == ["a", "b", "c"]


def test_runtime_limits_win_over_settings_and_clear_back(make_config: Any) -> None:
    q = TaskQueue(make_config(workers=[{"id": "w1", "assigned_users": ["*"]}], tenant_concurrency=5,
                              tenant_limits={"org:*": {"concurrency": 2, "rate": "100/m"}}))
    state = q.get_tenant_limits("org:1")
    assert (state["concurrency"], state["concurrency_source"]) == (2, "settings:org:*")
    assert (state["rate"], state["burst"], state["burst_source"]) == ("100/m", 1, "default")
    assert q.get_tenant_limits("x")["concurrency_source"] == "default"
    state = q.set_tenant_limits("org:1", concurrency=1, rate=None)
    assert (state["concurrency"], state["concurrency_source"]) == (1, "runtime")
    assert (state["rate"], state["rate_source"]) == (None, "runtime")
    push(q, "org:1", 3)
    assert len(q.pop_many(3)) == 1
    state = q.set_tenant_limits("org:1", concurrency=3)  # raised: rejoins at once
    assert state["rate_source"] == "runtime"  # unchanged
    assert len(q.pop_many(3)) == 2
    state = q.clear_tenant_limits("org:1")
    assert (state["concurrency"], state["concurrency_source"], state["rate"]) == (2, "settings:org:*", "100/m")


def test_a_lowered_cap_takes_the_tenant_out_of_the_rotation_at_once(make_config: Any) -> None:
    q = TaskQueue(make_config())
    push(q, "a", 4)
    push(q, "b", 1)
    assert q.pop() is not None  # a
    q.set_tenant_limits("a", concurrency=1)
    assert q.get_tenant_limits("a")["held"] == "cap"
    assert [t.user_id for t in q.pop_many(5)] == ["b"]


def test_a_rate_limit_parks_the_tenant_until_its_next_token(make_config: Any) -> None:
    q = TaskQueue(make_config(tenant_limits={"a": {"rate": "10/s", "burst": 2}}))
    push(q, "a", 5)
    assert len(q.pop_many(5)) == 2  # the burst
    got, due = q.pop_many_reply(5)
    assert got == []
    assert due is not None and 0 < due <= 0.11  # the pop says when the next token is due
    state = q.get_tenant_limits("a")
    assert state["held"] == "rate" and state["next_token_at"] is not None
    time.sleep(due + 0.005)
    assert len(q.pop_many(5)) == 1
    assert q.pop_many(5) == []


def test_rate_limit_started_count(make_config: Any) -> None:
    """20/s for 1.5 s after the first token: about 30 leases (no polling: pops wait for the due time)."""
    q = TaskQueue(make_config(tenant_limits={"a": {"rate": "20/s"}}))
    push(q, "a", 100)
    started = 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        tasks, due = q.pop_many_reply(10)
        started += len(tasks)
        if not tasks:
            time.sleep(min(due or 0.05, max(0.0, end - time.monotonic())))
    assert 29 <= started <= 32, started


def test_bad_limits_are_refused(make_config: Any) -> None:
    q = TaskQueue(make_config())
    for kwargs in ({"concurrency": 0}, {"rate": "10/x"}, {"burst": -1}, {"concurrency": True}):
        with pytest.raises(TaskValidationError):
            q.set_tenant_limits("a", **kwargs)
    with pytest.raises(TaskValidationError):
        q.pause_tenant("bad id")
    with pytest.raises(ConfigurationError, match=r"tenant_limits\[\"a\"\]: rate"):
        make_config(tenant_limits={"a": {"rate": "fast"}})


def test_garbage_in_a_leased_counter_is_recounted(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(tenant_concurrency=2))
    push(q, "a", 4)
    running = q.pop_many(4)
    assert len(running) == 2
    redis_client.hset(q.keys.tenant_leased, "a", "garbage")
    q.complete(running[0])  # the counter is recounted from the leases: 1, and a rejoins
    assert q.get_tenant_limits("a")["leased"] == 1
    assert q.pop() is not None
    assert q.pop() is None
    assert q.get_tenant_limits("a")["leased"] == 2
    assert q.get_stats()["tasks_repaired"] >= 1


def test_async_queue_has_the_same_tenant_api(make_config: Any) -> None:
    async def main() -> dict[str, Any]:
        async with AsyncTaskQueue(make_config()) as q:
            await q.set_tenant_limits("a", concurrency=1)
            await q.pause_tenant("a")
            assert await q.is_paused("a")
            await q.resume_tenant("a")
            return await q.get_tenant_limits("a")
    state = asyncio.run(main())
    assert state["concurrency"] == 1 and state["paused"] is False


# --- the flag 'any limit may apply' (issue 17): no lookups while none exists, exact once one does ------
def test_without_limits_the_flag_is_off_and_a_cap_set_at_runtime_holds_at_once(
        make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config())
    flag = q.keys.limits_on
    push(q, "a", 5)
    push(q, "b", 1)
    leased = q.pop_many(3)  # leased while no limit exists: the leased counts are kept all the same
    assert redis_client.get(flag) == b"0"
    assert sorted(t.user_id or "" for t in leased) == ["a", "a", "b"]
    assert q.get_tenant_limits("a")["leased"] == 2
    state = q.set_tenant_limits("a", concurrency=2)  # at its cap already: held at once
    assert redis_client.get(flag) == b"1" and state["held"] == "cap" and state["leased"] == 2
    assert q.pop_many(5) == []
    q.complete(leased[0] if leased[0].user_id == "a" else leased[1])
    nxt = q.pop_many(5)
    assert [t.user_id for t in nxt] == ["a"]  # one lease ended: exactly one more
    q.clear_tenant_limits("a")  # nothing limits, pauses or holds anyone: the flag goes off
    assert redis_client.get(flag) == b"0"
    assert len(q.pop_many(5)) == 2  # a's last two, no cap
    q.pause_tenant("b")
    assert redis_client.get(flag) == b"1"
    q.resume_tenant("b")
    assert redis_client.get(flag) == b"0"


def test_a_lost_flag_is_looked_at_again(make_config: Any, redis_client: redis.Redis) -> None:
    q = TaskQueue(make_config(tenant_limits={"a": {"concurrency": 1}}))
    push(q, "a", 3)
    assert len(q.pop_many(3)) == 1
    assert redis_client.get(q.keys.limits_on) == b"1"
    redis_client.delete(q.keys.limits_on)  # e.g. a Redis restored from an older copy: looked at again
    push(q, "a", 1)
    assert q.pop_many(3) == []  # the cap holds
    assert redis_client.get(q.keys.limits_on) == b"1"


def test_a_pause_written_without_the_flag_is_seen_at_the_next_settings_check(
        make_config: Any, redis_client: redis.Redis) -> None:
    """A process of a former version pauses with a bare HSETNX (its tenant script does not keep
    the flag): the periodic settings check (limits_sync, every few seconds) turns the flag on."""
    q = TaskQueue(make_config())
    push(q, "a", 1)
    q.limits_recheck_seconds = 0.0  # every call checks the settings mirror (default: every 5 s)
    assert [t.user_id for t in q.pop_many(1)] == ["a"] and redis_client.get(q.keys.limits_on) == b"0"
    redis_client.hsetnx(q.keys.tenant_paused, "a", "1")  # exactly what the former tenant.lua wrote
    push(q, "a", 1)
    assert q.pop_many(1) == []  # paused: the settings check before this pop saw it
    assert redis_client.get(q.keys.limits_on) == b"1"
