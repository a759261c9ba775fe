"""Context variables: the current tenant, the active queue and the running task."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import FairQueueError, MissingTenantError, TaskCancelled, TaskNotRegisteredError

if TYPE_CHECKING:
    from .models import Task
    from .sharded import AnyQueue

_Q = TypeVar("_Q", bound="CurrentQueue")


@dataclass(slots=True)
class RunningTask:
    """What code inside a running task can see: its task and the queue serving it."""

    task: Task
    queue: AnyQueue | None
    result: Any = None


_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("fairque_tenant", default=None)
_queue: contextvars.ContextVar[AnyQueue | None] = contextvars.ContextVar("fairque_queue", default=None)
_running: contextvars.ContextVar[RunningTask | None] = contextvars.ContextVar("fairque_task", default=None)


def current_user(required: bool = True) -> str | None:
    """The user id of the running task, else the current tenant; raises if none and required."""
    running = _running.get()
    if running is not None and running.task.user_id:
        return running.task.user_id
    user = _tenant.get()
    if user is None and required:
        raise MissingTenantError(
            "no user id given and no current tenant: pass user_id=..., or set one with "
            "fairque_django.tenant(...) / FairQueueTenantMiddleware"
        )
    return user


@contextmanager
def use_tenant(user_id: str | None) -> Iterator[str | None]:
    """Make ``user_id`` the current tenant inside the block."""
    token = _tenant.set(user_id)
    try:
        yield user_id
    finally:
        _tenant.reset(token)


def set_tenant(user_id: str | None) -> contextvars.Token[str | None]:
    return _tenant.set(user_id)


def reset_tenant(token: contextvars.Token[str | None]) -> None:
    _tenant.reset(token)


def activate_queue(queue: AnyQueue) -> contextvars.Token[AnyQueue | None]:
    return _queue.set(queue)


class CurrentQueue:
    """``with queue:`` makes a synchronous queue the current one (XCom, ``set_progress`` find it);
    :meth:`close` (or the block's end) restores the one before."""

    _context_token: contextvars.Token[AnyQueue | None] | None = None

    def __enter__(self: _Q) -> _Q:
        self._context_token = activate_queue(self)  # type: ignore[arg-type]  # a TaskQueue or ShardedTaskQueue
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release this queue's resources (the shared client stays open for others)."""
        if self._context_token is not None:
            deactivate_queue(self._context_token)
            self._context_token = None


def deactivate_queue(token: contextvars.Token[AnyQueue | None]) -> None:
    try:
        _queue.reset(token)
    except ValueError:  # closed from another context
        _queue.set(None)


def active_queue() -> AnyQueue | None:
    running = _running.get()
    if running is not None and running.queue is not None:
        return running.queue
    return _queue.get()


def running_task() -> RunningTask | None:
    return _running.get()


class task_running:
    """Within the block, ``task`` is the running task (XCom scoping, results, the active queue).

    A plain class, not ``@contextmanager``: every task a worker runs enters one."""

    __slots__ = ("_token", "running")

    def __init__(self, task: Task, queue: AnyQueue | None) -> None:
        self.running = RunningTask(task, queue)

    def __enter__(self) -> RunningTask:
        self._token = _running.set(self.running)
        return self.running

    def __exit__(self, *exc: object) -> None:
        _running.reset(self._token)


def cancelled() -> bool:
    """Inside a running task: whether it was cancelled (its worker learns it at its next heartbeat).
    False outside a task. A task that may run long polls it and stops early."""
    running = _running.get()
    return running is not None and running.task.cancel_requested


def raise_if_cancelled() -> None:
    """Inside a running task: raise :class:`TaskCancelled` when it was cancelled (see :func:`cancelled`)."""
    running = _running.get()
    if running is not None and running.task.cancel_requested:
        raise TaskCancelled(f"task {running.task.task_id} was cancelled")


def run_task_inline(task: Task) -> Any:
    """Run a function task now, in this process (``task()``)."""
    func = task.func
    if func is None:
        if task.func_name is None:
            raise TaskNotRegisteredError(f"task {task.task_id} has no function to run (payload-only task)")
        raise TaskNotRegisteredError(f"function {task.func_name!r} is not registered with @task")
    with task_running(task, active_queue()):
        return func(*task.args, **task.kwargs)


# Where XCom and enqueue find a queue outside `with TaskQueue(...)`: the Django layer installs one.
default_queue_factory: Callable[[], AnyQueue] | None = None


def set_default_queue_factory(factory: Callable[[], AnyQueue] | None) -> None:
    global default_queue_factory
    default_queue_factory = factory


def resolve_queue(purpose: str) -> AnyQueue:
    """The queue ``purpose`` (e.g. "XCom") uses: the running task's, the one of an enclosing
    ``with TaskQueue(...)``, else the installed default (a Django project's configured queue)."""
    queue = active_queue()
    if queue is None and default_queue_factory is not None:
        queue = default_queue_factory()
    if queue is None:
        raise FairQueueError(
            f"{purpose} needs a queue: use it inside a running task, inside `with TaskQueue(config):`, "
            "or in a Django project with fairque_django in INSTALLED_APPS"
        )
    return queue
