"""Bad input, table-driven: each is a clear, typed error and nothing is lost or half-written.

Covers user ids, priorities, arguments, payload size, unknown task names, unknown worker ids,
malformed configuration (dict, YAML, Django setting) and corrupt data planted in Redis, which a
worker dead-letters (or moves aside) while it keeps serving the other users."""

from __future__ import annotations

import datetime
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from fairque_django import (
    ConfigurationError,
    FairQueueConfig,
    MissingTenantError,
    PayloadTooLargeError,
    Priority,
    SerializationError,
    Task,
    TaskQueue,
    TaskValidationError,
    UnknownWorkerError,
    Worker,
)
from fairque_django.conf import FairQueueImproperlyConfigured, get_config
from tests.support.inprocess import running_worker as shared_running_worker
from tests.support.processes import Workers
from tests.support.wait import eventually

from . import tasks
from .helpers import assert_stats_balance, runs, scan

WORKERS = [
    {"id": "w1", "assigned_users": ["a", "b"], "steal_targets": ["c"], "max_concurrent_tasks": 2,
     "poll_interval_seconds": 0.1, "heartbeat_interval_seconds": 0.2, "graceful_shutdown_timeout": 2},
    {"id": "w2", "assigned_users": ["c"], "steal_targets": ["a", "b"]},
]


@pytest.fixture
def config(make_config: Any, prefix: str) -> FairQueueConfig:
    return make_config(workers=WORKERS, worker_id="w1", stats_prefix=prefix, max_payload_bytes=2000,
                       lease_timeout_seconds=1, default_max_retries=1, retry_backoff_base_seconds=0.05)


@pytest.fixture
def queue(config: FairQueueConfig) -> TaskQueue:
    return TaskQueue(config)


def keys_of(client: redis.Redis, prefix: str) -> list[str]:
    return scan(client, f"{{{prefix}}}*")


# --------------------------------------------------------------------------- push validation

BAD_USERS: list[tuple[str, Any, type[Exception], str]] = [
    ("empty", "", TaskValidationError, "must not be empty"),
    ("closing brace", "a}b", TaskValidationError, "braces"),
    ("hash tag", "x:{y}", TaskValidationError, "braces"),
    ("newline", "\n", TaskValidationError, "whitespace"),
    ("inner newline", "a\nb", TaskValidationError, "whitespace"),
    ("space", "a b", TaskValidationError, "whitespace"),
    ("nul", "a\x00b", TaskValidationError, "control"),
    ("1 MB", "u" * 1_000_000, TaskValidationError, "limit is 200"),
    ("int", 42, TaskValidationError, "must be a string"),
    ("none without tenant", None, MissingTenantError, "no user id"),
]


@pytest.mark.parametrize(("case", "user_id", "error", "message"), BAD_USERS, ids=[c[0] for c in BAD_USERS])
def test_bad_user_ids_are_rejected_and_write_nothing(queue: TaskQueue, redis_client: redis.Redis, prefix: str,
                                                     case: str, user_id: Any, error: type[Exception],
                                                     message: str) -> None:
    good = tasks.work.create_task((1,), user_id="a")
    for push in (lambda: queue.push(tasks.work.create_task((0,)), user_id=user_id),
                 lambda: queue.push_batch([good, tasks.work.create_task((0,))], user_id=user_id)):
        with pytest.raises(error, match=message):
            push()
    assert keys_of(redis_client, prefix) == []  # not even the good task of the batch


BAD_PRIORITIES = [0, 7, -1, None, 3.5, True, "high", "HIGH", "urgent", "6", ""]


@pytest.mark.parametrize("priority", BAD_PRIORITIES, ids=repr)
def test_bad_priorities_are_rejected(priority: Any) -> None:
    with pytest.raises(TaskValidationError, match="invalid priority"):
        Task.create(user_id="a", priority=priority)
    with pytest.raises(TaskValidationError, match="invalid priority"):
        tasks.work.create_task((1,), user_id="a", priority=priority if priority is not None else 0)


def test_priority_members_and_ints_are_accepted(queue: TaskQueue) -> None:
    task = Task.create(user_id="a", priority=Priority.HIGH)
    assert queue.push(task)["priority"] == 4
    assert Task.create(user_id="a", priority=6).priority is Priority.CRITICAL


class Opaque:
    pass


