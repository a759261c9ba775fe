"""Unique keys under concurrent producers and a dependency graph of 1,000 tasks run by real worker
processes (docs/workflows.md)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis

from fairque_django import Task, TaskQueue, TaskStatus
from tests.support import eventually
from tests.support.processes import Workers

from . import tasks
from .helpers import runs, task_states, text
from .relconfig import WORKER_IDS, core_config, user

PRODUCERS = 8
KEYS = 25
ROUNDS = 4


@pytest.mark.parametrize("mode", ["drop", "replace", "debounce"])
def test_one_task_per_unique_key_under_concurrent_producers(redis_client: redis.Redis, rel_env: dict[str, str],
                                                            mode: str) -> None:
    config = core_config(rel_env)
    prefix = config.queue.stats_prefix
    start = threading.Barrier(PRODUCERS)
    seen: list[Counter[tuple[str, str]]] = [Counter() for _ in range(PRODUCERS)]
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        try:
            queue = TaskQueue(config)
            start.wait(10)
            for r in range(ROUNDS):
                for k in range(KEYS):
                    task = tasks.work.create_task((p * 1000 + r,), user_id=user(k % 8))
                    task.set_unique(f"key:{k}", 60, mode)
                    out = queue.push(task)
                    seen[p][(f"key:{k}", out["task_id"])] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    states = task_states(redis_client, prefix)
    assert len(states) == KEYS, Counter(states.values())  # exactly one task per key
    assert set(states.values()) == {"delayed" if mode == "debounce" else "queued"}
    answered: dict[str, set[str]] = {}
    for counter in seen:
        for key, task_id in counter:
            answered.setdefault(key, set()).add(task_id)
    for k in range(KEYS):
        held = text(redis_client.get(f"{{{prefix}}}:uniq:{len(user(k % 8))}:{user(k % 8)}:key:{k}"))
        assert answered[f"key:{k}"] == {held}, (k, answered[f"key:{k}"], held)  # every producer got that task
        assert held in states
    queue = TaskQueue(config)
    assert queue.get_stats()["tasks_pushed"] == KEYS


@dataclass
class Node:
    task: Task
    deps: list[Node] = field(default_factory=list)
    fail: bool = False
    allow: bool = False

    def expected(self, memo: dict[str, str]) -> str:
        tid = self.task.task_id
        if tid not in memo:
            outcomes = [d.expected(memo) for d in self.deps]
            if any(o != "ok" for o in outcomes) and not self.allow:
                memo[tid] = "cancelled"
            else:
                memo[tid] = "dead" if self.fail else "ok"
        return memo[tid]


STRANDS = 10
DIAMONDS = 25


def build_graph() -> list[list[Node]]:
    """10 strands of 25 diamonds (a -> b, c -> d; the next diamond's a depends on this d): 1,000
    tasks over 8 tenants (c is another tenant's task). Strand 3's b of diamond 12 fails for good (its
    d and all later diamonds of the strand are cancelled); strand 7's b of diamond 5 fails but its
    d allows failure; strand 9's last c fails."""
    strands = []
    for s in range(STRANDS):
        groups: list[list[Node]] = []
        prev: Node | None = None
        for k in range(DIAMONDS):
            n = (s * DIAMONDS + k) * 4

            def make(i: int, owner: str, *deps: Node, fail: bool = False, allow: bool = False, n: int = n) -> Node:
                return Node(tasks.node.create_task((n + i, fail), user_id=owner), list(deps), fail, allow)

            a = make(0, user(s), *([prev] if prev else []))
            b = make(1, user(s), a, fail=(s, k) in {(3, 12), (7, 5)})
            c = make(2, user(s + 1), a, fail=(s, k) == (9, DIAMONDS - 1))
            d = make(3, user(s), b, c, allow=(s, k) == (7, 5))
            groups.append([a, b, c, d])
            prev = d
        strands.append([node for group in groups for node in group])
    return strands


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dependency_graph_of_1000_tasks(redis_client: redis.Redis, rel_env: dict[str, str],
                                        workers: Workers) -> None:
    rel_env.update(FAIRQUE_REL_CONCURRENCY="4")
    config = core_config(rel_env)
    prefix = config.queue.stats_prefix
    queue = TaskQueue(config)
    for wid in WORKER_IDS[:3]:
        workers.start(wid, "--loglevel", "WARNING")
    strands = build_graph()
    nodes = [node for strand in strands for node in strand]
    assert len(nodes) == 1000
    for node in nodes:
        node.task.set_dependencies([d.task for d in node.deps], node.allow)
    # pushed while the workers run, in dependency order, a diamond per call: many dependencies
    # finished (or died) before their dependents were pushed, others are still pending
    for k in range(DIAMONDS):
        for strand in strands:
            queue.push_batch([n.task for n in strand[k * 4:k * 4 + 4]])

    def settled() -> dict[str, str] | None:
        states = task_states(redis_client, prefix)
        if any(st in ("waiting", "queued", "delayed", "leased") for st in states.values()):
            return None
        return states

    states = eventually(settled, timeout=240, interval=0.5, what="every task finished, died or was cancelled")
    memo: dict[str, str] = {}
    expected = {n.task.task_id: n.expected(memo) for n in nodes}
    ran = runs(redis_client, tasks.RUNS)
    got = {}
    users = {n.task.task_id: n.task.user_id or "" for n in nodes}
    for tid in expected:
        st = states.get(tid)
        if st == "?" and not redis_client.exists(f"{{{prefix}}}:t:{tid}"):
            st = None  # it finished between task_states' SCAN and its read of the state (its hash is gone)
        if st is None:  # finished: a cancelled task's record reads CANCELLED (its hash is gone)
            st = "cancelled" if queue.read_result(tid, users[tid]).status is TaskStatus.CANCELLED else None
        got[tid] = "dead" if st == "dead" else "cancelled" if st == "cancelled" else "ok" if st is None else st
    assert got == expected
    counts = Counter(expected.values())
    # strand 3: d of diamond 12 and diamonds 13..24; strand 9: the last d
    assert counts["cancelled"] == 4 * 12 + 1 + 1
    assert counts["dead"] == 3
    for tid, outcome in expected.items():  # nothing cancelled ran; everything else ran once
        assert ran.get(tid, 0) == (0 if outcome == "cancelled" else 1), (tid, outcome)
    assert redis_client.zcard(f"{{{prefix}}}:live") == 0
    assert not [k for k in redis_client.scan_iter(match=f"{{{prefix}}}:deps:*")]
    assert queue.get_stats()["tasks_cancelled"] == counts["cancelled"]
