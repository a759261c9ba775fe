"""fairque_django: fair multi-tenant background tasks for Django on Redis."""

from __future__ import annotations

import importlib
from typing import Any

from .core.aio import AsyncTaskQueue
from .core.aio_sharded import AsyncShardedTaskQueue, open_async_queue
from .core.config import FairQueueConfig, QueueConfig, RedisConfig, WorkerConfig
from .core.context import cancelled, raise_if_cancelled
from .core.errors import (
    ConfigurationError,
    CorruptTaskError,
    DependencyError,
    FairQueueError,
    LeaseLostError,
    MissingTenantError,
    PayloadTooLargeError,
    RedisUnavailableError,
    ResultNotReadyError,
    ResultTimeoutError,
    SerializationError,
    TaskCancelled,
    TaskFailedError,
    TaskNotFoundError,
    TaskNotRegisteredError,
    TaskValidationError,
    UnknownWorkerError,
    UnservedUserError,
)
from .core.handler import TaskHandler, TaskTimeoutError
from .core.models import DLQEntry, Priority, Task
from .core.queue import TaskQueue
from .core.registry import TaskFunction, task, xcom_task
from .core.results import CancelResult, Progress, TaskError, TaskResult, TaskStatus, aset_progress, set_progress
from .core.schedule import Schedule, periodic
from .core.sharded import ShardedTaskQueue, open_queue
from .core.worker import AsyncWorker, Worker
from .core.xcom import xcom_delete, xcom_pull, xcom_push

__version__ = "0.1.0"

# Django adapters, imported on first use so that the core stays importable without Django.
_LAZY = {
    "tenant": "fairque_django.tenancy",
    "current_tenant": "fairque_django.tenancy",
    "resolve_user_id": "fairque_django.tenancy",
    "enqueue": "fairque_django.enqueuing",
    "chain": "fairque_django.enqueuing",
    "enqueue_many": "fairque_django.enqueuing",
    "aenqueue": "fairque_django.enqueuing",
    "aenqueue_many": "fairque_django.enqueuing",
    "result": "fairque_django.enqueuing",
    "aresult": "fairque_django.enqueuing",
    "cancel": "fairque_django.cancellation",
    "cancel_tenant": "fairque_django.cancellation",
    "acancel": "fairque_django.cancellation",
    "acancel_tenant": "fairque_django.cancellation",
    "get_config": "fairque_django.conf",
    "get_queue": "fairque_django.conf",
    "get_redis_client": "fairque_django.conf",
    "FairQueueImproperlyConfigured": "fairque_django.conf",
    "set_tenant_limits": "fairque_django.tenants",
    "clear_tenant_limits": "fairque_django.tenants",
    "get_tenant_limits": "fairque_django.tenants",
    "pause_tenant": "fairque_django.tenants",
    "resume_tenant": "fairque_django.tenants",
    "is_paused": "fairque_django.tenants",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fairque_django' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [  # noqa: RUF022 - public names first, then the lazily imported Django adapters
    "ConfigurationError",
    "CorruptTaskError",
    "DLQEntry",
    "DependencyError",
    "FairQueueConfig",
    "FairQueueError",
    "LeaseLostError",
    "MissingTenantError",
    "PayloadTooLargeError",
    "Priority",
    "Progress",
    "QueueConfig",
    "RedisConfig",
    "RedisUnavailableError",
    "ResultNotReadyError",
    "ResultTimeoutError",
    "SerializationError",
    "Task",
    "TaskError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskNotRegisteredError",
    "TaskQueue",
    "TaskResult",
    "TaskStatus",
    "TaskValidationError",
    "UnknownWorkerError",
    "UnservedUserError",
    "WorkerConfig",
    "aset_progress",
    "set_progress",
    "Schedule",
    "periodic",
    "ShardedTaskQueue",
    "open_queue",
    "TaskFunction",
    "TaskHandler",
    "TaskTimeoutError",
    "Worker",
    "task",
    "tenant",
    "xcom_delete",
    "xcom_pull",
    "xcom_push",
    "xcom_task",
    "AsyncTaskQueue",
    "AsyncShardedTaskQueue",
    "open_async_queue",
    "AsyncWorker",
    "CancelResult",
    "TaskCancelled",
    "cancelled",
    "raise_if_cancelled",
    "acancel",
    "acancel_tenant",
    "cancel",
    "cancel_tenant",
    "aenqueue",
    "aenqueue_many",
    "aresult",
    "chain",
    "current_tenant",
    "enqueue",
    "enqueue_many",
    "get_config",
    "get_queue",
    "get_redis_client",
    "resolve_user_id",
    "result",
    "FairQueueImproperlyConfigured",
    "clear_tenant_limits",
    "get_tenant_limits",
    "is_paused",
    "pause_tenant",
    "resume_tenant",
    "set_tenant_limits",
]
