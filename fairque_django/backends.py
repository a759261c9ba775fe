"""A backend for Django's task framework: ``@task`` functions of ``django.tasks`` (Django >= 6.0)
or the ``django_tasks`` backport (Django 5.2) run on fairque workers, fairly across tenants::

    TASKS = {
        "default": {
            "BACKEND": "fairque_django.backends.FairQueueBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"DEFAULT_USER": "tenant:system"},
        }
    }

A Django task is queued as a fairque task that runs the registered runner
:func:`run_django_task` with the Django task's import path and arguments. Workers
(``manage.py runfairworker``) find the Django task among the modules they imported at start
(the apps' ``tasks`` modules and ``FAIRQUE["TASK_MODULES"]``); a path read from Redis is never
imported, and a task that cannot be found is dead-lettered.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Final, ParamSpec, TypeVar, cast

from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from .compat import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    make_task_result,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from .conf import get_config, get_queue, get_setting
from .core.config import Problem
from .core.config.kinds import unknown_key
from .core.config.schema import BACKEND_OPTIONS
from .core.context import current_user, running_task
from .core.errors import (
    FairQueueError,
    MissingTenantError,
    SerializationError,
    TaskNotRegisteredError,
    TaskValidationError,
)
from .core.keys import validate_key_part, validate_user_id
from .core.models import Priority, dumps
from .core.models import Task as FairTask
from .core.queue import TaskQueue, redis_errors
from .core.registry import import_task_modules
from .core.registry import task as fairque_task
from .core.worker import PERMANENT_ERRORS
from .enqueuing import enqueue as fairque_enqueue

__all__ = [
    "PRIORITY_TABLE",
    "RUNNER_NAME",
    "FairQueueBackend",
    "TaskArgumentsError",
    "TaskReturnValueError",
    "fairque_priority",
    "run_django_task",
]

logger = logging.getLogger("fairque_django.backends")

P = ParamSpec("P")
R = TypeVar("R")

RUNNER_NAME: Final = "fairque_django.backends.run_django_task"

#: Django priority (-100..100, inclusive ranges) -> fairque priority.
PRIORITY_TABLE: Final[tuple[tuple[int, int, Priority], ...]] = (
    (-100, -60, Priority.VERY_LOW),
    (-59, -20, Priority.LOW),
    (-19, 19, Priority.NORMAL),
    (20, 59, Priority.HIGH),
    (60, 99, Priority.VERY_HIGH),
    (100, 100, Priority.CRITICAL),
)

OPTION_DEFAULTS: Final[Mapping[str, Any]] = BACKEND_OPTIONS.defaults()
"""``OPTIONS`` keys and their defaults (their rules: ``BACKEND_OPTIONS`` of the config schema)."""

# by value: django-stubs types the members of TaskResultStatus loosely
READY, RUNNING = TaskResultStatus("READY"), TaskResultStatus("RUNNING")
SUCCESSFUL, FAILED = TaskResultStatus("SUCCESSFUL"), TaskResultStatus("FAILED")
_FINAL = (SUCCESSFUL, FAILED)
_STATE_STATUS: Final[Mapping[str, TaskResultStatus]] = {
    "queued": READY,
    "delayed": READY,
    "leased": RUNNING,
    "dead": FAILED,
}


class TaskArgumentsError(InvalidTask, SerializationError):
    """A Django task was enqueued with arguments that are not JSON."""


class TaskReturnValueError(SerializationError):
    """A Django task returned a value that is not JSON (the attempt fails)."""


def fairque_priority(priority: int) -> Priority:
    """The fairque :class:`Priority` of a Django task priority (see :data:`PRIORITY_TABLE`)."""
    if isinstance(priority, int) and not isinstance(priority, bool):
        for low, high, mapped in PRIORITY_TABLE:
            if low <= priority <= high:
                return mapped
    raise InvalidTask(f"priority must be a whole number between -100 and 100, not {priority!r}")


# --------------------------------------------------------------------------- helpers


def _to_datetime(ts: Any) -> datetime | None:
    """An epoch time as Django code expects it (aware UTC when ``USE_TZ``, else naive local)."""
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return None
    from django.conf import settings

    value = datetime.fromtimestamp(ts, tz=dt_timezone.utc)
    return value if settings.USE_TZ else timezone.make_naive(value)


def _relative(problem: Problem) -> str:
    """``['MAX_RETRIES']: must be >= 0 (got -1)`` (to follow ``TASKS[alias]['OPTIONS']``)."""
    return f"{problem.key}: {problem.message}" if problem.key else f": {problem.message}"


def _timestamp(value: datetime) -> float:
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.timestamp()


def _class_path(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _json_arguments(task: Task[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any],
                    ) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments as they will reach the worker (JSON round trip), or a clear error."""
    try:
        encoded = dumps([list(args), dict(kwargs)], what=f"arguments of task {task.module_path}")
    except SerializationError as exc:
        raise TaskArgumentsError(
            f"{exc}; Django tasks run in another process, so pass ids and plain data (str, int, "
            "float, bool, None, lists and dicts with string keys), not objects"
        ) from exc
    call_args, call_kwargs = json.loads(encoded)
    return call_args, call_kwargs


