"""End-to-end: ``manage.py runfairworker`` as a real subprocess against a real Redis."""

from __future__ import annotations

import signal

import pytest
import redis

from fairque_django import TaskQueue
from fairque_django.conf import get_config
from tests.support import eventually
from tests.support.processes import Workers, run_manage
from tests.testapp import tasks as t

LOG = t.LOG


@pytest.fixture
def queue(redis_client: redis.Redis) -> TaskQueue:
    return TaskQueue(get_config())


def log(r: redis.Redis, key: str = LOG) -> list[str]:
    return [x.decode() for x in r.lrange(key, 0, -1)]


def test_round_robin_across_users(queue: TaskQueue, redis_client: redis.Redis, workers: Workers) -> None:
    for i in range(4):
        queue.push(t.record(f"1-{i}"), user_id="user:1")
    queue.push(t.record("2-0"), user_id="user:2")
    queue.push(t.record("3-0"), user_id="user:3")
    proc = workers.start("worker-001", "--burst", "--concurrency", "1")
    out = proc.finish(60)
    assert proc.returncode == 0, out
    assert log(redis_client) == ["user:1|1-0", "user:2|2-0", "user:3|3-0", "user:1|1-1", "user:1|1-2",
                                 "user:1|1-3"]
    assert "done in" in out and "user:2" in out  # logs say which task ran for which user


def test_steals_only_when_own_users_are_empty(queue: TaskQueue, redis_client: redis.Redis,
                                              workers: Workers) -> None:
    queue.push(t.record("stolen"), user_id="user:1")
    queue.push(t.record("own-1"), user_id="user:4")
    queue.push(t.record("own-2"), user_id="user:5")
    proc = workers.start("worker-002", "--burst", "--concurrency", "1")
    out = proc.finish(60)
    assert proc.returncode == 0, out
    assert log(redis_client) == ["user:4|own-1", "user:5|own-2", "user:1|stolen"]


def test_retry_and_dlq(queue: TaskQueue, redis_client: redis.Redis, workers: Workers) -> None:
    queue.push(t.flaky("e2e", 1), user_id="user:1")
    dead = t.always_fails("e2e")
    queue.push(dead, user_id="user:2")
    bogus = t.record("x")
    bogus.func_name = "subprocess.call"
    queue.push(bogus, user_id="user:3")
    proc = workers.start("worker-001", "--burst")
    out = proc.finish(90)
    assert proc.returncode == 0, out
    assert log(redis_client) == ["user:1|flaky-ok-2"]
    entries = {e.task_id: e for e in queue.get_dlq()}
    assert set(entries) == {dead.task_id, bogus.task_id}
    assert "Traceback" in entries[dead.task_id].traceback and entries[dead.task_id].attempts == 2
    assert entries[bogus.task_id].failure_type == "unregistered"
    assert "always fails" in out  # the log says why it failed


def test_sigterm_drains_gracefully(queue: TaskQueue, redis_client: redis.Redis, workers: Workers) -> None:
    queue.push(t.record("long", 1.5), user_id="user:1")
    queue.push(t.record("next"), user_id="user:1")
    proc = workers.start("worker-001", "--concurrency", "1")
    eventually(lambda: redis_client.llen(LOG + ":start"), timeout=20)
    proc.send_signal(signal.SIGTERM)
    out = proc.finish(30)
    assert proc.returncode == 0, out
    assert log(redis_client) == ["user:1|long"]  # finished, and took nothing new
    stats = queue.get_stats()
    assert stats["tasks_completed"] == 1 and stats["tasks_failed"] == 0 and stats["tasks_queued"] == 1


def test_sigkill_mid_task_loses_nothing(queue: TaskQueue, redis_client: redis.Redis, workers: Workers) -> None:
    task = t.record("victim", 0.5)
    queue.push(task, user_id="user:2")
    proc = workers.start("worker-001", "--concurrency", "1")
    eventually(lambda: redis_client.llen(LOG + ":start"), timeout=20)
    proc.kill()
    proc.wait(10)
    assert log(redis_client) == []
    assert queue.get_task_state(task.task_id)["st"] == "leased"  # type: ignore[index]
    # a replacement (the other worker steals user:2) runs it once the lease (5 s in test settings) expires
    proc2 = workers.start("worker-002", "--concurrency", "1")
    eventually(lambda: log(redis_client), timeout=30)
    assert log(redis_client) == ["user:2|victim"]
    proc2.send_signal(signal.SIGTERM)
    proc2.finish(30)
    stats = queue.get_stats()
    assert stats["tasks_completed"] == 1 and stats["tasks_expired"] == 1 and stats["dlq_size"] == 0


