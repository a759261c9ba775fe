"""Enqueue tasks from Django code, optionally only once the database transaction commits.

The user a task belongs to is, in this order: ``user=`` (anything the tenant resolver
understands: a user id, a ``User``, a tenant model, a request), the task's own ``user_id``,
the current tenant (:func:`fairque_django.tenancy.tenant`, the middleware, or the running
task); otherwise :class:`~fairque_django.core.errors.MissingTenantError`.

How a task reaches Redis is ``FAIRQUE["ENQUEUE_MODE"]`` (see :func:`enqueue_mode`):

* ``"direct"`` (default): pushed at once;
* ``"on_commit"`` (or ``ENQUEUE_ON_COMMIT = True``, or ``on_commit=True``): pushed in
  ``transaction.on_commit``, so a worker never sees a task about a row that is not committed yet,
  and a rolled-back transaction enqueues nothing; with Redis down at the commit the task is lost
  and the error is raised after the commit;
* ``"outbox"``: written as a row in the same database transaction (:mod:`fairque_django.outbox`)
  and pushed by a relay, so it is neither lost nor run twice when Redis is down at the commit.

``on_commit=False`` pushes at once whatever the mode. Everything that can be checked is checked
at once, inside the transaction: the user id, JSON serialisability and size.

Each call returns :class:`~fairque_django.core.results.TaskResult` handles (``.id``, ``.status``,
``.wait(timeout=...)``); :func:`result` rebuilds one from a stored id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from .conf import get_queue, get_setting
from .core.context import current_user
from .core.errors import NotEnqueuedAfterCommitError, RedisUnavailableError
from .core.models import Task
from .core.results import TaskResult
from .core.sharded import AnyQueue
from .tenancy import resolve_user_id

__all__ = ["aenqueue", "aenqueue_many", "aresult", "chain", "enqueue", "enqueue_many", "enqueue_mode", "result"]

logger = logging.getLogger("fairque_django.enqueue")


def _after_commit(push: Callable[[], None], tasks: list[Task], using: str | None) -> None:
    """Run ``push`` once the transaction commits; if Redis is unreachable then, the rows stay
    committed and the tasks are lost: say so loudly (log and a typed error), naming them."""
    def run() -> None:
        try:
            push()
        except RedisUnavailableError as exc:
            ids = ", ".join(t.task_id for t in tasks[:10]) + (", ..." if len(tasks) > 10 else "")
            message = (f"the transaction committed but {len(tasks)} task(s) were NOT queued ({ids}): {exc}. "
                       "They will not run unless enqueued again; ENQUEUE_MODE = \"outbox\" keeps them "
                       "(docs/reliability.md, the outbox section)")
            logger.error("fairque: %s", message)
            raise NotEnqueuedAfterCommitError(message) from exc

    transaction.on_commit(run, using=using)


def _prepare(tasks: Iterable[Task], user: Any,
             queue: AnyQueue | None) -> tuple[AnyQueue, list[Task], list[list[Any]]]:
    """The queue, the checked tasks and each one's push arguments (header, encoded body).

    Validates each task's user id, id, priority, options, JSON and size now, and fixes its
    ``user_id``, so a push that runs later (on commit, maybe without the current tenant) cannot
    fail on them; the push sends what was checked here (nothing is checked or encoded twice). The
    tenant (``user``) is resolved once for all the tasks; each task's own user id, else the
    current tenant, otherwise (the queue checks a user id once)."""
    q = queue if queue is not None else get_queue()
    explicit = resolve_user_id(user) if user is not None else None
    prepare = q.proto.prepare
    batch = list(tasks)
    encoded = [prepare(task, explicit)[1] for task in batch]
    return q, batch, encoded


def enqueue_mode(on_commit: bool | None = None) -> str:
    """How an enqueue with this ``on_commit`` argument hands its tasks over: ``"direct"``,
    ``"on_commit"`` or ``"outbox"``. ``False`` is direct; otherwise ``ENQUEUE_MODE`` decides, except
    that ``True`` or ``ENQUEUE_ON_COMMIT`` turn ``"direct"`` into ``"on_commit"``."""
    if on_commit is False:
        return "direct"
    mode = str(get_setting("ENQUEUE_MODE"))
    if mode == "direct" and (on_commit or get_setting("ENQUEUE_ON_COMMIT")):
        return "on_commit"
    return mode


def _hand_over(q: AnyQueue, tasks: list[Task], encoded: list[list[Any]], on_commit: bool | None,
               using: str | None, push: Callable[[], Any]) -> None:
    mode = enqueue_mode(on_commit)
    if mode == "outbox":
        from .outbox import write  # imports the models: only once Django is set up

        write(q, [(task, args[1]) for task, args in zip(tasks, encoded, strict=True)], using)
    elif mode == "on_commit":
        _after_commit(push, tasks, using)
    else:
        push()


def enqueue(task: Task, *, user: Any = None, on_commit: bool | None = None, using: str | None = None,
            queue: AnyQueue | None = None, unique_key: str | None = None, unique_for: float | None = None,
            on_conflict: str = "drop", depends_on: Iterable[Any] | None = None,
            allow_failure: bool = False) -> TaskResult:
    """Queue *task* and return its :class:`~fairque_django.core.results.TaskResult` handle.

    *queue* defaults to :func:`fairque_django.conf.get_queue`; *using* is the database alias
    whose transaction ``on_commit`` waits for (and that holds the outbox rows). In outbox mode
    the handle says ``READY`` and ``refresh()`` raises ``TaskNotFoundError`` until the row is
    relayed; ``wait()`` waits through that.

    *unique_key* (per tenant; with *unique_for* seconds and *on_conflict* ``"drop"``,
    ``"replace"`` or ``"debounce"``) and *depends_on* (handles, tasks, ids or ``(user, id)``
    pairs; *allow_failure*) set the task's own options (docs/workflows.md). When the unique key
    drops, replaces or debounces, the handle names the task that holds the key (once pushed: in
    on-commit mode after the commit; in outbox mode the handle keeps the new id).
    """
    if unique_key is not None:
        task.set_unique(unique_key, unique_for, on_conflict)
    if depends_on is not None:
        task.set_dependencies(depends_on, allow_failure)
    q, tasks, encoded = _prepare([task], user, queue)
    handle = TaskResult.for_task(task, q)

    def push() -> None:
        handle.id = q.push(task, task.user_id, encoded=encoded[0])["task_id"]

    _hand_over(q, tasks, encoded, on_commit, using, push)
    return handle


def chain(*tasks: Task, user: Any = None, on_commit: bool | None = None, using: str | None = None,
          queue: AnyQueue | None = None) -> list[TaskResult]:
    """Queue *tasks* to run one after the other, each receiving the previous one's return value as
    one more positional argument (read from its kept result: keep results, ``store_result``). Each
    depends on the one before: a failure for good cancels the rest. Returns their handles, in order."""
    handles: list[TaskResult] = []
    for task in tasks:
        if handles:
            prev = handles[-1]
            task.set_dependencies([prev])
            task.metadata["chain_from"] = [prev.user_id, prev.id]
        handles.append(enqueue(task, user=user, on_commit=on_commit, using=using, queue=queue))
    return handles


def enqueue_many(tasks: Iterable[Task], *, user: Any = None, on_commit: bool | None = None,
                 using: str | None = None, queue: AnyQueue | None = None) -> list[TaskResult]:
    """Queue many tasks with :meth:`TaskQueue.push_batch`; returns their handles, in order.

    All tasks are validated before any is pushed; ``user``/``on_commit``/``using``/``queue``
    mean what they mean for :func:`enqueue`.
    """
    q, prepared, encoded = _prepare(tasks, user, queue)
    if not prepared:
        return []

    def push() -> None:
        q.push_prepared(prepared, encoded)

    _hand_over(q, prepared, encoded, on_commit, using, push)
    for_task = TaskResult.for_task
    return [for_task(t, q) for t in prepared]


def _async_on_commit() -> bool | None:
    # async code cannot be inside atomic(): no transaction to wait for, so push at once, except
    # in outbox mode, where the row (committed at once) keeps the task should Redis be down
    return None if get_setting("ENQUEUE_MODE") == "outbox" else False


async def aenqueue(task: Task, *, user: Any = None, queue: AnyQueue | None = None, unique_key: str | None = None,
                   unique_for: float | None = None, on_conflict: str = "drop", depends_on: Iterable[Any] | None = None,
                   allow_failure: bool = False) -> TaskResult:
    """Async :func:`enqueue` (the same unique-key and dependency options).  Pushes at once (async
    code cannot be inside ``atomic()``, so there is no transaction to wait for); in outbox mode it
    writes the row, pushed at once as well."""
    deps = list(depends_on) if depends_on is not None else None
    return await sync_to_async(enqueue)(task, user=user, on_commit=_async_on_commit(), queue=queue,
                                        unique_key=unique_key, unique_for=unique_for, on_conflict=on_conflict,
                                        depends_on=deps, allow_failure=allow_failure)


async def aenqueue_many(tasks: Iterable[Task], *, user: Any = None,
                        queue: AnyQueue | None = None) -> list[TaskResult]:
    """Async :func:`enqueue_many` (pushes at once, or writes outbox rows as :func:`aenqueue`)."""
    return await sync_to_async(enqueue_many)(list(tasks), user=user, on_commit=_async_on_commit(), queue=queue)


def result(task_id: str, *, user: Any = None, queue: AnyQueue | None = None) -> TaskResult:
    """The handle of a task enqueued earlier, read now: for code that stored only the id.

    ``user`` is what :func:`enqueue` accepts (default: the current tenant); a task of another
    tenant is not found (:class:`~fairque_django.core.errors.TaskNotFoundError`), as is an
    unknown id or a result older than ``queue.result_ttl_seconds``."""
    user_id = resolve_user_id(user) if user is not None else current_user()
    assert user_id is not None  # current_user() raises MissingTenantError instead
    return (queue if queue is not None else get_queue()).result(task_id, user_id=user_id)


async def aresult(task_id: str, *, user: Any = None, queue: AnyQueue | None = None) -> TaskResult:
    """Async :func:`result`."""
    return await sync_to_async(result)(task_id, user=user, queue=queue)