BAD_ARGS: list[tuple[str, Any]] = [
    ("datetime", datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)),
    ("set", {1, 2}),
    ("object", Opaque()),
    ("bytes", b"raw"),
    ("nan", float("nan")),
    ("tuple key", {(1, 2): "x"}),
]


@pytest.mark.parametrize(("case", "value"), BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_non_json_arguments_fail_at_enqueue(case: str, value: Any, queue: TaskQueue, redis_client: redis.Redis,
                                            prefix: str) -> None:
    for build in (lambda: tasks.work.create_task((value,), user_id="a"),
                  lambda: tasks.work.create_task((), {"n": value}, user_id="a"),
                  lambda: Task.create(user_id="a", payload={"v": value})):
        with pytest.raises(SerializationError, match="JSON"):
            queue.push(build())
        with pytest.raises(SerializationError, match="JSON"):
            queue.push_batch([Task.create(user_id="a"), build()])
    assert keys_of(redis_client, prefix) == []  # nothing written


def test_payload_over_the_limit_is_rejected_and_the_batch_writes_nothing(queue: TaskQueue, redis_client: redis.Redis,
                                                                        prefix: str) -> None:
    big = Task.create(user_id="a", payload={"blob": "x" * 3000})
    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
        queue.push(big)
    ok = [Task.create(user_id="a", payload={"i": i}) for i in range(3)]
    with pytest.raises(PayloadTooLargeError):
        queue.push_batch([*ok, big])
    assert keys_of(redis_client, prefix) == []
    assert queue.push_batch(ok)["pushed"] == 3


@pytest.mark.parametrize(("field", "value", "message"), [
    ("task_id", "has space", "task id"), ("task_id", "x{y}", "task id"), ("task_id", "", "task id"),
])
def test_bad_task_ids_are_rejected(queue: TaskQueue, field: str, value: str, message: str) -> None:
    task = Task.create(user_id="a")
    setattr(task, field, value)
    with pytest.raises(TaskValidationError, match=message):
        queue.push(task)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_retries": -1}, "max_retries"), ({"max_retries": "3"}, "max_retries"),
    ({"timeout": 0}, "timeout"), ({"timeout": -5}, "timeout"), ({"delay_seconds": 1, "execute_after": 5}, "either"),
])
def test_bad_task_options_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskValidationError, match=message):
        Task.create(user_id="a", **kwargs)


# --------------------------------------------------------------------------- worker side


@contextmanager
def running_worker(config: FairQueueConfig, worker_id: str = "w1") -> Iterator[Worker]:
    with shared_running_worker(config, worker_id, task_modules=["tests.reliability.tasks"]) as worker:
        yield worker


def slots_alive(worker: Worker) -> bool:
    """Every slot thread of ``worker`` still runs (they are named ``<worker id>-slot-<n>``)."""
    prefix = f"{worker.worker_id}-slot-"
    return sum(1 for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()) == worker.concurrency


