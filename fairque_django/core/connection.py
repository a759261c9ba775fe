"""Redis clients: one shared client per Redis configuration per process.

A configuration with ``cluster`` (or a ``redis+cluster://`` URL) gets a
:class:`redis.cluster.RedisCluster`; it is typed ``redis.Redis`` here and wherever a client is
passed around, as it has the same command API (code that needs one of redis.Redis's own
attributes asks :func:`is_cluster` first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import redis
import redis.retry
from redis.backoff import EqualJitterBackoff
from redis.cluster import ClusterNode, RedisCluster

from .config import RedisConfig
from .retry import RetryPolicy

__all__ = ["build_client", "cluster_retry", "get_client", "is_cluster", "reset_clients", "set_client_provider"]

_clients: dict[RedisConfig, redis.Redis] = {}
_lock = threading.Lock()
_provider: Callable[[RedisConfig], redis.Redis | None] | None = None


def set_client_provider(provider: Callable[[RedisConfig], redis.Redis | None] | None) -> None:
    """Install a hook that supplies a client (e.g. Django's shared connection) for a config.

    The provider may return None to fall back to a client built from the config.
    """
    global _provider
    _provider = provider


def is_cluster(client: object) -> bool:
    """Whether ``client`` is a Redis Cluster client (synchronous or asyncio)."""
    if isinstance(client, RedisCluster):
        return True
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    return isinstance(client, AsyncRedisCluster)


def cluster_retries(policy: RetryPolicy) -> int:
    """The attempts after the first a cluster client makes so that its pauses (as
    :func:`cluster_retry` spaces them, at least half of each step) span the policy's deadline:
    a failover's refused connections and CLUSTERDOWN replies are ridden out for about as long as
    a single Redis's connection errors are (longer outages raise, and the callers' own loops take
    over: workers keep polling, the outbox relay keeps pushing)."""
    waited, retries = 0.0, 0
    while waited < policy.deadline and retries < 100:
        retries += 1
        waited += min(policy.cap, policy.base * 2 ** retries) * 0.75  # the mean of EqualJitterBackoff
    return max(retries, policy.retries)


def cluster_retry(config: RedisConfig) -> redis.retry.Retry:
    """The ``retry`` of a cluster client: redis-py's cluster retry loop (which refreshes the slot map
    between attempts, so a command follows its slot to the promoted replica) spaced by the
    config's :class:`~.retry.RetryPolicy`."""
    policy = RetryPolicy.for_redis(config)
    return redis.retry.Retry(EqualJitterBackoff(cap=policy.cap, base=policy.base), cluster_retries(policy))


def cluster_client(cls: Any, node: Any, retry: Any, config: RedisConfig, extra: dict[str, Any]) -> Any:
    """A new ``cls`` (redis-py's ``RedisCluster``, sync or asyncio, with its ``ClusterNode`` class
    ``node``) for ``config``: it discovers every node from the startup nodes (any one answering is
    enough) and follows MOVED/ASK redirections and failovers, retrying by ``retry``."""
    options: dict[str, Any] = {
        "startup_nodes": [node(host, port) for host, port in config.cluster_nodes()],
        "retry": retry,
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.socket_connect_timeout,
        "decode_responses": False,
    }
    if config.max_connections is not None:
        options["max_connections"] = config.max_connections  # per node
    url = config.client_url()
    if url is None:
        options.update(username=config.username, password=config.password, ssl=config.ssl)
        options.update(extra)
        return cls(**options)
    options.update(extra)
    return cls.from_url(url, **options)


def build_cluster_client(config: RedisConfig, **extra: Any) -> RedisCluster:
    """A new cluster client for ``config`` (``cluster`` set), see :func:`cluster_client`."""
    client: RedisCluster = cluster_client(RedisCluster, ClusterNode, cluster_retry(config), config, extra)
    return client


def build_client(config: RedisConfig, **extra: Any) -> redis.Redis:
    """A new client for ``config`` that retries transient connection errors by the policy of
    ``config`` (:class:`~.retry.RetryPolicy`); a :class:`~redis.cluster.RedisCluster` for a
    cluster."""
    if config.cluster:
        return cast(redis.Redis, build_cluster_client(config, **extra))  # same command API, see above
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
