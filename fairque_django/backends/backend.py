"""The backend class for Django's task framework (see :mod:`fairque_django.backends`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ParamSpec, TypeVar, cast

from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from ..compat import BaseTaskBackend, Task, TaskResult, make_task_result, task_enqueued
from ..conf import get_config, get_queue
from ..core.config import Problem
from ..core.config.kinds import unknown_key
from ..core.config.schema import BACKEND_OPTIONS
from ..core.context import current_user
from ..core.errors import FairQueueError, MissingTenantError, TaskValidationError
from ..core.keys import validate_user_id
from ..core.models import Task as FairTask
from ..core.queue import redis_errors
from ..core.sharded import AnyQueue
from ..enqueuing import enqueue as fairque_enqueue
from ..enqueuing import enqueue_mode
from .calls import (
    OPTION_DEFAULTS,
    READY,
    Call,
    fairque_priority,
    json_arguments,
    relative,
    timestamp,
    to_datetime,
)
from .results import ResultReads
from .runner import execute, run_django_task

__all__ = ["FairQueueBackend"]

logger = logging.getLogger("fairque_django.backends")

P = ParamSpec("P")
R = TypeVar("R")


class FairQueueBackend(ResultReads, BaseTaskBackend):
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
            raise ImproperlyConfigured("; ".join(f"TASKS[{self.alias!r}]['OPTIONS']{relative(p)}" for p in problems))
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
        call_args, call_kwargs = json_arguments(task, args, kwargs)
        user_id = current_user(required=False) or self._default_user(options)
        if user_id is None:
            raise MissingTenantError(
                f"cannot enqueue Django task {task.module_path}: no current tenant. Enqueue inside "
                "`with fairque_django.tenant(...)` (or a request through FairQueueTenantMiddleware), "
                f"or set TASKS[{self.alias!r}]['OPTIONS']['DEFAULT_USER']"
            )
        run_after = timestamp(task.run_after) if task.run_after is not None else None
        call = Call(task.module_path, call_args, call_kwargs, self.alias, task.queue_name, task.priority,
                     run_after)
        ftask = run_django_task.create_task(
            call.runner_args(), user_id=user_id, priority=fairque_priority(task.priority),
            execute_after=run_after, max_retries=options["MAX_RETRIES"], timeout=options["TIMEOUT"],
        )
        result = cast("TaskResult[P, R]", make_task_result(
            task=task, id=ftask.task_id, status=READY,
            enqueued_at=to_datetime(ftask.created_at), started_at=None, finished_at=None,
            last_attempted_at=None, args=call_args, kwargs=call_kwargs, backend=self.alias,
            errors=[], worker_ids=[],
        ))
        on_commit = options["ENQUEUE_ON_COMMIT"]
        queue = get_queue()
        fairque_enqueue(ftask, on_commit=on_commit, queue=queue)

        def announce() -> None:
            ttl = queue.config.queue.result_ttl_seconds + int(max(0.0, (run_after or 0) - time.time()))
            try:
                with redis_errors("index result owner"):
                    queue.client.set(queue.home_queue.keys.result_owner(ftask.task_id), user_id, ex=ttl)
            except FairQueueError as exc:  # the task is queued; only lookups without a tenant suffer
                logger.warning("could not index the owner of Django task result %s: %s", ftask.task_id, exc)
            task_enqueued.send(type(self), task_result=result)

        if enqueue_mode(on_commit) != "direct":
            transaction.on_commit(announce)
        else:
            announce()
        return result

    def run(self, call: Call, ftask: FairTask, queue: AnyQueue) -> Any:
        """Run one attempt of ``call`` in a worker (see :func:`.runner.execute`)."""
        return execute(self, call, ftask, queue)

    # --- checks ----------------------------------------------------------------------
    def check(self, **kwargs: Any) -> list[CheckMessage]:
        """System checks: FAIRQUE present and valid, QUEUES, OPTIONS and DEFAULT_USER."""
        from ..conf import fairque_setting

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
            messages.append(Error(f"{where}['OPTIONS']{relative(problem)}.",
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
