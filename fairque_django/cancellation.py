"""Cancel tasks from Django code: one task by id, or everything waiting for a tenant.

``user`` is what :func:`~fairque_django.enqueuing.enqueue` accepts (a user id, a ``User``, a
tenant model, a request; default: the current tenant): a task of another tenant is
``not_found``. See docs/cancellation.md.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from .conf import get_queue
from .core.context import current_user
from .core.results import CancelResult
from .core.sharded import AnyQueue
from .tenancy import resolve_user_id

__all__ = ["acancel", "acancel_tenant", "cancel", "cancel_tenant"]


def _user(user: Any) -> str:
    user_id = resolve_user_id(user) if user is not None else current_user()
    assert user_id is not None  # current_user() raises MissingTenantError instead
    return user_id


def cancel(task_id: str, *, user: Any = None, queue: AnyQueue | None = None) -> CancelResult:
    """Cancel a task of ``user`` (default: the current tenant); see :meth:`TaskQueue.cancel`."""
    return (queue if queue is not None else get_queue()).cancel(task_id, user_id=_user(user))


def cancel_tenant(user: Any = None, *, running: bool = False, queue: AnyQueue | None = None) -> dict[str, int]:
    """Cancel every queued and delayed task of ``user`` (``running=True``: flag its running ones
    too); ``{"cancelled": n, "cancelling": m}``. See :meth:`TaskQueue.cancel_tenant`."""
    return (queue if queue is not None else get_queue()).cancel_tenant(_user(user), running=running)


async def acancel(task_id: str, *, user: Any = None, queue: AnyQueue | None = None) -> CancelResult:
    """Async :func:`cancel`."""
    return await sync_to_async(cancel)(task_id, user=user, queue=queue)


async def acancel_tenant(user: Any = None, *, running: bool = False, queue: AnyQueue | None = None,
                         ) -> dict[str, int]:
    """Async :func:`cancel_tenant`."""
    return await sync_to_async(cancel_tenant)(user, running=running, queue=queue)
