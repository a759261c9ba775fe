"""The Django-task side of a queued call: priorities, JSON arguments, the call record, and the
lookup of Django tasks among the modules already imported (names read from Redis are never
imported)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any, Final

from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from ..compat import InvalidTask, InvalidTaskBackend, Task, TaskResultStatus, task_backends
from ..conf import get_setting
from ..core.config import Problem
from ..core.config.schema import BACKEND_OPTIONS
from ..core.errors import SerializationError, TaskNotRegisteredError
from ..core.models import Priority, dumps
from ..core.registry import import_task_modules

if TYPE_CHECKING:
    from .backend import FairQueueBackend

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
FINAL = (SUCCESSFUL, FAILED)
STATE_STATUS: Final[Mapping[str, TaskResultStatus]] = {
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


def to_datetime(ts: Any) -> datetime | None:
    """An epoch time as Django code expects it (aware UTC when ``USE_TZ``, else naive local)."""
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return None
    from django.conf import settings

    value = datetime.fromtimestamp(ts, tz=dt_timezone.utc)
    return value if settings.USE_TZ else timezone.make_naive(value)


def relative(problem: Problem) -> str:
    """``['MAX_RETRIES']: must be >= 0 (got -1)`` (to follow ``TASKS[alias]['OPTIONS']``)."""
    return f"{problem.key}: {problem.message}" if problem.key else f": {problem.message}"


def timestamp(value: datetime) -> float:
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.timestamp()


def class_path(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def json_arguments(task: Task[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any],
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


def lookup_loaded(module_path: str) -> Any:
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


def discover_task_modules() -> None:
    """Import the task modules a worker imports at start (apps' ``tasks``, ``TASK_MODULES``),
    once: lets ``get_result`` in a web process find tasks it never enqueued itself."""
    global _discovered
    with _discover_lock:
        if not _discovered:
            _discovered = True
            autodiscover_modules("tasks")
            import_task_modules(get_setting("TASK_MODULES"))


@dataclass(frozen=True, slots=True)
class Call:
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
    def parse(cls, module_path: Any, args: Any, kwargs: Any, backend: Any, options: Any) -> Call:
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
    def from_record(cls, record: Mapping[str, Any]) -> Call:
        return cls.parse(record.get("task"), record.get("args"), record.get("kwargs"),
                         record.get("backend"), record)


def our_backend(alias: str) -> FairQueueBackend:
    from .backend import FairQueueBackend  # the backend module imports this one

    try:
        backend = task_backends[alias]
    except (InvalidTaskBackend, KeyError) as exc:
        raise TaskNotRegisteredError(f"task backend {alias!r} is not configured in TASKS") from exc
    if not isinstance(backend, FairQueueBackend):
        raise TaskNotRegisteredError(
            f"task backend {alias!r} is {type(backend).__name__}, not fairque_django's FairQueueBackend"
        )
    return backend


def resolve(call: Call) -> Task[..., Any]:
    """The Django task of ``call``, from modules already imported; raises TaskNotRegisteredError."""
    obj = lookup_loaded(call.module_path)
    if not isinstance(obj, Task) or obj.module_path != call.module_path:
        raise TaskNotRegisteredError(
            f"{call.module_path!r} is not a Django task loaded in this process: workers only run "
            "@task functions of modules imported at start (the apps' tasks modules and "
            "FAIRQUE['TASK_MODULES']); names read from Redis are never imported"
        )
    our_backend(call.backend)
    try:
        return obj.using(backend=call.backend, priority=call.priority, queue_name=call.queue_name,
                         run_after=to_datetime(call.run_after))
    except InvalidTask as exc:
        raise TaskNotRegisteredError(f"Django task {call.module_path!r} cannot run here: {exc}") from exc
