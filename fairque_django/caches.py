"""Django's Redis caches as fairque's connection: which cache backend ``CACHE_ALIAS`` names, its
client, and where a client connects (for messages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

import redis

from .core.config import RedisConfig
from .core.connection import is_cluster

__all__ = ["cache_backend_kind", "cache_location_redis", "client_from_cache", "redis_display_url"]

DJANGO_REDIS_BACKEND: Final = "django_redis.cache.RedisCache"
DJANGO_BUILTIN_BACKEND: Final = "django.core.cache.backends.redis.RedisCache"


def cache_location_redis(alias: str) -> RedisConfig | None:
    """A RedisConfig for the first (primary) server of cache *alias*, if it is a URL."""
    from django.conf import settings

    entry = settings.CACHES.get(alias)
    if not isinstance(entry, Mapping):
        return None
    location = entry.get("LOCATION")
    if isinstance(location, (list, tuple)):
        location = location[0] if location else None
    if isinstance(location, str):
        location = location.split(",")[0].strip()
        if location.split("://", 1)[0] in ("redis", "rediss", "unix"):
            return RedisConfig(url=location)
    return None


def cache_backend_kind(alias: str) -> str:
    """``"django-redis"`` or ``"django"`` for a Redis cache in ``CACHES``; else raise."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    from .conf import FairQueueImproperlyConfigured, _key  # conf builds on this module

    key = _key("CACHE_ALIAS")
    caches_setting = getattr(settings, "CACHES", {})
    if alias not in caches_setting:
        known = ", ".join(map(repr, caches_setting)) or "(none)"
        raise FairQueueImproperlyConfigured(
            f"there is no cache named {alias!r} in CACHES (configured caches: {known})", key
        )
    backend_path = caches_setting[alias].get("BACKEND", "")
    try:
        backend = import_string(backend_path)
    except ImportError as exc:
        raise FairQueueImproperlyConfigured(
            f"cache {alias!r} has a BACKEND that cannot be imported ({backend_path!r}: {exc})", key
        ) from exc
    from django.core.cache.backends.redis import RedisCache as BuiltinRedisCache
    from django_redis.cache import RedisCache as DjangoRedisCache  # type: ignore[import-untyped]

    if isinstance(backend, type) and issubclass(backend, BuiltinRedisCache):
        return "django"
    if isinstance(backend, type) and issubclass(backend, DjangoRedisCache):
        return "django-redis"
    raise FairQueueImproperlyConfigured(
        f"cache {alias!r} uses {backend_path!r}, which is not a Redis cache; use "
        f"{DJANGO_REDIS_BACKEND!r} or {DJANGO_BUILTIN_BACKEND!r}",
        key,
    )


def client_from_cache(alias: str) -> redis.Redis:
    """The ``redis.Redis`` client of cache ``alias`` (django-redis or Django's own Redis cache).

    Neither django-redis (7.x) nor Django's own cache ships a Redis Cluster client; a django-redis
    cache whose ``CLIENT_CLASS`` gives a :class:`redis.cluster.RedisCluster` is shared as well
    (see docs/operations.md, "Redis Cluster")."""
    from .conf import FairQueueImproperlyConfigured, _key  # conf builds on this module

    kind = cache_backend_kind(alias)
    if kind == "django-redis":
        from django_redis import get_redis_connection  # type: ignore[import-untyped]

        try:
            client: Any = get_redis_connection(alias, write=True)
        except NotImplementedError as exc:
            raise FairQueueImproperlyConfigured(
                f"cache {alias!r}: its django-redis client does not expose one raw connection "
                f"(sharded clients are not supported): {exc}",
                _key("CACHE_ALIAS"),
            ) from exc
    else:
        from django.core.cache import caches

        client = caches[alias]._cache.get_client(None, write=True)  # type: ignore[attr-defined]
    if is_cluster(client):
        return cast(redis.Redis, client)  # the same command API (see core.connection)
    if not isinstance(client, redis.Redis):
        raise FairQueueImproperlyConfigured(
            f"cache {alias!r} did not give a redis.Redis or redis.cluster.RedisCluster client (got "
            f"{type(client).__name__}); for a Redis Cluster set FAIRQUE['redis'] = {{'cluster': True, "
            "'startup_nodes': [...]}} and leave CACHE_ALIAS unset",
            _key("CACHE_ALIAS"),
        )
    return client


def redis_display_url(client: redis.Redis) -> str:
    """Where *client* connects, as a URL without the password (for messages); a cluster client:
    ``redis+cluster://`` and the nodes it knows (its masters when it has met the cluster)."""
    if is_cluster(client):
        cluster: Any = client
        nodes = cluster.get_primaries() or cluster.get_nodes()
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in nodes) + "/"
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    scheme = "rediss" if getattr(client.connection_pool, "connection_class", None) and issubclass(
        client.connection_pool.connection_class, redis.SSLConnection) else "redis"
    user = kwargs.get("username")
    auth = f"{user}@" if user else ""
    return f"{scheme}://{auth}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
