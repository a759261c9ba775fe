"""The shared fixtures of every test directory (tests/conftest.py makes them visible): a real
Redis (flushed around each test), configurations on it, Django's FAIRQUE setting reset per test,
worker subprocesses, and a real Redis Cluster for the modules that ask for one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from example_project.embedded_cluster import Cluster, start_cluster
from fairque_django.core.config import FairQueueConfig, RedisConfig
from fairque_django.core.connection import reset_clients

from .processes import Workers
from .redis_url import REDIS_URL


@pytest.fixture(autouse=True)
def _fresh_django_conf() -> Iterator[None]:
    """Every test starts from the FAIRQUE setting as it is now (providers installed, caches empty)."""
    from fairque_django import conf

    conf.install_providers()
    conf.reset()
    yield
    conf.reset()


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
def make_config(redis_client: redis.Redis, redis_config: RedisConfig) -> Callable[..., FairQueueConfig]:
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


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Environment of the ``workers`` subprocesses (a directory's conftest may name other settings)."""
    return {}


@pytest.fixture
def workers(redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """``workers.start(worker_id, *args)`` runs ``manage.py runfairworker`` subprocesses; every
    one still running at the end is killed (before the flush). FAIRQUE_TEST_SHOW_LOGS=1 prints
    their logs."""
    group = Workers(tmp_path, worker_env)
    yield group
    group.cleanup()
    if os.environ.get("FAIRQUE_TEST_SHOW_LOGS"):
        for proc in group.started:
            print(f"--- {proc.log_path}\n{proc.log()[-3000:]}")


__all__ = ["_fresh_django_conf", "make_config", "redis_client", "redis_config", "redis_url", "worker_env",
           "workers"]


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[Cluster]:
    """Three cluster-enabled masters, slots split between them (example_project/embedded_cluster.py),
    one cluster per test module that asks for it."""
    started = start_cluster(masters=3)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def cluster(redis_cluster: Cluster) -> Iterator[RedisCluster]:
    """A cluster client of :func:`redis_cluster`."""
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.masters[0].port)
    assert len(client.get_nodes()) == 3
    yield client
    client.close()
