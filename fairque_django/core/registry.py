"""The ``@task`` decorator and the registry of functions workers are allowed to run.

A queued task names its function by import path (``module.qualname``). Workers look that
name up here and nowhere else: a name that was not registered is never imported or called.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .errors import TaskNotRegisteredError, TaskValidationError
from .models import Priority, Task, set_func_resolver
from .xcom import xcom_push

if TYPE_CHECKING:
    from .results import TaskResult

P = ParamSpec("P")
R = TypeVar("R")

_registry: dict[str, TaskFunction[Any, Any]] = {}
_lock = threading.Lock()
_enqueuer: Callable[..., TaskResult] | None = None
_aenqueuer: Callable[..., Awaitable[TaskResult]] | None = None


def set_default_enqueuer(enqueuer: Callable[..., TaskResult] | None,
                         aenqueuer: Callable[..., Awaitable[TaskResult]] | None = None) -> None:
    """Install what ``TaskFunction.enqueue`` and ``.aenqueue`` use (the Django layer installs its
    ``enqueue`` and ``aenqueue``)."""
    global _enqueuer, _aenqueuer
    _enqueuer = enqueuer
    _aenqueuer = aenqueuer


_NO_ENQUEUER = ("no enqueuer installed: add fairque_django to INSTALLED_APPS, or push the Task "
                "with TaskQueue.push(task, user_id=...)")


class TaskFunction(Generic[P, R]):
    """A registered function. Calling it returns a :class:`Task` (nothing runs yet)."""

    def __init__(self, func: Callable[P, R], *, name: str | None = None, priority: Priority | int = 3,
                 max_retries: int | None = None, timeout: float | None = None,
                 xcom_key: str | None = None, store_result: bool | None = None,
                 unique_key: str | Callable[..., str] | None = None, unique_for: float | None = None,
                 on_conflict: str = "drop") -> None:
        self.func = func
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        if "<locals>" in self.name and name is None:
            raise TaskValidationError(
                f"@task cannot register the nested function {self.name}: workers find tasks by import "
                "path; define it at module level or pass name=..."
            )
        self.priority = Priority.coerce(priority)
        self.max_retries = max_retries
        self.timeout = timeout
        self.xcom_key = xcom_key
        self.store_result = store_result
        self.unique_key = unique_key
        self.unique_for = unique_for
        self.on_conflict = on_conflict
        if unique_key is not None:  # checked now, not at the first enqueue
            Task.create(unique_key="k", unique_for=unique_for, on_conflict=on_conflict)
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Task:
        return self.create_task(args, kwargs)

    def create_task(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, *,
                    user_id: str | None = None, priority: Priority | int | None = None,
                    delay_seconds: float | None = None, execute_after: float | None = None,
                    max_retries: int | None = None, timeout: float | None = None,
                    metadata: dict[str, Any] | None = None) -> Task:
        """A Task that runs this function with ``args``/``kwargs`` (JSON, checked when it is pushed)."""
        meta = dict(metadata or {})
        if self.store_result is not None:  # None: kept by default, a non-JSON value noted, not fatal
            meta.setdefault("store_result", self.store_result)
        args = tuple(args)
        key = self.unique_key
        if callable(key):  # the key of these arguments (a tenant-scoped string)
            key = key(*args, **(kwargs or {}))
        return Task.create(
            user_id=user_id,
            priority=self.priority if priority is None else priority,
            func_name=self.name, args=args, kwargs=kwargs or {},
            delay_seconds=delay_seconds, execute_after=execute_after,
            max_retries=self.max_retries if max_retries is None else max_retries,
            timeout=self.timeout if timeout is None else timeout, metadata=meta,
            unique_key=key, unique_for=self.unique_for, on_conflict=self.on_conflict,
        )

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself, here and now (no task, no XCom scoping)."""
        return self.func(*args, **kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> R:
        """What a worker runs (``task.func``): the function, then the XCom push of its result
        when registered with ``@xcom_task``."""
        result = self.func(*args, **kwargs)
        if self.xcom_key is not None:

            xcom_push(self.xcom_key, result)
        return result

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskResult:
        """Queue a call for the current tenant (through the installed enqueuer); returns its handle."""
        return self.apply_async(args, kwargs)

    delay = enqueue

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, *,
                    user: Any = None, priority: Priority | int | None = None,
                    countdown: float | None = None, eta: float | None = None,
                    on_commit: bool | None = None, depends_on: Iterable[Any] = (),
                    allow_failure: bool = False) -> TaskResult:
        """Queue a call with options; ``user`` is a user id or anything the tenant resolver maps;
        ``depends_on``: handles, tasks, ids or (user, id) pairs that must succeed first.
        Returns the task's :class:`~.results.TaskResult` handle."""
        if _enqueuer is None:
            raise TaskNotRegisteredError(_NO_ENQUEUER)
        task = self.create_task(args, kwargs, priority=priority, delay_seconds=countdown, execute_after=eta)
        task.set_dependencies(depends_on, allow_failure)
        return _enqueuer(task, user=user, on_commit=on_commit)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskResult:
        """Async :meth:`enqueue` (pushes at once: there is no transaction to wait for)."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, *,
                           user: Any = None, priority: Priority | int | None = None,
                           countdown: float | None = None, eta: float | None = None) -> TaskResult:
        """Async :meth:`apply_async` (pushes at once)."""
        if _aenqueuer is None:
            raise TaskNotRegisteredError(_NO_ENQUEUER)
        task = self.create_task(args, kwargs, priority=priority, delay_seconds=countdown, execute_after=eta)
        return await _aenqueuer(task, user=user)

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name}>"


def register(fn: TaskFunction[Any, Any]) -> None:
    with _lock:
        existing = _registry.get(fn.name)
        if existing is not None and existing.func is not fn.func and existing.func.__code__ is not fn.func.__code__:
            raise TaskValidationError(f"a different function is already registered as {fn.name!r}")
        _registry[fn.name] = fn


@overload
def task(func: Callable[P, R], /) -> TaskFunction[P, R]: ...
@overload
def task(*, name: str | None = None, priority: Priority | int = 3, max_retries: int | None = None,
         timeout: float | None = None, store_result: bool | None = None,
         unique_key: str | Callable[..., str] | None = None, unique_for: float | None = None,
         on_conflict: str = "drop",
         ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(func: Callable[P, R] | None = None, /, *, name: str | None = None, priority: Priority | int = 3,
         max_retries: int | None = None, timeout: float | None = None, store_result: bool | None = None,
         unique_key: str | Callable[..., str] | None = None, unique_for: float | None = None,
         on_conflict: str = "drop",
         ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Register a function as a task: ``@task`` or ``@task(priority=..., max_retries=..., timeout=...)``.

    Its outcome is kept for ``queue.result_ttl_seconds`` (see :class:`~.results.TaskResult`):
    ``store_result=False`` keeps nothing, ``store_result=True`` also fails the task when its return
    value is not JSON (by default the result then only notes why the value is missing).

    ``unique_key`` (a string, or a callable of the task's arguments returning one) makes each call
    unique per tenant while unfinished; ``unique_for`` and ``on_conflict`` as for ``enqueue``."""

    def wrap(f: Callable[P, R]) -> TaskFunction[P, R]:
        fn = TaskFunction(f, name=name, priority=priority, max_retries=max_retries, timeout=timeout,
                          store_result=store_result, unique_key=unique_key, unique_for=unique_for,
                          on_conflict=on_conflict)
        register(fn)
        return fn

    return wrap(func) if func is not None else wrap


def xcom_task(key: str, *, name: str | None = None, priority: Priority | int = 3,
              max_retries: int | None = None, timeout: float | None = None,
              ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Like ``@task``, and the return value is stored in XCom under ``key`` (the task's user's scope)."""

    def wrap(f: Callable[P, R]) -> TaskFunction[P, R]:
        fn = TaskFunction(f, name=name, priority=priority, max_retries=max_retries, timeout=timeout,
                          xcom_key=key)
        register(fn)
        return fn

    return wrap


def get_task_function(name: str) -> TaskFunction[Any, Any]:
    """The registered function called ``name``; raises TaskNotRegisteredError (nothing is imported)."""
    fn = _registry.get(name)
    if fn is None:
        raise TaskNotRegisteredError(
            f"task function {name!r} is not registered: workers only run functions decorated with "
            "@task in modules they import (Django apps' tasks.py are autodiscovered)"
        )
    return fn


def registered_names() -> list[str]:
    return sorted(_registry)


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the modules that define tasks (named in configuration, never taken from Redis)."""
    for module in modules:
        importlib.import_module(module)


def _resolve(name: str) -> Callable[..., Any] | None:
    fn = _registry.get(name)
    return fn.execute if fn is not None else None


set_func_resolver(_resolve)
