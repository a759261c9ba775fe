"""Django system checks for the ``FAIRQUE`` setting and the tasks fairque workers import.

Every id this package emits (these and ``FairQueueBackend.check()``'s W101/E101-E104) and its
meaning are listed in docs/settings.md, section "System checks"; every hint points there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .caches import cache_backend_kind, redis_display_url
from .conf import (
    DEFAULTS,
    FairQueueImproperlyConfigured,
    config_problems,
    fairque_setting,
    get_config,
    get_redis_client,
    get_setting,
)
from .core.config import FairQueueConfig, Problem
from .core.ids import is_pattern
from .core.observe import beat_interval

__all__ = [
    "check_cache_alias",
    "check_config",
    "check_import_paths",
    "check_orphan_after",
    "check_redis_deploy",
    "check_redis_ping",
    "check_task_queues",
    "check_unservable_users",
    "register_checks",
    "task_module_names",
    "unservable_users",
]

_ID = "fairque_django."
TAG = "fairque"
DOCS = "see docs/settings.md"  # the settings reference every hint points at
# problems of these codes get their own check ids (E002, E003: one message each); the first other one is E001
_OWN_IDS = frozenset({"duplicate_worker_id", "double_assignment"})


def _options_or_none() -> dict[str, Any] | None:
    """The Django-level options, or None when ``FAIRQUE`` itself is broken (E001 reports it)."""
    try:
        return {name: get_setting(name) for name in DEFAULTS}
    except FairQueueImproperlyConfigured:
        return None


def _duplicate_message(problem: Problem) -> CheckMessage:
    """E002 (a worker id used twice) or E003 (a user assigned to several workers), naming every place."""
    if problem.code == "duplicate_worker_id":
        return Error(
            f"FAIRQUE: worker id {problem.subject!r} is used by more than one worker ({', '.join(problem.places)}).",
            hint=f"Give every worker a unique id; each id is one 'runfairworker <id>' process; {DOCS}, "
            "section `workers`.",
            id=_ID + "E002",
        )
    return Error(
        f"FAIRQUE: user {problem.subject!r} is in assigned_users of several workers "
        f"({', '.join(map(repr, problem.places))}).",
        hint="A user is assigned to exactly one worker; other workers may list it in "
        f"steal_targets instead; {DOCS}, section `workers`.",
        id=_ID + "E003",
    )


def check_config(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001 (no FAIRQUE), E001 (malformed), E002 (duplicate worker id), E003 (double assignment)."""
    try:
        raw = fairque_setting()
    except FairQueueImproperlyConfigured as exc:
        return [Error(f"FAIRQUE is malformed: {exc}", hint=f"FAIRQUE must be a dict; {DOCS}.", id=_ID + "E001")]
    if raw is None:
        return [Warning(
            "The FAIRQUE setting is not defined: using one worker 'worker-001' serving every user, "
            "on Redis at localhost:6379/0.",
            hint='Define FAIRQUE = {"redis": {...}, "workers": [...], "queue": {...}} or '
            f'{{"CONFIG_FILE": "fairque_config.yaml"}} in your settings; {DOCS}.',
            id=_ID + "W001",
        )]
    problems = config_problems()
    messages = [_duplicate_message(p) for p in problems if p.code in _OWN_IDS]
    other = [p for p in problems if p.code not in _OWN_IDS]
    if other:
        messages.insert(0, Error(
            f"FAIRQUE is malformed: {other[0]}",
            hint=f"Fix the key named at the start of the message; {DOCS} lists every key.",
            id=_ID + "E001",
        ))
    return messages


