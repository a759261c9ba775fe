"""Helpers of the reliability suite: dedicated Redis servers, and checks that nothing was lost and
the stats balance (worker subprocesses and polling: tests/support)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from example_project.embedded_redis import answers, free_port, redis_server_binary
from fairque_django.core.queue import TaskQueue
from tests.support.wait import eventually

SETTINGS = "tests.reliability.settings"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        eventually(lambda: answers(self.url(), timeout=0.2) or self.proc.poll() is not None,  # type: ignore[union-attr]
                   timeout=15, what="redis-server start")
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
        if kind == "hash" and text(key).endswith(":gone"):  # (counts of stale lane entries: the lanes show them)
            continue
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
    """The counters agree with what is really in Redis: ``pushed = completed + deleted + cancelled
    + pending + dlq_size`` where pending is counted from the task hashes, not derived from the counters."""
    stats = queue.get_stats()
    states = Counter(task_states(client, queue.config.queue.stats_prefix).values())
    unfinished = sum(n for st, n in states.items() if st != "dead")
    assert stats["dlq_size"] == states.get("dead", 0), (stats, states)
    assert stats["tasks_pushed"] == (stats["tasks_completed"] + stats["tasks_deleted"] + stats["tasks_cancelled"]
                                     + unfinished + stats["dlq_size"]), (stats, states)
    assert stats["tasks_pending"] == unfinished, (stats, states)
    for user, counts in stats["users"].items():
        pushed = counts.get("pushed", 0)
        done = counts.get("completed", 0) + counts.get("dead", 0) + counts.get("cancelled", 0)
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
