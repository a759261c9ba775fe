"""Typed errors. Every error the package raises derives from :class:`FairQueueError`."""

from __future__ import annotations


class FairQueueError(Exception):
    """Root of all fairque_django errors."""


class ConfigurationError(FairQueueError, ValueError):
    """Invalid configuration; the message names the offending key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class UnknownWorkerError(ConfigurationError):
    """A worker id that is not in the configuration."""

    def __init__(self, worker_id: str, known: list[str]) -> None:
        self.worker_id = worker_id
        self.known = known
        listed = ", ".join(known) if known else "(none configured)"
        super().__init__(f"unknown worker id {worker_id!r}; configured worker ids: {listed}")


class TaskValidationError(FairQueueError, ValueError):
    """A task (user id, priority, arguments, payload) is not acceptable."""


class DependencyError(TaskValidationError):
    """A task's dependency is unknown (never pushed, deleted, or finished without a kept result) or
    is not a task of the user named with it: the task was not queued."""


class UnservedUserError(TaskValidationError):
    """No configured worker is assigned the user or may steal its tasks: they would never run."""


class SerializationError(TaskValidationError):
    """A value is not JSON-serialisable."""


class PayloadTooLargeError(TaskValidationError):
    """A task body is larger than ``queue.max_payload_bytes``."""


class TaskNotRegisteredError(FairQueueError, LookupError):
    """A task names a function that is not registered with ``@task``."""


class RedisUnavailableError(FairQueueError, ConnectionError):
    """Redis could not be reached or did not answer in time.

    On a refused connection nothing was written. On a timeout the outcome is unknown (the server
    may still run the command); every change is one atomic script and a push is idempotent by task
    id, so retrying with the same ``Task`` is safe."""


class NotEnqueuedAfterCommitError(RedisUnavailableError):
    """An ``on_commit`` enqueue could not push once the transaction had committed: the rows are
    committed, the tasks are not queued (``ENQUEUE_MODE = "outbox"`` prevents this)."""


class LeaseLostError(FairQueueError):
    """An ack/fail came from a worker whose lease expired and was taken over."""


class TaskNotFoundError(FairQueueError, LookupError):
    """No task or stored result with that id exists for that user (tenant)."""


class TaskFailedError(FairQueueError, ValueError):
    """The task behind a result handle failed for good (dead-lettered); ``result`` is the handle."""

    def __init__(self, message: str, result: object = None) -> None:
        self.result = result
        super().__init__(message)


class ResultNotReadyError(FairQueueError, ValueError):
    """A result handle's return value was asked for before the task finished."""


class ResultTimeoutError(FairQueueError, TimeoutError):
    """Waiting for a task's result took longer than the timeout given."""


class MissingTenantError(FairQueueError, LookupError):
    """No user id was given and no current tenant is set."""


class TaskTimeoutError(FairQueueError):
    """Raised inside (and recorded for) a task that ran longer than its timeout."""


class TaskCancelled(FairQueueError):
    """Raised inside a task by ``raise_if_cancelled()`` once the task was cancelled; the worker then
    records it as cancelled (never retried, never a success)."""


class CorruptTaskError(FairQueueError, ValueError):
    """Data found in Redis could not be decoded into a task."""
