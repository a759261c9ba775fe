"""fairque_django: fair multi-tenant background tasks for Django on Redis."""

from __future__ import annotations

from .core.config import FairQueueConfig, QueueConfig, RedisConfig, WorkerConfig
from .core.context import use_tenant as tenant
from .core.exceptions import (
    ConfigurationError,
    CorruptTaskError,
    FairQueueError,
    LeaseLostError,
    MissingTenantError,
    PayloadTooLargeError,
    RedisUnavailableError,
    SerializationError,
    TaskNotFoundError,
    TaskNotRegisteredError,
    TaskValidationError,
    UnknownWorkerError,
)
from .core.models import DLQEntry, Priority, Task
from .core.handler import TaskHandler, TaskTimeoutError
from .core.queue import TaskQueue
from .core.registry import TaskFunction, task, xcom_task
from .core.worker import Worker
from .core.xcom import xcom_delete, xcom_pull, xcom_push

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "CorruptTaskError",
    "DLQEntry",
    "FairQueueConfig",
    "FairQueueError",
    "LeaseLostError",
    "MissingTenantError",
    "PayloadTooLargeError",
    "Priority",
    "QueueConfig",
    "RedisConfig",
    "RedisUnavailableError",
    "SerializationError",
    "Task",
    "TaskNotFoundError",
    "TaskNotRegisteredError",
    "TaskQueue",
    "TaskValidationError",
    "UnknownWorkerError",
    "WorkerConfig",
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
]
