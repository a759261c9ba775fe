"""The one import shim for Django's task framework.

Django >= 6.0 ships it as :mod:`django.tasks`; on Django 5.2 the ``django-tasks`` backport
(>= 0.10, module :mod:`django_tasks`) provides the same API with a few names changed
(``InvalidTaskError`` for ``InvalidTask``, ``InvalidTaskBackendError`` for
``InvalidTaskBackend``). Everything :mod:`fairque_django.backends` needs comes from here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

__all__ = [
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "make_task_result",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

if TYPE_CHECKING:  # type against Django's own API (django-stubs); both runtimes match it
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus, task
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started

    FRAMEWORK: str
else:
    try:
        from django.tasks import task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus, task
        from django.tasks.exceptions import (
            InvalidTask,
            InvalidTaskBackend,
            TaskResultDoesNotExist,
            TaskResultMismatch,
        )
        from django.tasks.signals import task_enqueued, task_finished, task_started

        FRAMEWORK = "django.tasks"
    except ImportError:
        try:
            # as django.tasks does on import: register the framework's system check (it runs
            # every backend's check()) and connect the setting_changed receiver that resets
            # task_backends under override_settings(TASKS=...)
            from django_tasks import checks as _checks  # noqa: F401
            from django_tasks import task_backends
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus, task
            from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
            from django_tasks.exceptions import InvalidTaskError as InvalidTask
            from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
            from django_tasks.signals import task_enqueued, task_finished, task_started
        except ImportError as exc:
            raise ImportError(
                "fairque_django.backends needs Django's task framework: Django >= 6.0 (django.tasks) "
                "or, on Django 5.2, the backport: pip install 'django-tasks>=0.10'"
            ) from exc

        FRAMEWORK = "django_tasks"

_RESULT_FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(TaskResult) if f.init)


def make_task_result(*, return_value: Any = None, **values: Any) -> TaskResult[..., Any]:
    """Build a ``TaskResult`` from the fields this framework version has (others are dropped)."""
    result: TaskResult[..., Any] = TaskResult(**{k: v for k, v in values.items() if k in _RESULT_FIELDS})
    object.__setattr__(result, "_return_value", return_value)  # a frozen dataclass in both
    return result
