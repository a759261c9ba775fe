"""Shared fixtures: a real Redis (DB 15 by default, or an embedded server) flushed per test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from fairque_django.core.config import FairQueueConfig, RedisConfig
from fairque_django.core.connection import reset_clients

from .redis_url import REDIS_URL


@pytest.fixture(autouse=True)
def _fresh_django_conf() -> Iterator[None]:
    """Every test starts from the FAIRQUE setting as it is now (providers installed, caches empty)."""
    from fairque_django import conf

    conf.install_providers()
    conf.reset()
    yield
    conf.reset()


@pytest.fixture
def workers() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``manage.py runfairworker ...`` subprocesses; all are killed at the end of the test."""
    from .processes import manage

    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[str]:
        proc = manage("runfairworker", *args, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
    reset_clients()


@pytest.fixture
def redis_config(redis_url: str) -> RedisConfig:
    return RedisConfig(url=redis_url)


@pytest.fixture
def make_config(redis_client: redis.Redis, redis_config: RedisConfig) -> Any:
    """Build a FairQueueConfig against the test Redis: make_config(workers=[...], queue={...})."""

    def build(workers: list[dict[str, Any]] | None = None, worker_id: str | None = None,
              **queue: Any) -> FairQueueConfig:
        data: dict[str, Any] = {
            "redis": {"url": redis_config.url},
            "workers": workers if workers is not None else [
                {"id": "w1", "assigned_users": ["a", "b", "c"], "steal_targets": ["d"]}],
            "queue": queue,
        }
        return FairQueueConfig.from_dict(data, worker_id=worker_id)

    return build
