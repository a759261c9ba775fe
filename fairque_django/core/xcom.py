"""XCom: small JSON values shared between tasks by key, with a TTL, scoped per user (tenant).

Inside a running task the scope is always that task's user: a task can never read or write
another tenant's values. Outside a task, the user is given explicitly or taken from the
current tenant. A task run directly (``task()``) with no user and no current tenant keeps its
values in this process's memory.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .context import RunningTask, current_user, resolve_queue, running_task
from .errors import SerializationError, TaskValidationError
from .keys import Keys, validate_key_part, validate_user_id
from .models import dumps
from .transport import redis_errors

_local: dict[str, tuple[float, str]] = {}
_local_lock = threading.Lock()
_MISSING = object()


def _scope(user_id: str | None) -> tuple[str | None, RunningTask | None]:
    running = running_task()
    if running is not None and running.task.user_id:
        if user_id is not None and user_id != running.task.user_id:
            raise TaskValidationError(
                f"a task of user {running.task.user_id!r} cannot use the XCom values of {user_id!r}"
            )
        return running.task.user_id, running
    if user_id is not None:
        return validate_user_id(user_id), running
    if running is not None:  # direct run without any user: process-local values
        user = current_user(required=False)
        return user, running
    return current_user(required=True), running


def _queue() -> Any:
    return resolve_queue("XCom")


def _keys(queue: Any, user: str) -> Keys:
    """The keys of ``user``'s keyspace shard (a sharded queue's ``queue_of``; see core/sharded.py)."""
    of = getattr(queue, "queue_of", None)
    keys: Keys = (of(user) if of is not None else queue).keys
    return keys


def xcom_push(key: str, value: Any, *, user_id: str | None = None, ttl: int | None = None) -> None:
    """Store ``value`` (JSON) under ``key`` for the current task's user (or ``user_id``)."""
    validate_key_part(key, "XCom key")
    data = dumps(value, what=f"XCom value for {key!r}")
    user, _ = _scope(user_id)
    if user is None:
        with _local_lock:
            _local[key] = (time.monotonic() + (ttl or 3600), data)
        return
    queue = _queue()
    seconds = ttl if ttl is not None else queue.config.queue.xcom_ttl_seconds
    with redis_errors("xcom_push"):
        queue.client.set(_keys(queue, user).xcom(user, key), data, ex=int(seconds))


def xcom_pull(key: str, default: Any = None, *, user_id: str | None = None) -> Any:
    """The value stored under ``key`` for the current task's user, or ``default`` if missing/expired."""
    validate_key_part(key, "XCom key")
    user, _ = _scope(user_id)
    if user is None:
        with _local_lock:
            entry = _local.get(key)
        if entry is None or entry[0] < time.monotonic():
            return default
        return json.loads(entry[1])
    queue = _queue()
    with redis_errors("xcom_pull"):
        raw = queue.client.get(_keys(queue, user).xcom(user, key))
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:  # garbage written into the key
        raise SerializationError(f"the XCom value {key!r} of user {user!r} in Redis is not JSON: {exc}") from exc


def xcom_delete(key: str, *, user_id: str | None = None) -> bool:
    """Remove ``key`` from the current user's XCom; True if it existed."""
    validate_key_part(key, "XCom key")
    user, _ = _scope(user_id)
    if user is None:
        with _local_lock:
            return _local.pop(key, None) is not None
    queue = _queue()
    with redis_errors("xcom_delete"):
        return bool(queue.client.delete(_keys(queue, user).xcom(user, key)))
