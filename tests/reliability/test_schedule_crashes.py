"""A schedule that ticks every second, fired by three worker processes of which one is SIGKILLed
(right at a tick boundary, while the workers claim and push it) every few seconds and started again:
over 60 s, 60 +- 1 ticks fire, no tick's task is pushed twice, every claim is confirmed."""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from fairque_django.core.queue import TaskQueue
from tests.support.processes import Workers

from .relconfig import core_config
from .schedule_tasks import TICK_RUNS

WINDOW = 60
FIRED = re.compile(r"schedule every-second: tick (\d+) fired \((\d+) task")


def runs(client: redis.Redis) -> dict[int, int]:
    return {int(k): int(v) for k, v in client.hgetall(TICK_RUNS).items()}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_one_second_schedule_fires_each_tick_once_while_workers_are_killed(
        redis_client: redis.Redis, rel_env: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    rel_env["DJANGO_SETTINGS_MODULE"] = "tests.reliability.schedule_settings"
    ids = ("rel-1", "rel-2", "rel-3")
    procs = {wid: workers.start(wid, "--concurrency", "2") for wid in ids}
    deadline = time.monotonic() + 60
    while not runs(redis_client) and time.monotonic() < deadline:  # the workers are up and firing
        time.sleep(0.2)
    assert runs(redis_client), [p.log() for p in procs.values()]

    start = math.ceil(time.time()) + 2
    end = start + WINDOW
    rng = random.Random(16)
    kills = 0
    while time.time() < end:
        time.sleep(rng.uniform(1.5, 3.5))
        now = time.time()
        time.sleep(math.ceil(now) - now + rng.uniform(0.0, 0.03))  # right as a tick is due
        wid = rng.choice(ids)
        procs[wid].kill()
        kills += 1
        procs[wid] = workers.start(wid, "--concurrency", "2")

    # a claim whose claimer was killed before it pushed is pushed by another after 10 s (+ 5 s look)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and not all(t in runs(redis_client) for t in range(start, end)):
        time.sleep(0.5)
    for proc in procs.values():
        proc.terminate(30)

    done = runs(redis_client)
    in_window = [t for t in range(start, end) if t in done]
    assert abs(len(in_window) - WINDOW) <= 1, sorted(set(range(start, end)) - set(done))
    # never twice: across every worker process (killed ones included), at most one push stored a
    # tick's task; the stats count one stored task per tick run
    pushes: Counter[int] = Counter()
    for log in tmp_path.glob("*.log"):
        for tick, pushed in FIRED.findall(log.read_text(errors="replace")):
            pushes[int(tick)] += int(pushed)
    assert max(pushes.values()) == 1, [t for t, n in pushes.items() if n > 1]
    queue = TaskQueue(core_config(rel_env))
    stats = queue.get_stats()
    # the schedule fires on until the workers stop: a tick pushed last may not have run yet (queued, or
    # leased by a worker killed or stopped meanwhile)
    assert stats["tasks_pushed"] == len(done) + stats["tasks_pending"] + stats["tasks_active"], stats
    assert stats["tasks_pending"] + stats["tasks_active"] <= 2, stats
    state = queue.schedule_states(["every-second"])["every-second"]
    assert int(state["fired"]) == stats["tasks_pushed"]
    assert not [k for k in state if k.startswith("c:")], state  # every claim confirmed
    reruns = {t: n for t, n in done.items() if n > 1}  # a task killed after its body: at least once
    print(f"\nschedule under SIGKILL: {kills} kills, {len(in_window)} of {WINDOW} ticks in the window, "
          f"{len(done)} ticks in all, tasks re-run after a kill: {len(reruns)}")