def test_health_probe(queue: TaskQueue, workers: Workers) -> None:
    assert run_manage("fairque_health", "worker-001").returncode == 1
    proc = workers.start("worker-001")
    eventually(lambda: run_manage("fairque_health", "worker-001").returncode == 0, timeout=20)
    ok = run_manage("fairque_health", "worker-001", "--json")
    assert '"alive": true' in ok.stdout
    proc.send_signal(signal.SIGTERM)
    proc.finish(30)
    assert proc.returncode == 0
    assert run_manage("fairque_health", "worker-001").returncode == 1


@pytest.mark.parametrize(("args", "said"), [
    ((), "prefetch (tiny tasks in batches: as many as a slot runs in 5 ms x 2 slots)"),
    (("--prefetch-batch-ms", "0"), "prefetch (one task at a time)"),
    (("--no-prefetch",), "batches of short tasks, no prefetch (as many as a slot runs in 5 ms x 2 slots)"),
], ids=["default", "one-task-prefetches", "no-prefetch"])
def test_prefetch_options_reach_the_worker_which_says_how_it_leases(
        queue: TaskQueue, redis_client: redis.Redis, workers: Workers, args: tuple[str, ...], said: str) -> None:
    for i in range(4):
        queue.push(t.record(f"p{i}"), user_id="user:1")
    proc = workers.start("worker-001", "--concurrency", "2", *args)
    eventually(lambda: len(log(redis_client)) == 4, timeout=30, what="every task ran")
    assert proc.terminate(30) == 0
    assert "starting: 2 slots" in proc.log() and said in proc.log(), proc.log()[-2000:]


@pytest.mark.parametrize("value", ["-1", "nan", "5000"])
def test_a_prefetch_batch_out_of_range_is_refused(value: str) -> None:
    res = run_manage("runfairworker", "worker-001", "--prefetch-batch-ms", value)
    assert res.returncode == 1 and "--prefetch-batch-ms must be between 0 and 1000" in res.stderr


def test_unknown_worker_id_lists_configured_ids() -> None:
    res = run_manage("runfairworker", "worker-999")
    assert res.returncode == 1
    assert "worker-999" in res.stderr and "worker-001" in res.stderr and "worker-002" in res.stderr


def _queue_for(settings_module: str) -> TaskQueue:
    """A producer with the configuration of another settings module (partitions follow it)."""
    import importlib

    from fairque_django.core.config import FairQueueConfig

    raw = importlib.import_module(settings_module).FAIRQUE
    return TaskQueue(FairQueueConfig.from_dict({k: v for k, v in raw.items() if k in ("redis", "workers", "queue")}))


def test_start_up_warns_about_tenants_no_running_worker_may_serve(redis_client: redis.Redis, workers: Workers) -> None:
    q = _queue_for("tests.no_steal_settings")
    q.push(t.record("org"), user_id="org:1")
    proc = workers.start("worker-001", "--burst", DJANGO_SETTINGS_MODULE="tests.no_steal_settings")
    out = proc.finish(60)
    assert proc.returncode == 0, out
    assert ("worker worker-002 is never seen: tenants matching user:* (its assigned_users) no running worker "
            "may steal are served only by orphan takeover (by live workers, when they have no work of their own, "
            "once it has had no heartbeat for 15 s); for their fair share start it: "
            "python manage.py runfairworker worker-002") in out
    assert log(redis_client) == ["org:1|org"]


def test_readme_quick_start_serves_every_tenant(redis_client: redis.Redis, workers: Workers) -> None:
    """README.md's configuration with README.md's commands: every tenant is served."""
    q = _queue_for("tests.readme_settings")
    q.push(t.record("org"), user_id="org:7")
    q.push(t.record("user"), user_id="user:42")
    env = {"DJANGO_SETTINGS_MODULE": "tests.readme_settings"}
    first = workers.start("worker-001", **env)  # alone it steals user:* when it has nothing of its own, and says so
    eventually(lambda: sorted(log(redis_client)) == ["org:7|org", "user:42|user"], timeout=20)
    eventually(lambda: run_manage("fairque_health", "worker-001", **env).returncode == 0, timeout=20)
    second = workers.start("worker-002", **env)
    q.push(t.record("user-2"), user_id="user:43")
    eventually(lambda: "user:43|user-2" in log(redis_client), timeout=20)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    out1 = first.finish(30)
    out2 = second.finish(30)
    assert "worker worker-002 is never seen: tenants matching user:* are served only by stealing (worker-001" in out1
    assert "python manage.py runfairworker worker-002" in out1
    assert "is never seen" not in out2 and "is down" not in out2  # both README workers run: nothing to say