def _lookup_loaded(module_path: str) -> Any:
    """The object ``module_path`` names in an already imported module, or None. Never imports."""
    parts = module_path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        for name in parts[cut:]:
            obj = vars(obj).get(name) if hasattr(obj, "__dict__") else None
            if obj is None:
                return None
        return obj
    return None


_discovered = False
_discover_lock = threading.Lock()


def _discover_task_modules() -> None:
    """Import the task modules a worker imports at start (apps' ``tasks``, ``TASK_MODULES``),
    once: lets ``get_result`` in a web process find tasks it never enqueued itself."""
    global _discovered
    with _discover_lock:
        if not _discovered:
            _discovered = True
            autodiscover_modules("tasks")
            import_task_modules(get_setting("TASK_MODULES"))


@dataclass(frozen=True, slots=True)
class _Call:
    """One enqueued call of a Django task, as it travels in the fairque task's arguments."""

    module_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    backend: str
    queue_name: str
    priority: int
    run_after: float | None

    def runner_args(self) -> list[Any]:
        return [self.module_path, self.args, self.kwargs, self.backend,
                {"queue_name": self.queue_name, "priority": self.priority, "run_after": self.run_after}]

    def record(self) -> dict[str, Any]:
        return {"task": self.module_path, "args": self.args, "kwargs": self.kwargs, "backend": self.backend,
                "queue_name": self.queue_name, "priority": self.priority, "run_after": self.run_after}

    @classmethod
    def parse(cls, module_path: Any, args: Any, kwargs: Any, backend: Any, options: Any) -> _Call:
        """Validate what a worker read from Redis; anything malformed cannot run (dead-lettered)."""
        opts = options if isinstance(options, dict) else {}
        priority = opts.get("priority", 0)
        run_after = opts.get("run_after")
        if not (isinstance(module_path, str) and module_path and isinstance(args, list)
                and isinstance(kwargs, dict) and isinstance(backend, str)
                and isinstance(opts.get("queue_name", "default"), str)
                and isinstance(priority, int) and not isinstance(priority, bool)
                and (run_after is None or isinstance(run_after, (int, float)))):
            raise TaskNotRegisteredError(f"malformed Django task call {module_path!r}: cannot run it")
        return cls(module_path, args, kwargs, backend, opts.get("queue_name", "default"), priority,
                   float(run_after) if run_after is not None else None)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> _Call:
        return cls.parse(record.get("task"), record.get("args"), record.get("kwargs"),
                         record.get("backend"), record)


def _our_backend(alias: str) -> FairQueueBackend:
    try:
        backend = task_backends[alias]
    except (InvalidTaskBackend, KeyError) as exc:
        raise TaskNotRegisteredError(f"task backend {alias!r} is not configured in TASKS") from exc
    if not isinstance(backend, FairQueueBackend):
        raise TaskNotRegisteredError(
            f"task backend {alias!r} is {type(backend).__name__}, not fairque_django's FairQueueBackend"
        )
    return backend


def _resolve(call: _Call) -> Task[..., Any]:
    """The Django task of ``call``, from modules already imported; raises TaskNotRegisteredError."""
    obj = _lookup_loaded(call.module_path)
    if not isinstance(obj, Task) or obj.module_path != call.module_path:
        raise TaskNotRegisteredError(
            f"{call.module_path!r} is not a Django task loaded in this process: workers only run "
            "@task functions of modules imported at start (the apps' tasks modules and "
            "FAIRQUE['TASK_MODULES']); names read from Redis are never imported"
        )
    _our_backend(call.backend)
    try:
        return obj.using(backend=call.backend, priority=call.priority, queue_name=call.queue_name,
                         run_after=_to_datetime(call.run_after))
    except InvalidTask as exc:
        raise TaskNotRegisteredError(f"Django task {call.module_path!r} cannot run here: {exc}") from exc


def _send(signal: Signal, sender: type, result: TaskResult[..., Any]) -> None:
    """Send a worker-side signal; a failing receiver is logged, it must not fail the task."""
    for receiver, response in signal.send_robust(sender, task_result=result):
        if isinstance(response, BaseException):
            logger.error("receiver %r of a Django task signal raised %s: %s", receiver,
                         type(response).__name__, response, exc_info=response)


