"""``TaskHandler``: what a worker does with each task, and the hooks around it."""

from __future__ import annotations

from .context import running_task
from .errors import TaskNotRegisteredError, TaskTimeoutError
from .models import Task
from .registry import get_task_function

__all__ = ["TaskHandler", "TaskTimeoutError"]  # TaskTimeoutError lives in exceptions; importable here too


class TaskHandler:
    """Runs tasks for a :class:`~fairque_django.core.worker.Worker`.

    The default :meth:`_process_task` runs the registered function a task names. Subclass it
    to handle payload-only tasks (``task.payload``) and call ``super()._process_task(task)``
    for the rest. Return ``False`` (or raise) to record a failure.
    """

    def _process_task(self, task: Task) -> bool:
        if task.func_name is None:
            raise TaskNotRegisteredError(
                f"task {task.task_id} has no function and this handler ({type(self).__name__}) does not "
                "handle payload-only tasks: override TaskHandler._process_task"
            )
        fn = get_task_function(task.func_name)
        result = fn.execute(*task.args, **task.kwargs)
        running = running_task()
        if running is not None:
            running.result = result
        return True

    def process_task(self, task: Task) -> bool:
        """Entry point used by the worker; override ``_process_task`` rather than this."""
        return self._process_task(task)

    # --- hooks ----------------------------------------------------------------------
    def before_task(self, task: Task) -> None:
        """Called in the task's thread just before it runs."""

    def after_task(self, task: Task) -> None:
        """Called in the task's thread after it ran (success or not)."""

    def on_task_success(self, task: Task, duration: float) -> None:
        """Called after a task succeeded and was acknowledged."""

    def on_task_failure(self, task: Task, error: BaseException, duration: float) -> None:
        """Called after a failed attempt was recorded (retry scheduled or dead-lettered)."""

    def on_task_timeout(self, task: Task, duration: float) -> None:
        """Called when a task exceeded its timeout (it is recorded as failed, type ``timeout``)."""
