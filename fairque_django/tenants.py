"""Per-tenant limits and pause for Django code: the :class:`~fairque_django.core.queue.TaskQueue`
methods of the same names on the configured queue (:func:`~fairque_django.conf.get_queue`).

Tenants are given as user ids or as anything the tenant resolver maps to one (a ``User``, an
organisation, a request). See docs/limits.md.
"""

from __future__ import annotations

from typing import Any

from .conf import get_queue
from .core.config.limits import UNCHANGED, Unchanged
from .tenancy import resolve_user_id

__all__ = ["clear_tenant_limits", "get_tenant_limits", "is_paused", "pause_tenant", "resume_tenant",
           "set_tenant_limits"]


def set_tenant_limits(tenant: Any, *, concurrency: int | Unchanged | None = UNCHANGED,
                      rate: str | Unchanged | None = UNCHANGED,
                      burst: int | Unchanged | None = UNCHANGED) -> dict[str, Any]:
    """Set a tenant's runtime limits (they win over ``queue.tenant_limits`` until cleared)."""
    return get_queue().set_tenant_limits(resolve_user_id(tenant), concurrency=concurrency, rate=rate, burst=burst)


def clear_tenant_limits(tenant: Any) -> dict[str, Any]:
    """Drop a tenant's runtime limits: the settings apply again."""
    return get_queue().clear_tenant_limits(resolve_user_id(tenant))


def get_tenant_limits(tenant: Any) -> dict[str, Any]:
    """A tenant's limits in force, where each comes from, and its state (paused, held, leased)."""
    return get_queue().get_tenant_limits(resolve_user_id(tenant))


def pause_tenant(tenant: Any) -> dict[str, Any]:
    """Pause a tenant: nothing of it is leased until resumed; pushes are accepted, running tasks finish."""
    return get_queue().pause_tenant(resolve_user_id(tenant))


def resume_tenant(tenant: Any) -> dict[str, Any]:
    """Resume a paused tenant: it rejoins its rotation at its fair place."""
    return get_queue().resume_tenant(resolve_user_id(tenant))


def is_paused(tenant: Any) -> bool:
    """Whether a tenant is paused."""
    return get_queue().is_paused(resolve_user_id(tenant))