# --------------------------------------------------------------------------- worker side


@fairque_task(name=RUNNER_NAME, store_result=False)  # the backend keeps its own records
def run_django_task(module_path: str, args: list[Any], kwargs: dict[str, Any], backend: str,
                    options: dict[str, Any] | None = None) -> Any:
    """The fairque task every Django task is queued as: runs the Django task ``module_path``."""
    call = _Call.parse(module_path, args, kwargs, backend, options)
    running = running_task()
    if running is None:
        raise TaskNotRegisteredError(f"{RUNNER_NAME} only runs inside a fairque worker")
    return _our_backend(call.backend).run(call, running.task, running.queue or get_queue())


# --------------------------------------------------------------------------- the backend


class FairQueueBackend(BaseTaskBackend):
    """Runs Django tasks on fairque workers: per-tenant queues served round-robin.

    The tenant of an enqueued task is the current tenant (``fairque_django.tenant(...)``,
    ``FairQueueTenantMiddleware`` or the running fairque task), else ``OPTIONS["DEFAULT_USER"]``;
    without either, ``enqueue`` raises :class:`~fairque_django.core.errors.MissingTenantError`.

    Django priorities map onto fairque priorities (:data:`PRIORITY_TABLE`)::

        Django priority   fairque priority
        -100 .. -60       1 VERY_LOW
         -59 .. -20       2 LOW
         -19 ..  19       3 NORMAL      (Django's default 0)
          20 ..  59       4 HIGH
          60 ..  99       5 VERY_HIGH
         100              6 CRITICAL    (FIFO lane served before the user's other tasks)

    ``run_after`` becomes a delayed fairque task; ``queue_name`` is checked against ``QUEUES`` and
    recorded (fairness is per tenant, not per queue). A failing task is retried by fairque
    (``MAX_RETRIES``, default ``queue.default_max_retries``) with backoff: meanwhile its result is
    ``READY`` with the errors so far, and ``FAILED`` once it is dead-lettered. A return value
    that is not JSON fails the attempt (:class:`TaskReturnValueError`). ``task_enqueued`` is sent
    in the enqueuing process (after the commit with ``ENQUEUE_ON_COMMIT``); ``task_started``
    (every attempt) and ``task_finished`` (once, with the final outcome) in the worker. Results are kept
    for ``queue.result_ttl_seconds`` under the task's tenant: with a current tenant set,
    ``get_result`` only finds that tenant's results.

    ``OPTIONS``: ``DEFAULT_USER`` (user id for enqueues without a tenant), ``ENQUEUE_ON_COMMIT``
    (push when the transaction commits; default ``FAIRQUE["ENQUEUE_ON_COMMIT"]``),
    ``MAX_RETRIES`` and ``TIMEOUT`` (seconds) for every task of this backend.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.params = params

    # --- options ---------------------------------------------------------------------
    def _option_problems(self) -> list[Problem]:
        """What is wrong with ``OPTIONS``, checked against the schema (``BACKEND_OPTIONS``);
        keys are relative to ``OPTIONS``."""
        raw = self.params.get("OPTIONS", {})
        if not isinstance(raw, Mapping):
            return [Problem(None, f"OPTIONS must be a dict, not {type(raw).__name__}")]
        problems = [Problem(f"[{name!r}]", unknown_key(name, OPTION_DEFAULTS, noun="option", listing="known"))
                    for name in BACKEND_OPTIONS.unknown(raw)]
        return problems + BACKEND_OPTIONS.check(raw, lambda name: f"[{name!r}]")[1]

    def _options(self) -> dict[str, Any]:
        problems = self._option_problems()
        if problems:
            raise ImproperlyConfigured("; ".join(f"TASKS[{self.alias!r}]['OPTIONS']{_relative(p)}" for p in problems))
        options = dict(OPTION_DEFAULTS)
        options.update(self.params.get("OPTIONS", {}))
        return options

    def _default_user(self, options: Mapping[str, Any]) -> str | None:
        user = options["DEFAULT_USER"]
        if user is None:
            return None
        try:
            return validate_user_id(user, get_config().queue.max_user_id_length)
        except TaskValidationError as exc:
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}]['OPTIONS']['DEFAULT_USER']: {exc}") from exc

    # --- enqueue ---------------------------------------------------------------------
    def enqueue(self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]) -> TaskResult[P, R]:
        """Queue ``task`` for the current tenant and return its READY result (id = fairque task id)."""
        self.validate_task(task)
        options = self._options()
        call_args, call_kwargs = _json_arguments(task, args, kwargs)
        user_id = current_user(required=False) or self._default_user(options)
        if user_id is None:
            raise MissingTenantError(
                f"cannot enqueue Django task {task.module_path}: no current tenant. Enqueue inside "
                "`with fairque_django.tenant(...)` (or a request through FairQueueTenantMiddleware), "
                f"or set TASKS[{self.alias!r}]['OPTIONS']['DEFAULT_USER']"
            )
        run_after = _timestamp(task.run_after) if task.run_after is not None else None
        call = _Call(task.module_path, call_args, call_kwargs, self.alias, task.queue_name, task.priority,
                     run_after)
        ftask = run_django_task.create_task(
            call.runner_args(), user_id=user_id, priority=fairque_priority(task.priority),
            execute_after=run_after, max_retries=options["MAX_RETRIES"], timeout=options["TIMEOUT"],
        )
        result = cast("TaskResult[P, R]", make_task_result(
            task=task, id=ftask.task_id, status=READY,
            enqueued_at=_to_datetime(ftask.created_at), started_at=None, finished_at=None,
            last_attempted_at=None, args=call_args, kwargs=call_kwargs, backend=self.alias,
            errors=[], worker_ids=[],
        ))
        on_commit = options["ENQUEUE_ON_COMMIT"]
        if on_commit is None:
            on_commit = bool(get_setting("ENQUEUE_ON_COMMIT"))
        queue = get_queue()
        fairque_enqueue(ftask, on_commit=on_commit, queue=queue)

        def announce() -> None:
            ttl = queue.config.queue.result_ttl_seconds + int(max(0.0, (run_after or 0) - time.time()))
            try:
                with redis_errors("index result owner"):
                    queue.client.set(queue.keys.result_owner(ftask.task_id), user_id, ex=ttl)
            except FairQueueError as exc:  # the task is queued; only lookups without a tenant suffer
                logger.warning("could not index the owner of Django task result %s: %s", ftask.task_id, exc)
            task_enqueued.send(type(self), task_result=result)

        if on_commit:
            transaction.on_commit(announce)
        else:
            announce()
        return result

    # --- results ---------------------------------------------------------------------
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
                raw = queue.client.get(queue.keys.result_owner(result_id))
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
                body = FairTask.from_json(state["b"])
            except FairQueueError:
                body = None
            if body is not None and body.func_name == RUNNER_NAME and not data:
                try:
                    data = _Call.parse(*(list(body.args) + [None] * 5)[:5]).record()
                except TaskNotRegisteredError:
                    raise TaskResultDoesNotExist(result_id) from None
                data["enqueued_at"] = body.created_at
            elif body is None or body.func_name != RUNNER_NAME:
                raise TaskResultDoesNotExist(result_id)  # not a Django task
        if not data:
            raise TaskResultDoesNotExist(result_id)
        try:
            status = TaskResultStatus(data.get("status") or READY)
        except ValueError:
            raise TaskResultDoesNotExist(f"{result_id}: corrupt result record") from None
        if state is not None and status != SUCCESSFUL:
            status = _STATE_STATUS.get(state.get("st", ""), status)
        errors = list(data.get("errors") or [])
        if state is not None and state.get("st") == "dead" and data.get("status") != FAILED:
            # died without the runner recording it (lease expired, unresolvable task, ...)
            errors.append({"exception_class_path": state.get("et", "") or "Error",
                           "traceback": state.get("tb", "") or state.get("err", "")})
            if not data.get("finished_at"):
                data["finished_at"] = int(state.get("dt", "0") or 0) / 1000.0 or None
        try:
            task = _resolve(_Call.from_record(data))
        except TaskNotRegisteredError:
            _discover_task_modules()
            try:
                task = _resolve(_Call.from_record(data))
            except TaskNotRegisteredError as exc:
                raise TaskResultDoesNotExist(f"{result_id}: {exc}") from None
        return self._result(task, result_id, data, status, errors)

    @staticmethod
    def _result(task: Task[..., Any], result_id: str, data: Mapping[str, Any], status: TaskResultStatus,
                errors: list[dict[str, str]]) -> TaskResult[..., Any]:
        return make_task_result(
            task=task, id=result_id, status=status,
            enqueued_at=_to_datetime(data.get("enqueued_at")),
            started_at=_to_datetime(data.get("started_at")),
            finished_at=_to_datetime(data.get("finished_at")) if status in _FINAL else None,
            last_attempted_at=_to_datetime(data.get("last_attempted_at")),
            args=list(data.get("args", [])), kwargs=dict(data.get("kwargs", {})), backend=task.backend,
            errors=[TaskError(exception_class_path=str(e.get("exception_class_path", "")),
                              traceback=str(e.get("traceback", ""))) for e in errors if isinstance(e, dict)],
            worker_ids=[str(w) for w in data.get("worker_ids", [])],
            return_value=data.get("return_value") if status == SUCCESSFUL else None,
        )

    # --- worker side -----------------------------------------------------------------
    def _store(self, queue: TaskQueue, ftask: FairTask, record: dict[str, Any]) -> None:
        queue.store_result(ftask, record)
        with redis_errors("index result owner"):
            queue.client.set(queue.keys.result_owner(ftask.task_id), ftask.user_id or "",
                             ex=queue.config.queue.result_ttl_seconds)

    def run(self, call: _Call, ftask: FairTask, queue: TaskQueue) -> Any:
        """Run one attempt of ``call`` in a worker: signals, context, outcome stored in Redis."""
        task = _resolve(call)
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
        self._store(queue, ftask, record)
        logger.info("fairque task %s runs Django task %s for %s (attempt %d)", ftask.task_id, call.module_path,
                    ftask.user_id, attempt)
        result = self._result(task, ftask.task_id, record, RUNNING, record["errors"])
        _send(task_started, type(self), result)
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
            record["errors"].append({"exception_class_path": _class_path(exc),
                                     "traceback": "".join(traceback.format_exception(exc))})
            status = FAILED if final else READY
            record.update(status=status.value, finished_at=time.time() if final else None)
            try:
                self._store(queue, ftask, record)
            except FairQueueError as store_exc:
                logger.error("could not store the failure of Django task %s: %s", ftask.task_id, store_exc)
            if final:
                _send(task_finished, type(self), self._result(task, ftask.task_id, record, status,
                                                              record["errors"]))
            raise
        record.update(status=SUCCESSFUL.value, finished_at=time.time(), return_value=value)
        self._store(queue, ftask, record)
        _send(task_finished, type(self), self._result(task, ftask.task_id, record,
                                                      SUCCESSFUL, record["errors"]))
        return value

    # --- checks ----------------------------------------------------------------------
    def check(self, **kwargs: Any) -> list[CheckMessage]:
        """System checks: FAIRQUE present and valid, QUEUES, OPTIONS and DEFAULT_USER."""
        from .conf import fairque_setting

        where = f"TASKS[{self.alias!r}]"
        messages: list[CheckMessage] = []
        config = None
        try:
            if fairque_setting() is None:
                messages.append(Warning(
                    f"{where} uses FairQueueBackend but the FAIRQUE setting is not defined: tasks go to "
                    "a default single worker on Redis at localhost:6379/0.",
                    hint="Define FAIRQUE with your Redis and workers; see docs/settings.md.",
                    id="fairque_django.W101"))
            config = get_config()
        except ImproperlyConfigured as exc:
            messages.append(Error(f"{where}: FAIRQUE is invalid: {exc}",
                                  hint="Fix the FAIRQUE setting; see docs/settings.md.", id="fairque_django.E101"))
        queues = self.params.get("QUEUES", ["default"])
        if (isinstance(queues, str) or not isinstance(queues, (list, tuple, set, frozenset)) or not queues
                or not all(isinstance(q, str) and q for q in queues)):
            messages.append(Error(
                f"{where}['QUEUES'] must be a non-empty list of queue names, not {queues!r}.",
                hint='For example "QUEUES": ["default"]; see docs/tasks-backend.md and docs/settings.md, '
                'section System checks.', id="fairque_django.E102"))
        problems = self._option_problems()
        user_key = "['DEFAULT_USER']"
        for problem in problems:
            if problem.key == user_key:  # reported below, with the configured length limit
                continue
            messages.append(Error(f"{where}['OPTIONS']{_relative(problem)}.",
                                  hint="The OPTIONS are listed in docs/tasks-backend.md; see also docs/settings.md, "
                                  "section System checks.", id="fairque_django.E103"))
        raw = self.params.get("OPTIONS", {})
        user = raw.get("DEFAULT_USER") if isinstance(raw, Mapping) else None
        if user is not None:
            try:
                validate_user_id(user, config.queue.max_user_id_length if config else 200)
            except TaskValidationError as exc:
                messages.append(Error(f"{where}['OPTIONS']['DEFAULT_USER'] is invalid: {exc}.",
                                      hint="Give a fairque user id such as 'tenant:system'; see "
                                      "docs/tasks-backend.md and docs/settings.md, section System checks.",
                                      id="fairque_django.E104"))
        return messages
