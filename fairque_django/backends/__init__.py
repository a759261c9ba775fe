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

from .backend import FairQueueBackend
from .calls import PRIORITY_TABLE, RUNNER_NAME, TaskArgumentsError, TaskReturnValueError, fairque_priority
from .runner import run_django_task

# their public home (Django records an error by its class path)
TaskArgumentsError.__module__ = TaskReturnValueError.__module__ = __name__

__all__ = [
    "PRIORITY_TABLE",
    "RUNNER_NAME",
    "FairQueueBackend",
    "TaskArgumentsError",
    "TaskReturnValueError",
    "fairque_priority",
    "run_django_task",
]
