"""Reading the outcome of a Django task queued on fairque (``get_result``), as Django's
``TaskResult``: the backend's own record, completed by the fairque task's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..compat import (
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    make_task_result,
)
from ..conf import get_queue
from ..core.context import current_user
from ..core.errors import FairQueueError, TaskNotRegisteredError, TaskValidationError
from ..core.keys import validate_key_part
from ..core.models import Task as FairTask
from ..core.queue import redis_errors
from .calls import (
    FAILED,
    FINAL,
    READY,
    RUNNER_NAME,
    STATE_STATUS,
    SUCCESSFUL,
    Call,
    discover_task_modules,
    resolve,
    to_datetime,
)

__all__ = ["CANCELLED_ERROR", "ResultReads", "build_task_result"]

CANCELLED = "CANCELLED"  # fairque's status of a cancelled task (core/results.py TaskStatus)
CANCELLED_ERROR = "fairque_django.TaskCancelled"  # the error a cancelled Django task reads as


class ResultReads:
    """``get_result`` of :class:`~.backend.FairQueueBackend`."""

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        """The result of ``result_id``; :class:`TaskResultDoesNotExist` when unknown or another
        tenant's (while a tenant is current)."""
        try:
            validate_key_part(result_id, "result id")
        except TaskValidationError:
            raise TaskResultDoesNotExist(result_id) from None
        queue = get_queue()
        owner = current_user(required=False)
        state = None
        if owner is None:  # trusted code without a tenant: find the owner
            with redis_errors("get_result"):
                raw = queue.client.get(queue.home_queue.keys.result_owner(result_id))
            if raw is not None:
                owner = raw.decode() if isinstance(raw, bytes) else str(raw)
            else:
                state = queue.get_task_state(result_id)
                owner = state.get("u") if state else None
        if owner is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            record = queue.get_result(result_id, user_id=owner)
        except ValueError:  # a corrupt owner index or record (TaskValidationError is one too)
            raise TaskResultDoesNotExist(result_id) from None
        if state is None:
            state = queue.get_task_state(result_id)
        if state is not None and state.get("u") != owner:
            state = None  # another tenant's task: invisible
        return self._build_result(result_id, record, state)

    def _build_result(self, result_id: str, record: dict[str, Any] | None,
                      state: dict[str, str] | None) -> TaskResult[..., Any]:
        data: dict[str, Any] = dict(record or {})
        if state is not None and "b" in state:
            try:
                body = FairTask.from_json(state["b"], result_id, state.get("u"))
            except FairQueueError:
                body = None
            if body is not None and body.func_name == RUNNER_NAME and not data:
                try:
                    data = Call.parse(*(list(body.args) + [None] * 5)[:5]).record()
                except TaskNotRegisteredError:
                    raise TaskResultDoesNotExist(result_id) from None
                data["enqueued_at"] = body.created_at
            elif body is None or body.func_name != RUNNER_NAME:
                raise TaskResultDoesNotExist(result_id)  # not a Django task
        if state is None and data.get("status") == CANCELLED:
            data = self._cancelled(result_id, data)
        if not data:
            raise TaskResultDoesNotExist(result_id)
        try:
            status = TaskResultStatus(data.get("status") or READY)
        except ValueError:
            raise TaskResultDoesNotExist(f"{result_id}: corrupt result record") from None
        if state is not None and status != SUCCESSFUL:
            status = STATE_STATUS.get(state.get("st", ""), status)
        errors = list(data.get("errors") or [])
        if state is not None and state.get("st") == "dead" and data.get("status") != FAILED:
            # died without the runner recording it (lease expired, unresolvable task, ...)
            errors.append({"exception_class_path": state.get("et", "") or "Error",
                           "traceback": state.get("tb", "") or state.get("err", "")})
            if not data.get("finished_at"):
                data["finished_at"] = int(state.get("dt", "0") or 0) / 1000.0 or None
        try:
            task = resolve(Call.from_record(data))
        except TaskNotRegisteredError:
            discover_task_modules()
            try:
                task = resolve(Call.from_record(data))
            except TaskNotRegisteredError as exc:
                raise TaskResultDoesNotExist(f"{result_id}: {exc}") from None
        return build_task_result(task, result_id, data, status, errors)


    @staticmethod
    def _cancelled(result_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """A cancelled task's record (written by the cancel script, with the task's body) as the
        backend's record: Django's ``TaskResultStatus`` has no CANCELLED, so it reads FAILED with
        the error ``fairque_django.TaskCancelled``."""
        body = record.get("task")
        try:
            task = FairTask.from_body(body, result_id, "?") if isinstance(body, dict) else None
        except FairQueueError:
            task = None
        if task is None or task.func_name != RUNNER_NAME:
            raise TaskResultDoesNotExist(result_id)  # not a Django task
        args = task.args
        try:
            data = Call.parse(*(list(args if isinstance(args, list) else []) + [None] * 5)[:5]).record()
        except TaskNotRegisteredError:
            raise TaskResultDoesNotExist(result_id) from None
        data.update(status=FAILED.value, enqueued_at=task.created_at or None, finished_at=record.get("finished_at"),
                    errors=[{"exception_class_path": CANCELLED_ERROR, "traceback": "TaskCancelled: cancelled"}])
        return data


def build_task_result(task: Task[..., Any], result_id: str, data: Mapping[str, Any], status: TaskResultStatus,
            errors: list[dict[str, str]]) -> TaskResult[..., Any]:
    return make_task_result(
        task=task, id=result_id, status=status,
        enqueued_at=to_datetime(data.get("enqueued_at")),
        started_at=to_datetime(data.get("started_at")),
        finished_at=to_datetime(data.get("finished_at")) if status in FINAL else None,
        last_attempted_at=to_datetime(data.get("last_attempted_at")),
        args=list(data.get("args", [])), kwargs=dict(data.get("kwargs", {})), backend=task.backend,
        errors=[TaskError(exception_class_path=str(e.get("exception_class_path", "")),
                          traceback=str(e.get("traceback", ""))) for e in errors if isinstance(e, dict)],
        worker_ids=[str(w) for w in data.get("worker_ids", [])],
        return_value=data.get("return_value") if status == SUCCESSFUL else None,
    )