def test_unknown_task_name_is_dead_lettered_and_never_imported(queue: TaskQueue, config: FairQueueConfig,
                                                               redis_client: redis.Redis, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mark = tmp_path / "imported"
    monkeypatch.setenv("FAIRQUE_EVIL_MARK", str(mark))
    sys.modules.pop("tests.testapp.evil", None)
    names = ["tests.testapp.evil.run", "tests.reliability.no_such_module.fn", "tests.reliability.tasks.not_a_task",
             "os.system", "json.loads"]
    bad = [Task.create(user_id="b", func_name=name, args=["echo"]) for name in names]
    good = [tasks.work.create_task((i,), user_id=u) for i, u in enumerate("aacc")]
    queue.push_batch(bad)
    queue.push_batch(good)
    with running_worker(config) as worker:
        eventually(lambda: queue.dlq_size() == len(bad) and len(runs(redis_client, tasks.RUNS)) == len(good),
                   timeout=15, what="bad names dead-lettered, good tasks done")
        assert slots_alive(worker)
    entries = {e.task_id: e for e in queue.get_dlq()}
    for task in bad:
        entry = entries[task.task_id]
        assert entry.failure_type == "unregistered" and "not registered" in entry.error, entry
        assert entry.attempts == 1 and entry.user_id == "b"
    assert "tests.testapp.evil" not in sys.modules and not mark.exists()
    assert "tests.reliability.no_such_module" not in sys.modules
    assert_stats_balance(queue, redis_client)


def test_unknown_worker_id_is_a_clear_error(config: FairQueueConfig, workers: Workers) -> None:
    for build in (lambda: TaskQueue(config, worker_id="w9"), lambda: Worker(config, worker_id="w9"),
                  lambda: TaskQueue(config).pop("w9")):
        with pytest.raises(UnknownWorkerError, match=r"'w9'.*w1, w2"):
            build()
    res = workers.manage("runfairworker", "rel-9")
    assert res.returncode == 1
    assert "unknown worker id 'rel-9'" in res.stderr and "rel-1" in res.stderr, res.stderr
    res = workers.manage("fairque_health", "rel-9")
    assert res.returncode == 1 and "rel-9" in res.stderr


# --------------------------------------------------------------------------- configuration

BAD_DICTS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top key", {"worker": []}, "unknown key 'worker'"),
    ("workers not a list", {"workers": "w1"}, "workers"),
    ("worker not a mapping", {"workers": ["w1"]}, r"workers\[0\]"),
    ("missing worker id", {"workers": [{"assigned_users": ["a"]}]}, r"workers\[0\]\.id: is required"),
    ("empty worker id", {"workers": [{"id": ""}]}, r"workers\[0\]\.id"),
    ("unknown worker key", {"workers": [{"id": "w", "assigned": ["a"]}]}, "did you mean 'assigned_users'"),
    ("string user list", {"workers": [{"id": "w", "assigned_users": "a"}]}, "assigned_users"),
    ("bad type", {"workers": [{"id": "w", "poll_interval_seconds": "fast"}]}, "poll_interval_seconds"),
    ("zero", {"workers": [{"id": "w", "max_concurrent_tasks": 0}]}, "max_concurrent_tasks: must be >= 1"),
    ("bool as int", {"workers": [{"id": "w", "max_concurrent_tasks": True}]}, "max_concurrent_tasks"),
    ("duplicate worker", {"workers": [{"id": "w"}, {"id": "w"}]}, "duplicate worker id"),
    ("user twice", {"workers": [{"id": "w", "assigned_users": ["a"]}, {"id": "v", "assigned_users": ["a"]}]},
     "assigned to both"),
    ("brace in user", {"workers": [{"id": "w", "assigned_users": ["a{b"]}]}, "forbidden character"),
    ("unknown queue key", {"queue": {"lease_timeout": 3}}, "did you mean 'lease_timeout_seconds'"),
    ("zero lease", {"queue": {"lease_timeout_seconds": 0}}, "lease_timeout_seconds: must be > 0"),
    ("bad prefix", {"queue": {"stats_prefix": "a}b"}}, "stats_prefix"),
    ("bad fairness", {"queue": {"fairness": "random"}}, "fairness"),
    ("bad weight", {"queue": {"user_weights": {"a": -1}}}, "weight must be > 0"),
    ("bad port", {"redis": {"port": "abc"}}, "redis.port"),
    ("bad db", {"redis": {"db": 99}}, "redis.db"),
    ("bad url", {"redis": {"url": "http://x"}}, "redis.url"),
    ("unknown current worker", {"workers": [{"id": "w"}], "worker_id": "v"}, "unknown worker id 'v'"),
]


