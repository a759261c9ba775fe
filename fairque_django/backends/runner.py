"""The worker side of the Django-task backend: the fairque task every Django task is queued as
(:func:`run_django_task`), and one attempt of a call with its signals and stored record."""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

from ..compat import (
    TaskContext,
    TaskResult,
    task_finished,
    task_started,
)
from ..conf import get_queue
from ..core.context import running_task
from ..core.errors import FairQueueError, SerializationError, TaskNotRegisteredError
from ..core.models import Task as FairTask
from ..core.models import dumps
from ..core.queue import redis_errors
from ..core.registry import task as fairque_task
from ..core.sharded import AnyQueue
from ..core.worker import PERMANENT_ERRORS
from .calls import (
    FAILED,
    READY,
    RUNNER_NAME,
    RUNNING,
    SUCCESSFUL,
    Call,
    TaskReturnValueError,
    class_path,
    our_backend,
    resolve,
)
from .results import build_task_result

if TYPE_CHECKING:
    from .backend import FairQueueBackend

logger = logging.getLogger("fairque_django.backends")

__all__ = ["execute", "run_django_task", "send"]


def send(signal: Signal, sender: type, result: TaskResult[..., Any]) -> None:
    """Send a worker-side signal; a failing receiver is logged, it must not fail the task."""
    for receiver, response in signal.send_robust(sender, task_result=result):
        if isinstance(response, BaseException):
            logger.error("receiver %r of a Django task signal raised %s: %s", receiver,
                         type(response).__name__, response, exc_info=response)




@fairque_task(name=RUNNER_NAME, store_result=False)  # the backend keeps its own records
def run_django_task(module_path: str, args: list[Any], kwargs: dict[str, Any], backend: str,
                    options: dict[str, Any] | None = None) -> Any:
    """The fairque task every Django task is queued as: runs the Django task ``module_path``."""
    call = Call.parse(module_path, args, kwargs, backend, options)
    running = running_task()
    if running is None:
        raise TaskNotRegisteredError(f"{RUNNER_NAME} only runs inside a fairque worker")
    return execute(our_backend(call.backend), call, running.task, running.queue or get_queue())


def store(queue: AnyQueue, ftask: FairTask, record: dict[str, Any]) -> None:
    """Keep the record of a Django task and index its owner (lookups without a tenant)."""
    queue.store_result(ftask, record)
    with redis_errors("index result owner"):
        queue.client.set(queue.home_queue.keys.result_owner(ftask.task_id), ftask.user_id or "",
                         ex=queue.config.queue.result_ttl_seconds)

def execute(backend: FairQueueBackend, call: Call, ftask: FairTask, queue: AnyQueue) -> Any:
    """Run one attempt of ``call`` in a worker: signals, context, outcome stored in Redis."""
    task = resolve(call)
    previous = queue.get_result(ftask.task_id, user_id=ftask.user_id or "") or {}
    now = time.time()
    attempt = max(ftask.attempts, 1)
    earlier = [str(w) for w in previous.get("worker_ids", [])] + ["unknown"] * attempt
    record: dict[str, Any] = {
        **call.record(), "status": RUNNING.value,
        "enqueued_at": previous.get("enqueued_at", ftask.created_at),
        "started_at": previous.get("started_at") or now, "last_attempted_at": now, "finished_at": None,
        "errors": list(previous.get("errors", [])),
        "worker_ids": [*earlier[:attempt - 1], ftask.worker_id or "unknown"],
    }
    store(queue, ftask, record)
    logger.info("fairque task %s runs Django task %s for %s (attempt %d)", ftask.task_id, call.module_path,
                ftask.user_id, attempt)
    result = build_task_result(task, ftask.task_id, record, RUNNING, record["errors"])
    send(task_started, type(backend), result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *call.args, **call.kwargs)
        else:
            value = task.call(*call.args, **call.kwargs)
        try:
            value = json.loads(dumps(value, what=f"the return value of Django task {call.module_path}"))
        except SerializationError as exc:
            raise TaskReturnValueError(str(exc)) from None
    except BaseException as exc:
        max_retries = ftask.max_retries if ftask.max_retries is not None else \
            queue.config.queue.default_max_retries
        final = isinstance(exc, PERMANENT_ERRORS) or ftask.retry_count + 1 > max_retries
        record["errors"].append({"exception_class_path": class_path(exc),
                                 "traceback": "".join(traceback.format_exception(exc))})
        status = FAILED if final else READY
        record.update(status=status.value, finished_at=time.time() if final else None)
        try:
            store(queue, ftask, record)
        except FairQueueError as store_exc:
            logger.error("could not store the failure of Django task %s: %s", ftask.task_id, store_exc)
        if final:
            send(task_finished, type(backend), build_task_result(task, ftask.task_id, record, status,
                                                          record["errors"]))
        raise
    record.update(status=SUCCESSFUL.value, finished_at=time.time(), return_value=value)
    store(queue, ftask, record)
    send(task_finished, type(backend), build_task_result(task, ftask.task_id, record,
                                                  SUCCESSFUL, record["errors"]))
    return value