def check_cache_alias(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004 (CACHE_ALIAS not in CACHES), E005 (not a Redis cache)."""
    options = _options_or_none()
    alias = options["CACHE_ALIAS"] if options else None
    if not alias:
        return []
    try:
        cache_backend_kind(alias)
    except FairQueueImproperlyConfigured as exc:
        from django.conf import settings

        if alias not in getattr(settings, "CACHES", {}):
            return [Error(str(exc), hint=f"Add the cache to CACHES or fix FAIRQUE['CACHE_ALIAS']; {DOCS}, "
                          "section Django-level keys.", id=_ID + "E004")]
        return [Error(str(exc), hint="Point FAIRQUE['CACHE_ALIAS'] at a django-redis or "
                      "django.core.cache.backends.redis.RedisCache cache, or remove it to use "
                      f"FAIRQUE['redis']; {DOCS}, section Django-level keys.", id=_ID + "E005")]
    return []


def unservable_users(config: FairQueueConfig) -> list[str]:
    """Users named in *config* whose tasks no worker would ever pop."""
    if not config.workers:
        return []  # without workers every queue pops from the shared pool
    named: dict[str, None] = {}
    for worker in config.workers:
        named.update(dict.fromkeys(sorted(worker.steal_exact)))
    named.update(dict.fromkeys(config.queue.user_weights))
    return [
        user for user in named
        if not any(w.serves_assigned(user) or w.may_steal(user) for w in config.workers)
    ]


def check_unservable_users(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002: users in the config that no worker is assigned and no worker may steal."""
    try:
        config = get_config()
    except FairQueueImproperlyConfigured:
        return []  # reported by check_config
    users = unservable_users(config)
    if not users:
        return []
    shown = ", ".join(map(repr, users[:20])) + (f" and {len(users) - 20} more" if len(users) > 20 else "")
    return [Warning(
        f"FAIRQUE: no worker is assigned or may steal these users, so their tasks would never run: "
        f"{shown}.",
        hint="Add them to some worker's assigned_users or steal_targets (patterns such as 'tenant:*' "
        f"work), or remove them from queue.user_weights; {DOCS}, section `workers`.",
        id=_ID + "W002",
    )]


def check_orphan_after(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003: ``queue.orphan_after_seconds`` shorter than two heartbeats of a worker (its tenants
    would be taken over while it runs)."""
    try:
        config = get_config()
    except FairQueueImproperlyConfigured:
        return []  # reported by check_config
    after = config.queue.orphan_after_seconds
    if after is None or not config.queue.orphan_takeover:
        return []
    short = [w.id for w in config.workers if after < 2 * beat_interval(config, w)]
    if not short:
        return []
    return [Warning(
        f"FAIRQUE: queue.orphan_after_seconds ({after:g}) is shorter than two heartbeat intervals of "
        f"{', '.join(short)}: live workers would take their tenants over between two beats.",
        hint="Raise queue.orphan_after_seconds (or leave it None: the stale threshold), or lower "
        f"heartbeat_interval_seconds; {DOCS}, section `queue`.",
        id=_ID + "W003",
    )]


def longest_gap(schedule: Any, start: float, ticks: int = 60) -> float:
    """The longest time between two of the schedule's next ``ticks`` ticks after ``start`` (seconds)."""
    gap, at = 0.0, schedule.next_after(start)
    for _ in range(ticks):
        following = schedule.next_after(at)
        gap, at = max(gap, float(following - at)), following
    return gap


def check_pattern_schedules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: a schedule whose tenants include a glob pattern, rarer than ``queue.tenant_retention_seconds``:
    the pattern only matches tenants seen within the retention window, so tenants that were quiet
    since its last tick would be skipped."""
    import time

    from .schedules import get_schedules

    try:
        config = get_config()
        schedules = get_schedules()
    except Exception:  # malformed settings: reported by check_config and the schedule loader
        return []
    window = config.queue.tenant_retention_seconds
    if not window:
        return []
    messages: list[CheckMessage] = []
    now = time.time()
    for schedule in schedules:
        if not isinstance(schedule.tenants, tuple) or not any(is_pattern(t) for t in schedule.tenants):
            continue
        gap = longest_gap(schedule, now)
        if gap > window:
            messages.append(Warning(
                f"FAIRQUE: schedule {schedule.name!r} fans out to tenant patterns but fires up to {gap:g} s "
                f"apart, longer than queue.tenant_retention_seconds ({window:g}): a pattern matches only "
                "tenants seen within that window, so tenants quiet since the last tick would be skipped.",
                hint="Give the schedule its tenants by id or by a callable, or raise "
                f"queue.tenant_retention_seconds; {DOCS}, section `queue` and docs/schedules.md.",
                id=_ID + "W004",
            ))
    return messages


def _import_problem(path: Any, *, want_class: bool) -> str | None:
    from django.utils.module_loading import import_string

    if not isinstance(path, str):
        obj = path
    else:
        try:
            obj = import_string(path)
        except ImportError as exc:
            return f"cannot import {path!r}: {exc}"
        except Exception as exc:  # an error while importing the user's module
            return f"importing {path!r} failed: {type(exc).__name__}: {exc}"
    if want_class:
        from .core.handler import TaskHandler

        if not isinstance(obj, type):
            return f"{path!r} is not a class"
        if not issubclass(obj, TaskHandler):
            return f"{path!r} is not a subclass of fairque_django.core.handler.TaskHandler"
    if not want_class and not callable(obj):
        return f"{path!r} is not callable"
    return None


_IMPORT_CHECKS = (  # key, a class (else a callable), check id, hint
    ("TENANT_RESOLVER", False, _ID + "E006", "Give the dotted path of a callable taking an object and returning a "
     "user id (default 'fairque_django.tenancy.default_resolver')"),
    ("HANDLER", True, _ID + "E007", "Give the dotted path of a TaskHandler subclass, or None for the default handler"),
)


def check_import_paths(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E006 (TENANT_RESOLVER), E007 (HANDLER)."""
    options = _options_or_none()
    if options is None:
        return []
    messages: list[CheckMessage] = []
    for name, want_class, check_id, hint in _IMPORT_CHECKS:
        value = options[name]
        problem = None if value is None else _import_problem(value, want_class=want_class)
        if problem:
            messages.append(Error(f"FAIRQUE[{name!r}]: {problem}.", hint=f"{hint}; {DOCS}, section Django-level keys.",
                                  id=check_id))
    return messages


def check_redis_ping(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E008 (deploy): Redis answers PING."""
    try:
        client = get_redis_client()
    except FairQueueImproperlyConfigured:
        return []  # reported by the other checks
    import redis

    where = redis_display_url(client)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return [Error(
            f"FairQueue cannot reach Redis at {where}: {type(exc).__name__}: {exc}",
            hint=f"Start Redis or fix FAIRQUE['redis'] / FAIRQUE['CACHE_ALIAS']; {DOCS}, section `redis`.",
            id=_ID + "E008",
        )]
    return []


EVICTION_SAFE = "noeviction"  # any other maxmemory-policy may evict task hashes and lanes when Redis is full
CLUSTER_SLOTS = 16384


def _policy_problem(node: Any, where: str) -> CheckMessage | None:
    """E009 when the server *node* may evict tasks (allkeys-*), W005 keys with a TTL (volatile-*), W006
    when it does not say (CONFIG refused)."""
    import redis

    try:
        policy = node.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError as exc:  # CONFIG renamed or refused (managed services)
        return Warning(
            f"FairQueue could not read maxmemory-policy of Redis at {where} ({exc}).",
            hint=f"Make sure it is '{EVICTION_SAFE}' (an evicting Redis silently drops tasks when it is full); "
            f"{DOCS}, section System checks.",
            id=_ID + "W006",
        )
    policy = policy.decode() if isinstance(policy, bytes) else policy
    if policy == EVICTION_SAFE:
        return None
    if not str(policy).startswith("allkeys"):  # volatile-*: only keys with a TTL go
        return Warning(
            f"Redis at {where} has maxmemory-policy {policy!r}: when it is full it evicts keys that have a TTL "
            "(results, XCom, worker heartbeats, the outbox relay's idempotency records).",
            hint=f"Set maxmemory-policy {EVICTION_SAFE}: a lost heartbeat looks like a dead worker and a lost "
            f"idempotency record lets a relayed task run twice; {DOCS}, section System checks.",
            id=_ID + "W005",
        )
    return Error(
        f"Redis at {where} has maxmemory-policy {policy!r}: when it is full it evicts keys, and with them tasks.",
        hint=f"Set maxmemory-policy {EVICTION_SAFE} on every Redis (every master of a cluster) FairQueue uses: "
        f"a full Redis then refuses pushes with an error instead; {DOCS}, section System checks.",
        id=_ID + "E009",
    )


def _cluster_info(reply: Any) -> dict[str, str]:
    """A CLUSTER INFO reply as a dict (redis-py may have parsed it already)."""
    if isinstance(reply, Mapping):
        return {str(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


def _cluster_problems(client: Any) -> list[CheckMessage]:
    """E010 for each master of a cluster that is not healthy (cluster_state, slots), E009/W005/W006 for
    each master that may evict."""
    messages: list[CheckMessage] = []
    for node in client.get_primaries():
        where = f"{node.host}:{node.port}"
        info = _cluster_info(node.redis_connection.execute_command("CLUSTER INFO"))
        state, assigned = info.get("cluster_state"), int(info.get("cluster_slots_assigned", 0))
        failing = int(info.get("cluster_slots_fail", 0)) + int(info.get("cluster_slots_pfail", 0))
        if state != "ok" or assigned != CLUSTER_SLOTS or failing:
            messages.append(Error(
                f"Redis Cluster master {where} reports cluster_state:{state}, {assigned} of {CLUSTER_SLOTS} slots "
                f"assigned, {failing} failing: the queue's keys may be unreachable.",
                hint="Assign every slot to a master and repair or fail over the failing nodes (redis-cli "
                f"--cluster check {where}); {DOCS}, section System checks.",
                id=_ID + "E010",
            ))
        problem = _policy_problem(node.redis_connection, where)
        if problem is not None:
            messages.append(problem)
    return messages


def check_redis_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Deploy: E009/W005/W006 (maxmemory-policy of the Redis, of every master of a cluster), E010 (a
    cluster not healthy), E011 (a cluster node used as a single Redis). Quiet when Redis does not
    answer (E008 says so)."""
    try:
        client = get_redis_client()
    except FairQueueImproperlyConfigured:
        return []
    import redis

    from .core.connection import is_cluster

    where = redis_display_url(client)
    try:
        if is_cluster(client):
            return _cluster_problems(client)
        if client.info("cluster").get("cluster_enabled") in (1, "1"):
            return [Error(
                f"Redis at {where} is a node of a Redis Cluster, used as a single Redis: commands for the "
                "slots of other masters fail with MOVED.",
                hint="Set FAIRQUE['redis'] = {'cluster': True, 'startup_nodes': [...]} (or a redis+cluster:// "
                f"url); {DOCS}, section `redis`.",
                id=_ID + "E011",
            )]
        problem = _policy_problem(client, where)
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException, OSError):
        return []  # E008
    return [] if problem is None else [problem]


def _fair_backends() -> list[Any]:
    """The ``FairQueueBackend`` instances configured in ``TASKS`` (none without the task framework)."""
    from django.conf import settings

    tasks = getattr(settings, "TASKS", None)
    if not isinstance(tasks, Mapping) or not any(
            isinstance(c, Mapping) and str(c.get("BACKEND", "")).startswith("fairque_django.")
            for c in tasks.values()):
        return []
    try:
        from .backends import FairQueueBackend
        from .compat import task_backends
    except ImportError:
        return []
    found = []
    for alias in tasks:
        try:
            backend = task_backends[alias]
        except Exception:  # an unusable TASKS entry: the task framework's own check reports it
            continue
        if isinstance(backend, FairQueueBackend):
            found.append(backend)
    return found


def task_module_names() -> list[str]:
    """The modules a worker imports to find tasks: each installed app's ``tasks`` and
    ``FAIRQUE["TASK_MODULES"]`` (as ``runfairworker`` and the backend's discovery do)."""
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    names = [f"{config.name}.tasks" for config in apps.get_app_configs()
             if module_has_submodule(config.module, "tasks")]
    options = _options_or_none()
    extra = options["TASK_MODULES"] if options else ()
    return list(dict.fromkeys([*names, *(m for m in extra if isinstance(m, str))]))


def check_task_queues(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E105 (a Django task names a queue not in its backend's QUEUES, or is otherwise invalid
    for it), E106 (a task module does not import). Only with a FairQueueBackend in ``TASKS``:
    the framework validates a task when its module is imported, which Django itself never does
    before the first enqueue, so this check imports the modules the workers import."""
    import importlib

    backends = {b.alias: b for b in _fair_backends()}
    if not backends:
        return []
    from .compat import InvalidTask, Task

    allowed = "; ".join(f"TASKS[{alias!r}]['QUEUES'] = {sorted(b.queues)!r}" for alias, b in backends.items())
    messages: list[CheckMessage] = []
    for name in task_module_names():
        try:
            module = importlib.import_module(name)
        except InvalidTask as exc:
            messages.append(Error(
                f"Task module {name!r} does not import: a task in it is invalid for its backend: {exc}",
                hint=f"Use a queue_name listed in QUEUES ({allowed}) or add the queue there; "
                "see docs/tasks-backend.md and docs/settings.md, section System checks.",
                id=_ID + "E105"))
            continue
        except Exception as exc:  # the user's module is broken: workers would not start either
            messages.append(Error(
                f"Task module {name!r} does not import: {type(exc).__name__}: {exc}",
                hint=f"Fix the module, or remove it from FAIRQUE['TASK_MODULES']; {DOCS}, section "
                "Django-level keys.", id=_ID + "E106"))
            continue
        for attr, obj in sorted(vars(module).items()):
            backend = backends.get(getattr(obj, "backend", "")) if isinstance(obj, Task) else None
            if backend is not None and backend.queues and obj.queue_name not in backend.queues:
                messages.append(Error(
                    f"Django task {name}.{attr} uses queue {obj.queue_name!r}, which is not in "
                    f"TASKS[{backend.alias!r}]['QUEUES'] {sorted(backend.queues)!r}: enqueueing it fails.",
                    hint="Add the queue to QUEUES or change the task's queue_name; see "
                    "docs/tasks-backend.md and docs/settings.md, section System checks.",
                    id=_ID + "E105"))
    return messages


def register_checks() -> None:
    """Register the checks (idempotent: Django keeps checks in a set); all are tagged ``fairque``."""
    register(TAG, Tags.compatibility)(check_config)
    register(TAG, Tags.caches)(check_cache_alias)
    register(TAG, Tags.compatibility)(check_unservable_users)
    register(TAG, Tags.compatibility)(check_orphan_after)
    register(TAG, Tags.compatibility)(check_pattern_schedules)
    register(TAG, Tags.compatibility)(check_import_paths)
    register(TAG, deploy=True)(check_redis_ping)
    register(TAG, deploy=True)(check_redis_deploy)
    register(TAG, Tags.compatibility)(check_task_queues)
