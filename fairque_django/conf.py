"""The ``FAIRQUE`` Django setting, turned into core objects.

Two shapes are accepted::

    FAIRQUE = {"redis": {...}, "workers": [...], "queue": {...}}   # FairQueueConfig.from_dict
    FAIRQUE = {"CONFIG_FILE": "fairque_config.yaml"}                  # FairQueueConfig.from_yaml

plus these Django-level, upper-case keys (all optional):

``CONFIG_FILE``
    YAML file in the FairQueue format; a relative path is resolved against
    ``settings.BASE_DIR`` when defined, else the working directory.  Excludes inline sections.
``CACHE_ALIAS``
    Name of a cache in ``CACHES`` whose Redis connection is used (django-redis or Django's
    built-in ``RedisCache``).  Without a ``redis`` section its ``LOCATION`` is also the
    config's Redis.
``TENANT_RESOLVER``
    Dotted path (or callable) mapping objects to user ids;
    default ``fairque_django.tenancy.default_resolver``.
``HANDLER``
    Dotted path of the ``TaskHandler`` class ``runfairworker`` uses (default ``None``).
``ENQUEUE_ON_COMMIT``
    Whether :func:`fairque_django.enqueuing.enqueue` waits for the transaction to commit
    (default ``False``).
``ENQUEUE_MODE``
    ``"direct"`` (default), ``"on_commit"`` or ``"outbox"``: how ``enqueue`` hands tasks over
    (:func:`fairque_django.enqueuing.enqueue_mode`); ``OUTBOX_PUSH_ON_COMMIT``,
    ``OUTBOX_BATCH_SIZE`` and ``OUTBOX_RELAY_INTERVAL`` tune the outbox (:mod:`fairque_django.outbox`).
``WORKER_ID``
    The current worker of this process (``FairQueueConfig.worker_id``; default ``None``).
``TASK_MODULES``
    Extra module paths that ``runfairworker`` imports at start, besides the apps' ``tasks``
    modules (e.g. modules defining ``django.tasks`` tasks); default ``()``.
``ALERTS``
    Alert rules (a list of dicts, see ``docs/monitoring.md``) the workers evaluate; default ``()``.
``ALERT_INTERVAL``
    Seconds between two evaluations of the alert rules (by any worker); default ``30``.
``SCHEDULES``
    Periodic schedules (a dict of name -> schedule, see ``docs/schedules.md``) the workers fire;
    cron is evaluated in ``settings.TIME_ZONE``; default ``{}``.
``METRICS_TOKEN``
    Bearer token accepted by the ``metrics`` view (besides staff login); default ``None``.
``METRICS_TOP_TENANTS``
    Tenants exported with their own label; the rest are aggregated as ``other``; default ``20``.

Everything is built once per process and rebuilt when ``override_settings`` changes
``FAIRQUE``, ``CACHES`` or ``BASE_DIR``.  Without a ``FAIRQUE`` setting a single worker
(``worker-001``, serving every user) on ``localhost:6379/0`` is used and a system check
warns.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import redis
from django.core.exceptions import ImproperlyConfigured

from .caches import cache_location_redis, client_from_cache
from .core.config import FairQueueConfig, Problem, RedisConfig, collect, problems_of, read_yaml
from .core.config.kinds import raise_problems, unknown_key
from .core.config.schema import DJANGO_OPTIONS
from .core.connection import get_client
from .core.errors import ConfigurationError
from .core.sharded import AnyQueue, open_queue

__all__ = [
    "DEFAULTS",
    "FairQueueImproperlyConfigured",
    "config_problems",
    "django_client_provider",
    "django_default_redis",
    "fairque_setting",
    "get_config",
    "get_queue",
    "get_redis_client",
    "get_setting",
    "install_providers",
    "reset",
]

SETTING_NAME: Final = "FAIRQUE"
DEFAULT_WORKER_ID: Final = "worker-001"

DEFAULTS: Final[Mapping[str, Any]] = types.MappingProxyType(DJANGO_OPTIONS.defaults())
"""The Django-level (upper-case) keys of ``FAIRQUE`` and their defaults."""



class FairQueueImproperlyConfigured(ImproperlyConfigured, ConfigurationError):
    """A bad ``FAIRQUE`` setting: both Django's ``ImproperlyConfigured`` and the core's
    ``ConfigurationError``; the message names the offending key."""


def _key(name: str) -> str:
    return f"{SETTING_NAME}[{name!r}]"


def _wrap(exc: ConfigurationError) -> FairQueueImproperlyConfigured:
    if isinstance(exc, FairQueueImproperlyConfigured):
        return exc
    message = str(exc)
    for note in getattr(exc, "__notes__", ()):
        message += f" ({note})"
    wrapped = FairQueueImproperlyConfigured(message)
    wrapped.key = exc.key
    wrapped.problems = problems_of(exc)  # type: ignore[attr-defined]
    return wrapped


# --------------------------------------------------------------------------- raw setting


def fairque_setting() -> Mapping[str, Any] | None:
    """The raw ``FAIRQUE`` setting, or ``None`` when it is not defined."""
    from django.conf import settings

    value = getattr(settings, SETTING_NAME, None)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FairQueueImproperlyConfigured(
            f"must be a dict, not {type(value).__name__}", SETTING_NAME
        )
    return value


def _check_option(name: str, value: Any) -> Any:
    """The checked, normalised value of a Django-level key (its rules: ``DJANGO_OPTIONS``)."""
    key = _key(name)
    try:
        value = DJANGO_OPTIONS[name].check(value, key)
        if name == "ALERTS":  # each rule is checked against the alert-rule schema
            from .core.observe.alert_rules import parse_rules

            value = parse_rules(value, key)
        if name == "SCHEDULES":  # each schedule is checked against the schedule schema
            from django.conf import settings

            from .core.schedule import parse_schedules

            value = parse_schedules(value, timezone_name=getattr(settings, "TIME_ZONE", None) or "UTC",
                                    key=key)
    except ConfigurationError as exc:
        raise _wrap(exc) from exc
    return value


def _split(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``FAIRQUE`` into core sections (lower-case) and validated Django options."""
    sections: dict[str, Any] = {}
    options: dict[str, Any] = dict(DEFAULTS)
    for name, value in raw.items():
        if isinstance(name, str) and name.isupper():
            if name not in DEFAULTS:
                raise FairQueueImproperlyConfigured(
                    unknown_key(name, DEFAULTS, listing="Django-level keys",
                                more="; configuration sections: redis, workers, queue"),
                    _key(name),
                )
            options[name] = _check_option(name, value)
        elif isinstance(name, str) and name.upper() in DEFAULTS:
            raise FairQueueImproperlyConfigured(
                f"unknown key {name!r}; Django-level keys are upper-case: did you mean "
                f"{name.upper()!r}?",
                _key(name),
            )
        else:
            sections[name] = value
    if options["CONFIG_FILE"] is not None and sections:
        raise FairQueueImproperlyConfigured(
            "give either CONFIG_FILE or inline sections "
            f"({', '.join(map(repr, sections))}), not both",
            _key("CONFIG_FILE"),
        )
    return sections, options