@pytest.mark.parametrize(("case", "data", "message"), BAD_DICTS, ids=[c[0] for c in BAD_DICTS])
def test_bad_config_dicts_name_the_offending_key(case: str, data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        FairQueueConfig.from_dict(data, environ={})


BAD_YAML: list[tuple[str, str, str]] = [
    ("unclosed list", "workers: [\n", "invalid YAML"),
    ("tab indentation", "queue:\n\tlease_timeout_seconds: 1\n", "invalid YAML"),
    ("duplicate key", "queue: {}\nqueue: {}\n", "duplicate key 'queue'"),
    ("top-level list", "- a\n- b\n", "must be a mapping"),
    ("empty", "", "is empty"),
    ("python tag", "queue: !!python/object:os.system {}\n", "invalid YAML"),
    ("wrong type", "workers:\n  - id: w\n    max_concurrent_tasks: ten\n", r"workers\[0\]\.max_concurrent_tasks"),
    ("unknown key", "queue:\n  stats_prefx: fq\n", "did you mean 'stats_prefix'"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD_YAML, ids=[c[0] for c in BAD_YAML])
def test_bad_yaml_is_a_clear_error(tmp_path: Path, case: str, content: str, message: str) -> None:
    path = tmp_path / "fq.yaml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        FairQueueConfig.from_yaml(path, environ={})


BAD_SETTINGS: list[tuple[str, Any, str]] = [
    ("not a dict", ["workers"], "must be a dict"),
    ("unknown django key", {"WORKERID": "w"}, "did you mean 'WORKER_ID'"),
    ("lower-case django key", {"task_modules": ["x"]}, "did you mean 'TASK_MODULES'"),
    ("task modules string", {"TASK_MODULES": "tests.reliability.tasks"}, "TASK_MODULES"),
    ("on commit not bool", {"ENQUEUE_ON_COMMIT": "yes"}, "ENQUEUE_ON_COMMIT"),
    ("unknown section", {"queues": {}}, "unknown key 'queues'"),
    ("wrong section type", {"queue": [1]}, "queue"),
    ("bad worker field", {"workers": [{"id": "w", "heartbeat_interval_seconds": -1}]}, "heartbeat_interval_seconds"),
    ("unknown worker id", {"workers": [{"id": "w"}], "WORKER_ID": "v"}, "unknown worker id 'v'"),
    ("file and sections", {"CONFIG_FILE": "x.yaml", "queue": {}}, "either CONFIG_FILE"),
    ("missing file", {"CONFIG_FILE": "/nonexistent/fq.yaml"}, "does not exist"),
]


@pytest.mark.parametrize(("case", "value", "message"), BAD_SETTINGS, ids=[c[0] for c in BAD_SETTINGS])
def test_bad_django_settings_raise_improperly_configured(case: str, value: Any, message: str) -> None:
    with override_settings(FAIRQUE=value), pytest.raises(FairQueueImproperlyConfigured, match=message) as info:
        get_config()
    assert isinstance(info.value, ImproperlyConfigured) and isinstance(info.value, ConfigurationError)
    get_config()  # the error does not stick once the setting is fixed


# --------------------------------------------------------------------------- corrupt data in Redis


def set_body(body: Callable[[str], Any]) -> Callable[[redis.Redis, str, str], None]:
    def plant(client: redis.Redis, base: str, tid: str) -> None:
        value = body(tid)
        client.hset(f"{base}:t:{tid}", "b", value if isinstance(value, str) else json.dumps(value))
    return plant


def drop_body(client: redis.Redis, base: str, tid: str) -> None:
    client.hdel(f"{base}:t:{tid}", "b")


def task_key_wrong_type(client: redis.Redis, base: str, tid: str) -> None:
    client.delete(f"{base}:t:{tid}")
    client.set(f"{base}:t:{tid}", "not a hash")


FUNC = "tests.reliability.tasks.work"
CORRUPT_TASKS: list[tuple[str, Callable[[redis.Redis, str, str], None], str]] = [
    ("non-JSON body", set_body(lambda tid: "{not json"), "not valid JSON"),
    ("body not an object", set_body(lambda tid: [1, 2]), "not a JSON object"),
    # a stored body names neither its id nor its user (the key and field u do): garbage in its own fields
    ("stored body with args not a list", set_body(lambda tid: {"f": FUNC, "a": "1"}), "'a'"),
    ("stored body with a bad priority", set_body(lambda tid: {"f": FUNC, "a": [1], "p": 9}), "invalid priority 9"),
    ("stored body with a bad creation time", set_body(lambda tid: {"f": FUNC, "a": [1], "c": "x"}), "'c'"),
    # a body of the former format names both
    ("id not a string", set_body(lambda tid: {"id": 7, "user": "b", "func": FUNC, "args": [1]}), "'id'"),
    ("user not a string", set_body(lambda tid: {"id": tid, "user": None, "func": FUNC, "args": [1]}), "'user'"),
    ("wrong field type", set_body(lambda tid: {"id": tid, "user": "b", "func": FUNC, "args": "1"}), "'args'"),
    ("body of another user", set_body(lambda tid: {"id": tid, "user": "a", "func": FUNC, "args": [1]}),
     "names user 'a'"),
    ("body of another task id", set_body(lambda tid: {"id": "someone-else", "user": "b", "func": FUNC,
                                                      "args": [1]}), "someone-else"),
    ("hash without body", drop_body, "no body"),
    ("task key of the wrong type", task_key_wrong_type, ""),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "plant", "reason"), CORRUPT_TASKS, ids=[c[0] for c in CORRUPT_TASKS])
def test_corrupt_task_is_dead_lettered_and_the_worker_keeps_serving(
        queue: TaskQueue, config: FairQueueConfig, redis_client: redis.Redis, prefix: str,
        case: str, plant: Callable[[redis.Redis, str, str], None], reason: str) -> None:
    victim = tasks.work.create_task((99,), user_id="b")
    queue.push(victim)
    plant(redis_client, queue.keys.base, victim.task_id)
    good = [tasks.work.create_task((i,), user_id=u) for i, u in enumerate("aaccab")]
    queue.push_batch(good)
    with running_worker(config) as worker:
        eventually(lambda: {t.task_id for t in good} <= set(runs(redis_client, tasks.RUNS))
                   and queue.get_dead(victim.task_id) is not None, timeout=10,
                   what=f"{case}: other users' tasks done and the bad task dead-lettered")
        assert slots_alive(worker)
        more = [tasks.work.create_task((i,), user_id=u) for i, u in enumerate("abc")]
        queue.push_batch(more)  # still serving afterwards, the corrupt user included
        eventually(lambda: {t.task_id for t in more} <= set(runs(redis_client, tasks.RUNS)), timeout=10,
                   what="still serving")
    entry = queue.get_dead(victim.task_id)
    assert entry is not None and entry.failure_type == "corrupt" and reason in entry.error, entry
    assert victim.task_id not in runs(redis_client, tasks.RUNS) and "someone-else" not in runs(redis_client, tasks.RUNS)
    assert_stats_balance(queue, redis_client)


def lane_wrong_type(client: redis.Redis, base: str) -> None:
    client.set(f"{base}:queue:user:b:normal", "junk")
    client.zadd(f"{base}:ready:w1", {"b": 0})  # b looks ready: a pop will touch the bad lane


def ready_wrong_type(client: redis.Redis, base: str) -> None:
    client.delete(f"{base}:ready:w1")
    client.set(f"{base}:ready:w1", "junk")


def stats_wrong_type(client: redis.Redis, base: str) -> None:
    client.delete(f"{base}:queue:stats")
    client.set(f"{base}:queue:stats", "junk")


CORRUPT_KEYS: list[tuple[str, Callable[[redis.Redis, str], None]]] = [
    ("lane key", lane_wrong_type), ("ready key", ready_wrong_type), ("stats key", stats_wrong_type),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "plant"), CORRUPT_KEYS, ids=[c[0] for c in CORRUPT_KEYS])
