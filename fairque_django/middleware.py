"""Middleware that makes the request's tenant the current FairQueue tenant.

Add it after ``AuthenticationMiddleware`` (and after a tenant middleware such as
django-tenants', if any)::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "fairque_django.middleware.FairQueueTenantMiddleware", ...]

Tasks enqueued while the view runs then belong to ``TENANT_RESOLVER(request)`` without
passing ``user=`` by hand.  A request that names no tenant (anonymous) leaves it unset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase

from .core.context import reset_tenant, set_tenant
from .tenancy import resolve_user_id_or_none

__all__ = ["FairQueueTenantMiddleware"]


class FairQueueTenantMiddleware:
    """Sets the current tenant for each request and resets it afterwards (sync and async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = set_tenant(resolve_user_id_or_none(request))
        try:
            return self.get_response(request)
        finally:
            reset_tenant(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # The resolver may touch the database (lazy request.user), which async code may not.
        user_id = await sync_to_async(resolve_user_id_or_none)(request)
        token = set_tenant(user_id)
        try:
            response: Awaitable[HttpResponseBase] = self.get_response(request)
            return await response
        finally:
            reset_tenant(token)
