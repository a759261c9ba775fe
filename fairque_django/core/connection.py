"""Redis clients: one shared client per Redis configuration per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis

from .config import RedisConfig
from .retry import RetryPolicy

_clients: dict[RedisConfig, redis.Redis] = {}
_lock = threading.Lock()
_provider: Callable[[RedisConfig], redis.Redis | None] | None = None


def set_client_provider(provider: Callable[[RedisConfig], redis.Redis | None] | None) -> None:
    """Install a hook that supplies a client (e.g. Django's shared connection) for a config.

    The provider may return None to fall back to a client built from the config.
    """
    global _provider
    _provider = provider


def build_client(config: RedisConfig, **extra: Any) -> redis.Redis:
    """A new client for ``config`` that retries transient connection errors by the policy of
    ``config`` (:class:`~.retry.RetryPolicy`)."""
    options: dict[str, Any] = {"retry": RetryPolicy.for_redis(config).redis_retry()}
    options.update(extra)
    if config.url:  # the same options as a host/port client (max_connections included)
        return redis.Redis.from_url(config.url, **{**config.url_kwargs(), **options})
    return redis.Redis(**{**config.client_kwargs(), **options})


def get_client(config: RedisConfig) -> redis.Redis:
    """The process-wide client for ``config`` (created once)."""
    if _provider is not None:
        provided = _provider(config)
        if provided is not None:
            return provided
    with _lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = build_client(config)
        return client


def reset_clients() -> None:
    """Close and forget the shared clients (tests, after fork)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
