"""The shared fixtures (tests/support/fixtures.py), visible to every test directory."""

from __future__ import annotations

from tests.support.fixtures import (
    _fresh_django_conf,
    make_config,
    redis_client,
    redis_config,
    redis_url,
    worker_env,
    workers,
)

__all__ = ["_fresh_django_conf", "make_config", "redis_client", "redis_config", "redis_url", "worker_env",
           "workers"]