_lock = threading.RLock()
_options: dict[str, Any] | None = None
_config: FairQueueConfig | None = None
_client: redis.Redis | None = None
_queues: dict[str | None, AnyQueue] = {}
# Set while get_config() builds, so the default-redis provider does not recurse into it.
_building: contextvars.ContextVar[bool] = contextvars.ContextVar("fairque_building", default=False)


def _load_options() -> dict[str, Any]:
    global _options
    options = _options
    if options is not None:
        return options
    with _lock:
        if _options is None:
            raw = fairque_setting()
            _options = _split(raw)[1] if raw is not None else dict(DEFAULTS)
        return _options


def get_setting(name: str) -> Any:
    """A Django-level ``FAIRQUE`` key (``CACHE_ALIAS``, ``ENQUEUE_ON_COMMIT``, ...) or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown FAIRQUE option {name!r} (known: {', '.join(DEFAULTS)})")
    return _load_options()[name]


# --------------------------------------------------------------------------- config


def config_file_path(value: str | Path) -> Path:
    """``CONFIG_FILE`` resolved against ``settings.BASE_DIR`` (else the working directory)."""
    from django.conf import settings

    path = Path(value).expanduser()
    if not path.is_absolute():
        base = getattr(settings, "BASE_DIR", None)
        path = (Path(base) if base is not None else Path.cwd()) / path
    return path


@contextmanager
def _build_scope() -> Iterator[None]:
    token = _building.set(True)
    try:
        yield
    finally:
        _building.reset(token)


def _default_config() -> FairQueueConfig:
    return FairQueueConfig.create_default(
        DEFAULT_WORKER_ID, assigned_users=["*"], redis=RedisConfig()
    )


def _in_setting(problem: Problem, worker_id: str | None, where: str) -> Problem:
    """A loader problem as the FAIRQUE setting shows it (WORKER_ID's key, the YAML file named)."""
    key = problem.key
    if problem.code == "unknown_worker":
        key = _key("WORKER_ID") if worker_id is not None else "worker_id"
    return dataclasses.replace(problem, key=key, message=problem.message + where)


def _load(raw: Mapping[str, Any]) -> tuple[FairQueueConfig | None, list[Problem]]:
    """The config of ``FAIRQUE`` and no problems, or ``None`` and every problem the loader found."""
    sections, options = _split(raw)
    worker_id = options["WORKER_ID"]
    where = ""
    with _build_scope():
        if options["CONFIG_FILE"] is not None:
            path = config_file_path(options["CONFIG_FILE"])
            where = f" (in configuration file {os.fspath(path)!r})"
            try:
                data: Mapping[str, Any] = read_yaml(path)
            except ConfigurationError as exc:
                return None, list(problems_of(exc))
        else:
            data = sections
        config, problems = collect(data, worker_id=worker_id)
    return config, [_in_setting(p, worker_id, where) for p in problems]


def _build_config() -> FairQueueConfig:
    raw = fairque_setting()
    if raw is None:
        return _default_config()
    config, problems = _load(raw)
    raise_problems(problems)
    assert config is not None
    return config


def config_problems() -> list[Problem]:
    """Every problem of the ``FAIRQUE`` setting (none when it is valid or absent), as data: the
    system checks report them (the first is what :func:`get_config` raises)."""
    if _config is not None:
        return []
    raw = fairque_setting()
    if raw is None:
        return []
    try:
        return _load(raw)[1]
    except ConfigurationError as exc:  # a bad Django-level key
        return list(problems_of(exc))


def get_config() -> FairQueueConfig:
    """The :class:`FairQueueConfig` described by ``FAIRQUE`` (built once, validated)."""
    global _config
    config = _config
    if config is not None:
        return config
    with _lock:
        if _config is None:
            try:
                _config = _build_config()
            except ConfigurationError as exc:
                raise _wrap(exc) from exc
        return _config


def django_default_redis() -> RedisConfig:
    """The Redis settings of this project (the core's default-redis provider).

    ``FairQueueConfig.create_default()`` without ``redis=`` uses this, so README examples
    run against the project's Redis.
    """
    if _building.get():
        # The FAIRQUE config itself has no redis section: use CACHE_ALIAS's server, else localhost.
        alias = get_setting("CACHE_ALIAS")
        fallback = cache_location_redis(alias) if alias else None
        return fallback if fallback is not None else RedisConfig()
    return get_config().redis


# --------------------------------------------------------------------------- connection


def get_redis_client() -> redis.Redis:
    """The one Redis client this process uses (from ``CACHE_ALIAS``, else ``config.redis``)."""
    global _client
    client = _client
    if client is not None:
        return client
    with _lock:
        if _client is None:
            alias = get_setting("CACHE_ALIAS")
            _client = client_from_cache(alias) if alias else get_client(get_config().redis)
        return _client


def django_client_provider(config: RedisConfig) -> redis.Redis | None:
    """The core's client provider: Django's shared client for the ``FAIRQUE`` Redis.

    Only when ``CACHE_ALIAS`` is set (otherwise the core's own per-config client already is
    the shared one) and *config* is the FAIRQUE config's Redis.
    """
    try:
        if not get_setting("CACHE_ALIAS") or config != get_config().redis:
            return None
    except ImproperlyConfigured:
        return None
    return get_redis_client()


def get_queue(worker_id: str | None = None) -> AnyQueue:
    """The queue of the ``FAIRQUE`` prefix on the shared client, cached per *worker_id* (``None``:
    ``WORKER_ID`` / the config's current worker): a :class:`TaskQueue`, or with ``queue.shards`` > 1 a
    :class:`~fairque_django.core.sharded.ShardedTaskQueue` (its shards' queues: ``shard_queues``)."""
    queue = _queues.get(worker_id)
    if queue is not None:
        return queue
    with _lock:
        queue = _queues.get(worker_id)
        if queue is None:
            try:
                queue = open_queue(get_config(), get_redis_client(), worker_id=worker_id)
            except ConfigurationError as exc:  # e.g. an unknown worker id
                raise _wrap(exc) from exc
            _queues[worker_id] = queue
        return queue


def install_providers() -> None:
    """Point the core's default Redis and client hooks at Django (done in ``AppConfig.ready``)."""
    from .core.config import set_default_redis_provider
    from .core.connection import set_client_provider

    # create_default()/FairQueueConfig() without redis= use the project's Redis, and a
    # TaskQueue built from the FAIRQUE config shares Django's connection.
    set_default_redis_provider(django_default_redis)
    set_client_provider(django_client_provider)


# --------------------------------------------------------------------------- cache reset


def reset() -> None:
    """Forget the cached options, config, client and queues (settings changed, tests, fork)."""
    global _options, _config, _client
    with _lock:
        _options = None
        _config = None
        _client = None
        for queue in _queues.values():
            queue.close()
        _queues.clear()


RESET_ON: Final = frozenset({SETTING_NAME, "CACHES", "BASE_DIR"})


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: rebuild after ``override_settings`` touches FAIRQUE/CACHES."""
    if setting in RESET_ON:
        reset()

