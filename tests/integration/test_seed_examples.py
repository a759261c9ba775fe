"""The FairQueue README's examples, with only the import changed, run inside the Django test project."""

from __future__ import annotations

import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from fairque_django import FairQueueConfig, Task, TaskQueue, Worker
from fairque_django.conf import get_config
from tests.support import eventually
from tests.support.processes import ROOT, command_env

EXAMPLES = ROOT / "examples"


def run_example(name: str, cwd: Path = EXAMPLES) -> subprocess.CompletedProcess[str]:
    code = ("import django, runpy, sys; django.setup(); "
            f"runpy.run_path({str(EXAMPLES / name)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=command_env(), capture_output=True,
                          text=True, timeout=60)


def test_basic_usage_example(redis_client: redis.Redis) -> None:
    res = run_example("seed_basic_usage.py")
    assert res.returncode == 0, res.stderr
    assert "Processing order 12345 for customer customer@example.com" in res.stdout
    assert "Order result: {'order_id': 12345" in res.stdout
    assert "Active tasks: 0" in res.stdout
    stats = TaskQueue(get_config()).get_stats()
    assert stats["tasks_pushed"] == 1 and stats["users"]["user:1"]["pushed"] == 1


def test_legacy_example(redis_client: redis.Redis) -> None:
    res = run_example("seed_legacy.py")
    assert res.returncode == 0, res.stderr
    assert "Task pushed: True" in res.stdout
    assert "from user user:1" in res.stdout and "{'action': 'process_data', 'data_id': 123}" in res.stdout
    stats = TaskQueue(get_config()).get_stats()
    assert stats["tasks_completed"] == 1 and stats["tasks_active"] == 0


def test_configuration_example() -> None:
    res = run_example("seed_configuration.py")
    assert res.returncode == 0, res.stderr
    config = FairQueueConfig.from_yaml(EXAMPLES / "fairque_config.yaml")
    assert config.worker_ids == ("worker-001", "worker-002")
    assert config.queue.xcom_ttl_seconds == 3600


def test_xcom_example_runs_on_a_worker(redis_client: redis.Redis, make_config: Any, capsys: Any) -> None:
    ns = runpy.run_path(str(EXAMPLES / "seed_xcom.py"), run_name="seed_xcom")
    config = make_config(workers=[{"id": "w1", "assigned_users": ["tenant:1", "tenant:2"],
                                   "max_concurrent_tasks": 1}], worker_id="w1")
    q = TaskQueue(config)
    q.push(ns["extract_data"]("crm"), user_id="tenant:1")
    q.push(ns["transform_data"](), user_id="tenant:1")
    q.push(ns["load_data"](), user_id="tenant:1")
    Worker(config, burst=True, install_signal_handlers=False).start()
    assert "Loading 2000 records from crm" in capsys.readouterr().out
    stats = q.get_stats()
    assert stats["tasks_completed"] == 3 and stats["dlq_size"] == 0


def test_worker_example(redis_client: redis.Redis) -> None:
    config = FairQueueConfig.create_default(worker_id="worker-001", assigned_users=["user:1", "user:2"],
                                            steal_targets=["user:3", "user:4"])
    q = TaskQueue(config)
    q.push(Task.create(user_id="user:1", payload={"action": "custom_processing"}))
    q.push(Task.create(user_id="user:3", payload={"action": "unknown"}, max_retries=0))
    code = ("import django, runpy; django.setup(); "
            f"runpy.run_path({str(EXAMPLES / 'seed_worker.py')!r}, run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=EXAMPLES, env=command_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually(lambda: q.get_stats()["tasks_completed"] + q.dlq_size() >= 2, timeout=30,
                   what="both tasks completed or dead")
    finally:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Custom processing for task" in out and "completed in" in out
    assert "failed:" in out  # the payload-only task its handler does not know is a clear failure
    (entry,) = q.get_dlq()
    assert "payload-only" in entry.error
