"""Find the request's organisation.

This toy takes it from the ``X-Organization`` header (or ``?org=``) as a slug; a real project
would derive it from the domain (django-tenants) or the logged-in user's membership. Either way
the result goes to ``request.tenant``, which ``FairQueueTenantMiddleware`` (next in
``MIDDLEWARE``) turns into the current fairque tenant.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .models import Organization


class OrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        slug = request.headers.get("X-Organization") or request.GET.get("org") or ""
        request.organization_slug = slug
        request.tenant = Organization.objects.filter(slug=slug).first() if slug else None
        return self.get_response(request)