def test_key_of_the_wrong_type_does_not_stop_the_worker(queue: TaskQueue, config: FairQueueConfig,
                                                        redis_client: redis.Redis, case: str,
                                                        plant: Callable[[redis.Redis, str], None]) -> None:
    good = [tasks.work.create_task((i,), user_id=u) for i, u in enumerate("aaccac")]
    queue.push_batch(good)
    plant(redis_client, queue.keys.base)
    with running_worker(config) as worker:
        stolen = [t.task_id for t in good if t.user_id == "c"]
        eventually(lambda: set(stolen) <= set(runs(redis_client, tasks.RUNS)), timeout=10,
                   what=f"{case}: the worker still serves other partitions")
        # a new push for every user makes every user ready again: everything runs
        more = [tasks.work.create_task((i,), user_id=u) for i, u in enumerate("abc")]
        queue.push_batch(more)
        eventually(lambda: {t.task_id for t in good + more} <= set(runs(redis_client, tasks.RUNS)), timeout=10,
                   what=f"{case}: every task eventually runs")
        assert slots_alive(worker)
    assert queue.get_stats()["tasks_quarantined"] >= 1


@pytest.mark.timeout(60)
def test_push_into_a_corrupt_lane_moves_the_junk_aside_and_queues_the_task(
        queue: TaskQueue, config: FairQueueConfig, redis_client: redis.Redis) -> None:
    lane = f"{queue.keys.base}:queue:user:b:normal"
    redis_client.set(lane, "junk")
    task = tasks.work.create_task((1,), user_id="b")
    reply = queue.push(task)  # never a half-written task: the bad key is quarantined, the push completes
    assert reply["success"], reply
    moved = redis_client.keys(f"{queue.keys.base}:quarantine:*")
    assert len(moved) == 1 and redis_client.get(moved[0]) == b"junk"  # the data is kept, aside
    assert queue.get_stats()["tasks_quarantined"] == 1
    with running_worker(config):
        eventually(lambda: task.task_id in runs(redis_client, tasks.RUNS), timeout=10, what="the retried push ran")
    assert_stats_balance(queue, redis_client)
