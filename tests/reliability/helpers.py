"""Helpers of the reliability suite: worker subprocesses with log files, dedicated Redis
servers, polling, and checks that nothing was lost and the stats balance."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from example_project.embedded_redis import answers, free_port, redis_server_binary
from fairque_django.core.queue import TaskQueue
from tests.processes import ROOT, command_env

SETTINGS = "tests.reliability.settings"


def wait_for(pred: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g}s")
        time.sleep(interval)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- processes


class WorkerProc:
    """One ``manage.py runfairworker`` subprocess whose output goes to a file (never a pipe:
    a chatty worker would block on a full pipe)."""

    def __init__(self, worker_id: str, args: tuple[str, ...], env: dict[str, str], log_path: Path) -> None:
        self.worker_id = worker_id
        self.log_path = log_path
        self._fh = open(log_path, "w")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runfairworker", worker_id, *args],
            cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._fh.close()

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then wait up to ``timeout`` s; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._fh.close()


class Workers:
    """Starts worker subprocesses with the reliability settings and kills leftovers at the end."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.started: list[WorkerProc] = []

    def environment(self, **extra: str) -> dict[str, str]:
        return command_env(DJANGO_SETTINGS_MODULE=SETTINGS, **{**self.env, **extra})

    def start(self, worker_id: str, *args: str, **extra: str) -> WorkerProc:
        log_path = self.log_dir / f"{worker_id}-{len(self.started)}.log"
        proc = WorkerProc(worker_id, args, self.environment(**extra), log_path)
        self.started.append(proc)
        return proc

    def manage(self, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run another management command with the same settings and environment."""
        return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.environment(**extra),
                              capture_output=True, text=True, timeout=timeout)

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.alive():
                proc.kill()
            elif not proc._fh.closed:
                proc._fh.close()


# --------------------------------------------------------------------------- redis servers


class RedisServer:
    """A dedicated redis-server on a free loopback port with its own data directory; it can be
    shut down, killed, paused and started again on the same port and directory."""

    def __init__(self, *config: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="fairque-rel-redis-")
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> RedisServer:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.dir, "redis.log"),
                *self.config]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: answers(self.url(), timeout=0.2) or self.proc.poll() is not None, 15,  # type: ignore[union-attr]
                 "redis-server start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
        return self

    def log(self) -> str:
        path = Path(self.dir) / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def shutdown(self) -> None:
        """A clean SHUTDOWN (the AOF is flushed and fsynced), then wait for the process to exit."""
        assert self.proc is not None
        client = self.client()
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        self.proc.wait(15)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_server(*config: str, port: int | None = None) -> Iterator[RedisServer]:
    server = RedisServer(*config, port=port)
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------- checks


def scan(client: redis.Redis, pattern: str) -> list[str]:
    return [text(k) for k in client.scan_iter(match=pattern, count=1000)]


def task_states(client: redis.Redis, prefix: str) -> dict[str, str]:
    """Task id -> state (``st``) of every task hash under ``prefix``."""
    keys = [k for k in scan(client, f"{{{prefix}}}:t:*")]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "st")
    states = pipe.execute()
    start = len(f"{{{prefix}}}:t:")
    return {k[start:]: text(st) if st is not None else "?" for k, st in zip(keys, states, strict=True)}


def queue_leftovers(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Whatever is still queued, leased, delayed or marked ready under ``prefix``."""
    base = f"{{{prefix}}}"
    lanes = {}
    for key in scan(client, f"{base}:queue:user:*"):
        kind = text(client.type(key))
        size = client.llen(key) if kind == "list" else client.zcard(key) if kind == "zset" else -1
        if size:
            lanes[key] = size
    ready = {k: client.zcard(k) for k in scan(client, f"{base}:ready:*") if client.zcard(k)}
    states = Counter(task_states(client, prefix).values())
    return {
        "lanes": lanes, "ready": ready, "leases": client.zcard(f"{base}:leases"),
        "delayed": client.zcard(f"{base}:delayed"), "live": client.zrange(f"{base}:live", 0, -1, withscores=True),
        "unfinished_states": {st: n for st, n in states.items() if st != "dead"},
    }


def assert_drained(client: redis.Redis, prefix: str) -> None:
    """Nothing queued, leased or delayed is left; only dead tasks keep a hash."""
    left = queue_leftovers(client, prefix)
    assert left == {"lanes": {}, "ready": {}, "leases": 0, "delayed": 0, "live": [], "unfinished_states": {}}, left


def assert_stats_balance(queue: TaskQueue, client: redis.Redis) -> dict[str, Any]:
    """The counters agree with what is really in Redis: ``pushed = completed + deleted + pending
    + dlq_size`` where pending is counted from the task hashes, not derived from the counters."""
    stats = queue.get_stats()
    states = Counter(task_states(client, queue.config.queue.stats_prefix).values())
    unfinished = sum(n for st, n in states.items() if st != "dead")
    assert stats["dlq_size"] == states.get("dead", 0), (stats, states)
    assert stats["tasks_pushed"] == (stats["tasks_completed"] + stats["tasks_deleted"] + unfinished
                                     + stats["dlq_size"]), (stats, states)
    assert stats["tasks_pending"] == unfinished, (stats, states)
    for user, counts in stats["users"].items():
        pushed = counts.get("pushed", 0)
        done = counts.get("completed", 0) + counts.get("dead", 0)
        assert pushed >= done, (user, counts)
    return stats


def runs(client: redis.Redis, key: str) -> dict[str, int]:
    return {text(k): int(v) for k, v in client.hgetall(key).items()}


def leases_of(client: redis.Redis, prefix: str, worker_id: str) -> list[str]:
    """Ids of the tasks leased to ``worker_id`` right now."""
    base = f"{{{prefix}}}"
    ids = [text(i) for i in client.zrange(f"{base}:leases", 0, -1)]
    pipe = client.pipeline(transaction=False)
    for tid in ids:
        pipe.hmget(f"{base}:t:{tid}", "wk", "st")
    rows = pipe.execute()
    return [tid for tid, (wk, st) in zip(ids, rows, strict=True)
            if wk is not None and text(wk) == worker_id and st is not None and text(st) == "leased"]
