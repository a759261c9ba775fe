"""Every setting of fairque_django, declared once: name, kind, default, bounds, doc.

* :data:`REDIS`, :data:`WORKER`, :data:`QUEUE` and :data:`WORKER_ID`: the core configuration
  (:class:`~.model.FairQueueConfig`; its dataclasses check themselves with these);
* :data:`DJANGO_OPTIONS`: the upper-case keys of the ``FAIRQUE`` Django setting;
* :data:`BACKEND_OPTIONS`: ``TASKS[alias]["OPTIONS"]`` of ``FairQueueBackend``;
* :data:`ALERT_RULE` and :data:`ALERT_RULE_OPTIONS`: the fields of an alert rule, common and per type.

docs/settings.md lists every field with its default (a test compares them).
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..ids import bad_char, describe_char, user_id_problem, worker_id_problem
from .kinds import Field, Kind, Section, finite_float, item, map_item
from .limits import tenant_limits_setting

__all__ = [
    "ALERT_RULE",
    "ALERT_RULE_OPTIONS",
    "BACKEND_OPTIONS",
    "DEFAULT_MAX_USER_ID_LENGTH",
    "DEPTH_LANES",
    "DJANGO_OPTIONS",
    "ENQUEUE_MODES",
    "FAIRNESS_MODES",
    "QUEUE",
    "REDIS",
    "SCHEDULE",
    "SECTIONS",
    "SEVERITIES",
    "TOP_LEVEL_KEYS",
    "WORKER",
    "WORKER_ID",
    "doc_default",
]

DEFAULT_MAX_USER_ID_LENGTH: Final = 200
FAIRNESS_MODES: Final = ("count", "time")
URL_SCHEMES: Final = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")  # a Redis Cluster, the URL's host its startup node
SEVERITIES: Final = ("info", "warning", "critical")
DEPTH_LANES: Final = ("ready", "delayed", "leased")
ENQUEUE_MODES: Final = ("direct", "on_commit", "outbox")
TOP_LEVEL_KEYS: Final = ("queue", "redis", "worker_id", "workers")
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


# --------------------------------------------------------------------------- kinds


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ValueError(text)


def _is_list(value: object) -> bool:
    return isinstance(value, (list, tuple))


def _user_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(f"must be a list of user ids, not str ({value!r}); write [{value!r}]", key)
    seen: dict[str, int] = {}
    for index, user in enumerate(value):
        problem = user_id_problem(user, allow_pattern=True)
        if problem is not None:
            raise ConfigurationError(problem, item(key, index))
        first = seen.setdefault(user, index)
        if first != index:
            raise ConfigurationError(f"duplicate entry {user!r} (also at {item(key, first)})", item(key, index))
    return tuple(value)


_NUMBER: Final = Kind("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), finite_float)


def _weights(value: Mapping[Any, Any], key: str) -> Mapping[str, float]:
    weights: dict[str, float] = {}
    for user, weight in value.items():
        entry_key = map_item(key, user)
        problem = user_id_problem(user)
        if problem is not None:
            raise ConfigurationError(problem, entry_key)
        number = Field("weight", _NUMBER).check(weight, entry_key)
        if number <= 0:
            raise ConfigurationError(f"weight must be > 0 (got {weight!r})", entry_key)
        weights[user] = number
    return types.MappingProxyType(weights)


def _pins(value: Mapping[Any, Any], key: str) -> Mapping[str, int]:
    pins: dict[str, int] = {}
    for user, shard in value.items():
        entry_key = map_item(key, user)
        problem = user_id_problem(user, allow_pattern=True)
        if problem is not None:
            raise ConfigurationError(problem, entry_key)
        if not _is_int(shard) or shard < 0:
            raise ConfigurationError(f"a shard number must be an integer >= 0 (got {shard!r})", entry_key)
        pins[user] = shard
    return types.MappingProxyType(pins)


def _strings(value: Any, key: str) -> tuple[str, ...]:
    return tuple(value)


def _all_strings(value: object) -> bool:
    return _is_list(value) and all(isinstance(v, str) and v for v in value)  # type: ignore[attr-defined]


STR: Final = Kind("a string", lambda v: isinstance(v, str), parse=str)
INT: Final = Kind("an integer", _is_int, parse=lambda text: int(text.strip(), 10))
FLOAT: Final = Kind("a number", _is_number, finite_float, parse=float)
BOOL: Final = Kind("a boolean (true/false)", lambda v: isinstance(v, bool), parse=_parse_bool)
USERS: Final = Kind("a list of user ids", lambda v: isinstance(v, str) or _is_list(v), _user_list,
                    parse=lambda text: [p.strip() for p in text.split(",") if p.strip()])
WEIGHTS: Final = Kind("a mapping of user id to weight", lambda v: isinstance(v, Mapping), _weights)
PINS: Final = Kind("a mapping of user id or pattern to shard number", lambda v: isinstance(v, Mapping), _pins)
TENANT_LIMITS: Final = Kind("a mapping of user id or pattern to {concurrency, rate, burst}",
                            lambda v: isinstance(v, Mapping), tenant_limits_setting)
# Python-side settings (Django): Python literals, integral floats count as integers
TEXT: Final = Kind("a non-empty string", lambda v: isinstance(v, str) and bool(v))
WHOLE: Final = Kind("an integer", lambda v: _is_number(v) and float(v).is_integer(),  # type: ignore[arg-type]
                    lambda v, key: int(v))
STRINGS: Final = Kind("a list of non-empty strings", _all_strings, _strings)
PATH: Final = Kind("a non-empty string or a path",
                   lambda v: (isinstance(v, str) and bool(v)) or isinstance(v, os.PathLike))
CALLABLE_PATH: Final = Kind("a dotted import path or a callable",
                            lambda v: (isinstance(v, str) and bool(v)) or callable(v))
CLASS_PATH: Final = Kind("a dotted import path of a class",
                         lambda v: (isinstance(v, str) and bool(v)) or isinstance(v, type))
RULES: Final = Kind("a list of alert rules (dicts)", lambda v: _is_list(v))


# --------------------------------------------------------------------------- rules of single fields


def _host_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    bad = bad_char(value)
    return None if bad is None else f"contains the forbidden character {describe_char(bad)}"


def _url_problem(value: str) -> str | None:
    scheme = urlsplit(value).scheme
    if scheme in URL_SCHEMES:
        return None
    return f"must start with one of {', '.join(s + '://' for s in URL_SCHEMES)} (got scheme {scheme!r})"


def _node(value: Any, key: str) -> str:
    """One startup node, ``"host:port"`` or ``{"host": ..., "port": ...}``, as ``"host:port"``."""
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in ("host", "port")]
        if unknown or "host" not in value:
            raise ConfigurationError(f"a startup node needs the keys host and port (got {sorted(map(str, value))})",
                                     key)
        host, port = value["host"], value.get("port", 6379)
    elif isinstance(value, str):
        host, colon, port_text = value.strip().rpartition(":")
        if not colon:
            host, port_text = value.strip(), "6379"
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:7000
        try:
            port = int(port_text, 10)
        except ValueError:
            raise ConfigurationError(f"{value!r} is not host:port", key) from None
    else:
        raise ConfigurationError(f"must be 'host:port' or a mapping {{host, port}}, not {type(value).__name__} "
                                 f"({value!r})", key)
    problem = _host_problem(host) if isinstance(host, str) else f"host must be a string, not {host!r}"
    if problem is None and not (_is_int(port) and 1 <= port <= 65535):
        problem = f"port must be an integer 1-65535 (got {port!r})"
    if problem is not None:
        raise ConfigurationError(problem, key)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _nodes(value: Any, key: str) -> tuple[str, ...]:
    nodes = tuple(_node(v, item(key, i)) for i, v in enumerate(value))
    return tuple(dict.fromkeys(nodes))


NODES: Final = Kind("a list of 'host:port' strings or {host, port} mappings", _is_list, _nodes,
                   parse=lambda text: [p.strip() for p in text.split(",") if p.strip()])


def _prefix_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    bad = bad_char(value)
    if bad is None:
        return None
    return (f"{value!r} contains the forbidden character {describe_char(bad)} "
            "(no braces, whitespace or control characters)")


def _name_problem(value: str) -> str | None:
    return None if value.strip() and len(value) <= 200 else "must be a non-empty string of at most 200 characters"


# --------------------------------------------------------------------------- the core configuration

REDIS: Final = Section("redis", (
    Field("host", STR, "localhost", "server host name", rule=_host_problem),
    Field("port", INT, 6379, "server port", minimum=1, maximum=65535),
    Field("db", INT, 0, "database number", minimum=0, maximum=15),
    Field("password", STR, None, "password (never shown in repr, checks or logs)", optional=True),
    Field("username", STR, None, "ACL user name", optional=True),
    Field("url", STR, None, "redis://, rediss:// or unix:// URL (redis+cluster:// or rediss+cluster://: a Redis "
          "Cluster, the URL's host one of its nodes); wins over the fields below", optional=True, rule=_url_problem),
    Field("ssl", BOOL, False, "TLS"),
    Field("socket_timeout", FLOAT, 5.0, "seconds a call may wait for an answer", minimum=0, above=True),
    Field("socket_connect_timeout", FLOAT, 5.0, "seconds a connection attempt may take", minimum=0, above=True),
    Field("health_check_interval", FLOAT, 30.0, "seconds between connection health checks (0: off)", minimum=0),
    Field("max_connections", INT, None, "connection pool size limit (a prefetching worker keeps one per slot)",
          optional=True, minimum=1),
    Field("cluster", BOOL, False, "a Redis Cluster (db must be 0): the client discovers every node from "
          "startup_nodes, else from the url or host/port"),
    Field("startup_nodes", NODES, (), "cluster nodes to discover the cluster from ('host:port' or {host, port}); "
          "any one answering is enough"),
), "How to reach Redis.")

WORKER: Final = Section("workers", (
    Field("id", STR, doc="unique worker id", rule=worker_id_problem),
    Field("assigned_users", USERS, (), "users this worker serves first; ids or glob patterns"),
    Field("steal_targets", USERS, (), "users it may serve when none of its own has ready work"),
    Field("poll_interval_seconds", FLOAT, 1.0, "longest idle wait between checks", minimum=0, above=True),
    Field("max_concurrent_tasks", INT, 10, "tasks run at once", minimum=1),
    Field("task_timeout_seconds", FLOAT, None, "default per-task timeout", optional=True, minimum=0, above=True),
    Field("graceful_shutdown_timeout", FLOAT, 30.0, "seconds running tasks may take after SIGTERM",
          minimum=0, above=True),
    Field("heartbeat_interval_seconds", FLOAT, 5.0, "lease renewal and health record period",
          minimum=0, above=True),
), "One worker (one 'runfairworker <id>' process).")

QUEUE: Final = Section("queue", (
    Field("stats_prefix", STR, "fq", "prefix of every Redis key (as the hash tag)", rule=_prefix_problem),
    Field("default_max_retries", INT, 3, "retries of tasks that do not set max_retries", minimum=0),
    Field("enable_pipeline_optimization", BOOL, True, "push_batch stores up to batch_size tasks per call"),
    Field("xcom_ttl_seconds", INT, 3600, "lifetime of XCom values", minimum=1),
    Field("lease_timeout_seconds", FLOAT, 30.0, "how long a popped task stays leased without a heartbeat",
          minimum=0, above=True),
    Field("retry_backoff_base_seconds", FLOAT, 1.0, "first retry delay", minimum=0),
    Field("retry_backoff_max_seconds", FLOAT, 300.0, "cap of the retry delay", minimum=0),
    Field("max_payload_bytes", INT, 1_048_576, "largest encoded task body", minimum=1),
    Field("max_user_id_length", INT, DEFAULT_MAX_USER_ID_LENGTH, "longest user id", minimum=1),
    Field("result_ttl_seconds", INT, 3600, "how long a task's outcome is kept", minimum=1),
    Field("store_results", BOOL, True, "keep every task's outcome (False: only tasks that ask)"),
    Field("batch_size", INT, 1000, "tasks per script call in push_batch", minimum=1),
    Field("idempotency_ttl_seconds", INT, 86_400, "how long an idempotent push (the outbox relay) remembers "
          "a task id, so that pushing it again is a duplicate", minimum=1),
    Field("tenant_retention_seconds", FLOAT, 86_400.0, "a tenant idle this long (no unfinished task) has its "
          "per-tenant counters, histograms and finish tags folded into the totals and removed (0: kept forever)",
          minimum=0),
    Field("shards", INT, 1, "keyspace shards the tenants are spread over, each under its own hash tag "
          "({prefix:N}); 1 = one hash tag, a single Redis's layout", minimum=1, maximum=1024),
    Field("shard_pins", PINS, types.MappingProxyType({}), "user id or glob pattern -> the shard its keys live "
          "in (else a stable hash of the id picks it); an exact id wins, then the first matching pattern"),
    Field("user_weights", WEIGHTS, types.MappingProxyType({}), "user id -> scheduling weight"),
    Field("fairness", STR, "count", "fair by tasks served (count) or by worker time (time)",
          choices=FAIRNESS_MODES),
    Field("metrics", BOOL, True, "the scripts keep wait/run histograms and throughput"),
    Field("orphan_takeover", BOOL, True, "live workers serve the tenants of a worker id without a live heartbeat"),
    Field("orphan_after_seconds", FLOAT, None, "silence after which a worker's tenants are taken over "
          "(None: its stale threshold, max(3 x heartbeat, lease))", optional=True, minimum=0, above=True),
    Field("tenant_concurrency", INT, None, "default cap on the tasks one tenant has leased at once, fleet-wide "
          "(None: no cap)", optional=True, minimum=1),
    Field("tenant_limits", TENANT_LIMITS, types.MappingProxyType({}), "user id or glob pattern -> "
          "{concurrency, rate ('10/s', '100/m', '1000/h'), burst}; an exact id wins, then the first matching pattern"),
), "Queue-wide settings.")

WORKER_ID: Final = Field("worker_id", STR, None, "the worker of this process", optional=True,
                         rule=worker_id_problem)

# --------------------------------------------------------------------------- Django settings

DJANGO_OPTIONS: Final = Section("FAIRQUE", (
    Field("CONFIG_FILE", PATH, None, "YAML file in the FairQueue format", optional=True,
          expects="a non-empty string or None"),
    Field("CACHE_ALIAS", TEXT, None, "a Redis cache in CACHES whose connection to share", optional=True,
          expects="a non-empty string or None"),
    Field("TENANT_RESOLVER", CALLABLE_PATH, "fairque_django.tenancy.default_resolver",
          "dotted path (or callable) mapping objects to user ids"),
    Field("HANDLER", CLASS_PATH, None, "dotted path of the TaskHandler class runfairworker uses", optional=True,
          expects="a dotted import path of a TaskHandler class or None"),
    Field("ENQUEUE_ON_COMMIT", Kind("True or False", lambda v: isinstance(v, bool)), False,
          "enqueue() waits for the transaction to commit"),
    Field("ENQUEUE_MODE", STR, "direct", "how enqueue() hands tasks over: direct (push now), on_commit (push "
          "when the transaction commits) or outbox (a row in the transaction, pushed by the relay)",
          choices=ENQUEUE_MODES),
    Field("OUTBOX_PUSH_ON_COMMIT", Kind("True or False", lambda v: isinstance(v, bool)), True,
          "outbox: the enqueuing process pushes its rows right after the commit; the relay takes the rest"),
    Field("OUTBOX_BATCH_SIZE", WHOLE, 500, "outbox rows the relay pushes per database transaction",
          minimum=1, maximum=10_000),
    Field("OUTBOX_RELAY_INTERVAL", FLOAT, 1.0, "seconds the relay sleeps when the outbox is empty",
          minimum=0, above=True),
    Field("WORKER_ID", TEXT, None, "the current worker of this process", optional=True,
          expects="a non-empty string or None"),
    Field("TASK_MODULES", Kind("a list of dotted module paths", _all_strings, _strings), (),
          "extra modules runfairworker imports at start"),
    Field("ALERTS", RULES, (), "alert rules the workers evaluate (each checked with ALERT_RULE)",
          optional=True, expects="a list of alert rules (dicts)"),
    Field("ALERT_INTERVAL", FLOAT, 30.0, "seconds between two evaluations of the alert rules",
          minimum=0, above=True),
    Field("SCHEDULES", Kind("a dict of schedule name -> schedule", lambda v: isinstance(v, Mapping)),
          types.MappingProxyType({}), "periodic schedules the workers fire (each checked with SCHEDULE)",
          optional=True, expects="a dict of schedule name -> schedule (dicts)"),
    Field("METRICS_TOKEN", TEXT, None, "bearer token accepted by the metrics view", optional=True,
          expects="a non-empty string or None"),
    Field("METRICS_TOP_TENANTS", WHOLE, 20, "tenants exported with their own label", minimum=1),
), "The upper-case (Django-level) keys of the FAIRQUE setting.")

BACKEND_OPTIONS: Final = Section("OPTIONS", (
    Field("DEFAULT_USER", STR, None, "user id of enqueues without a current tenant", optional=True,
          rule=user_id_problem, expects="a user id or None"),
    Field("ENQUEUE_ON_COMMIT", Kind("True or False", lambda v: isinstance(v, bool)), None,
          "push when the transaction commits (None: FAIRQUE['ENQUEUE_ON_COMMIT'])", optional=True,
          expects="True, False or None"),
    Field("MAX_RETRIES", INT, None, "retries of this backend's tasks (None: queue.default_max_retries)",
          optional=True, minimum=0, expects="an integer or None"),
    Field("TIMEOUT", FLOAT, None, "per-task timeout in seconds", optional=True, minimum=0, above=True,
          expects="a number of seconds or None"),
), "TASKS[alias]['OPTIONS'] of FairQueueBackend.")

# --------------------------------------------------------------------------- alert rules

ALERT_RULE_OPTIONS: Final[Mapping[str, Section]] = types.MappingProxyType({
    "dlq_size_above": Section("dlq_size_above", (
        Field("threshold", WHOLE, doc="tasks in the dead-letter queue", minimum=0),
    )),
    "total_depth_above": Section("total_depth_above", (
        Field("threshold", WHOLE, doc="tasks in the lanes, all tenants", minimum=0),
        Field("lanes", STRINGS, ("ready",), "lanes counted", choices=DEPTH_LANES),
    )),
    "oldest_wait_above": Section("oldest_wait_above", (
        Field("threshold", FLOAT, doc="seconds", minimum=0, above=True),
        Field("tenants", STRINGS, (), "ids or glob patterns (default: all)"),
        Field("scan", WHOLE, 1000, "tenants with the most work looked at", minimum=1, maximum=100_000),
    )),
    "no_live_worker": Section("no_live_worker", (
        Field("users", STRINGS, (), "ids or patterns that need a live worker (default: any worker)"),
    )),
    "heartbeat_older_than": Section("heartbeat_older_than", (
        Field("threshold", FLOAT, doc="seconds", minimum=0, above=True),
        Field("workers", STRINGS, (), "worker ids (default: configured workers)"),
    )),
    "failure_ratio_above": Section("failure_ratio_above", (
        Field("threshold", FLOAT, doc="failed / finished attempts", minimum=0, maximum=1.0),
        Field("window", FLOAT, 300.0, "seconds looked back", minimum=1.0, maximum=3600.0),
        Field("min_events", WHOLE, 10, "finished attempts needed to fire", minimum=1),
    )),
    "unserved_tenants": Section("unserved_tenants", ()),
    "stalled_tenants": Section("stalled_tenants", ()),
    "tenant_at_cap": Section("tenant_at_cap", (
        Field("for_seconds", FLOAT, 300.0, "seconds a tenant stays at its cap before it fires", minimum=0),
        Field("tenants", STRINGS, (), "ids or glob patterns (default: all)"),
        Field("scan", WHOLE, 1000, "tenants with the most work looked at", minimum=1, maximum=100_000),
    )),
})

ALERT_RULE: Final = Section("alert rule", (
    Field("name", STR, doc="unique name of the rule", rule=_name_problem,
          expects="a non-empty string of at most 200 characters"),
    Field("type", STR, doc="the rule type", choices=tuple(ALERT_RULE_OPTIONS)),
    Field("severity", STR, "warning", "severity reported with it", choices=SEVERITIES),
    Field("description", STR, "", "free text"),
), "Fields every alert rule has; ALERT_RULE_OPTIONS holds those of each type.")

# --------------------------------------------------------------------------- schedules


def _tenants(value: Any, key: str) -> tuple[str, ...] | str:
    if isinstance(value, str):  # a dotted path of a callable returning tenant ids
        if not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$", value):
            raise ConfigurationError(
                f"a string names a callable by dotted path (got {value!r}); write a list for ids or patterns: "
                f"[{value!r}]", key)
        return value
    return _user_list(value, key)


def _whole_seconds(value: float) -> str | None:
    return None if float(value).is_integer() else f"must be whole seconds (got {value!r})"


def _json_kwargs(value: Mapping[Any, Any], key: str) -> Mapping[str, Any]:
    for name in value:
        if not isinstance(name, str):
            raise ConfigurationError(f"keyword names must be strings (got {name!r})", key)
    return types.MappingProxyType(dict(value))


def _zone_problem(value: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}"
    return None


SCHEDULE: Final = Section("schedule", (
    Field("task", TEXT, doc="name of a registered task (its import path, or the @task name=)"),
    Field("cron", TEXT, None, "cron expression (5 fields; 6 with seconds first), evaluated in timezone",
          optional=True, expects="a cron expression or None"),
    Field("every", FLOAT, None, "seconds between ticks (whole seconds, >= 1), counted from the epoch",
          optional=True, minimum=1, rule=_whole_seconds, expects="a number of seconds or None"),
    Field("user", STR, None, "the one tenant each tick runs the task for", optional=True, rule=user_id_problem,
          expects="a user id or None"),
    Field("tenants", Kind("a list of user ids / glob patterns, or a dotted path of a callable",
                          lambda v: isinstance(v, str) or _is_list(v), _tenants), None,
          "one task per tenant per tick: ids and glob patterns (over known tenants), or a dotted path",
          optional=True),
    Field("args", Kind("a list", _is_list, lambda v, key: tuple(v)), (), "positional arguments (JSON)"),
    Field("kwargs", Kind("a dict", lambda v: isinstance(v, Mapping), _json_kwargs), types.MappingProxyType({}),
          "keyword arguments (JSON)"),
    Field("priority", INT, None, "priority 1-6 (None: the task's)", optional=True, minimum=1, maximum=6,
          expects="an integer 1-6 or None"),
    Field("max_retries", INT, None, "retries (None: the task's, else queue.default_max_retries)", optional=True,
          minimum=0, expects="an integer or None"),
    Field("catch_up", BOOL, True, "a tick missed while no worker was up fires once when one is (False: skipped)"),
    Field("grace_seconds", FLOAT, 10.0, "a tick is on time until this late; later it counts as missed",
          minimum=0, above=True),
    Field("timezone", TEXT, None, "time zone of the cron expression (None: settings.TIME_ZONE)", optional=True,
          rule=_zone_problem, expects="a time zone name or None"),
), "One entry of FAIRQUE['SCHEDULES'] (name -> fields).")

SECTIONS: Final[tuple[Section, ...]] = (DJANGO_OPTIONS, REDIS, WORKER, QUEUE)
"""The sections docs/settings.md documents as tables, in its order."""


def doc_default(spec: Field) -> str:
    """A field's default as docs/settings.md writes it (``"fq"``, ``None``, ``[]``, ``required``)."""
    value = spec.default
    if spec.required:
        return "required"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return repr(list(value))
    if isinstance(value, Mapping):
        return repr(dict(value))
    return repr(value)

