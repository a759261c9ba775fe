"""Monitoring endpoints (mounted by :mod:`fairque_django.urls`):

``metrics``
    Prometheus text format (needs the optional ``prometheus-client``; 501 without it). Allowed
    for a bearer token equal to ``FAIRQUE["METRICS_TOKEN"]`` (``Authorization: Bearer ...``,
    compared in constant time) or a logged-in active staff user with the
    ``fairque_django.view_fairqueue`` permission; 401 otherwise (403 for a logged-in user
    without the permission).
``health``
    For load balancers and Kubernetes probes, no authentication: 200 with a JSON body when Redis
    answers and at least one worker heartbeats, else 503. Counts only, no tenant data; why Redis
    or the configuration failed (addresses included) only for those who may read the metrics,
    and in the log.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .alerts import alert_rules
from .conf import get_queue, get_setting
from .core.errors import FairQueueError
from .core.observe import collect_metrics, health_status
from .core.observe.alerts import AlertTracker

__all__ = ["VIEW_PERMISSION", "health", "metrics"]

logger = logging.getLogger("fairque_django.health")

VIEW_PERMISSION = "fairque_django.view_fairqueue"
_TEXT = "text/plain; charset=utf-8"


def _unauthorized(error: str | None) -> HttpResponse:
    response = HttpResponse("authentication required: a bearer token (FAIRQUE['METRICS_TOKEN']) or a staff "
                            "login with the view_fairqueue permission\n", status=401, content_type=_TEXT)
    challenge = 'Bearer realm="fairque"'
    if error:
        challenge += f', error="{error}"'
    response["WWW-Authenticate"] = challenge
    return response


def authorize(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics, else the response refusing it."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer":
        token = get_setting("METRICS_TOKEN")
        if token and hmac.compare_digest(given.strip().encode("utf-8"), str(token).encode("utf-8")):
            return None
        return _unauthorized("invalid_token")
    user: Any = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION):
            return None
        return HttpResponse("forbidden: the fairque_django.view_fairqueue permission is needed\n", status=403,
                            content_type=_TEXT)
    return _unauthorized(None)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refused = authorize(request)
    if refused is not None:
        return refused
    try:
        from .prometheus import CONTENT_TYPE, render
    except ImportError:
        return HttpResponse("the metrics endpoint needs the prometheus-client package: "
                            "pip install 'fairque-django[prometheus]'\n", status=501, content_type=_TEXT)
    try:
        queue = get_queue()
        rules = alert_rules()
        snapshot = collect_metrics(queue, get_setting("METRICS_TOP_TENANTS"), alerts=bool(rules))
        stored = AlertTracker(queue).load((r.name for r in rules), snapshot=snapshot) if rules else {}
    except FairQueueError as exc:
        return HttpResponse(f"fairque metrics unavailable: {exc}\n", status=503, content_type=_TEXT)
    return HttpResponse(render(snapshot, rules, stored), content_type=CONTENT_TYPE)


@never_cache
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    details = authorize(request) is None  # a metrics reader (staff, bearer token) sees why
    try:
        ok, body = health_status(get_queue(), details=details)
    except FairQueueError as exc:  # e.g. a configuration error
        logger.error("fairque health: %s", exc)
        ok, body = False, {"status": "unavailable", "redis": False,
                           "reason": str(exc) if details else "configuration error (see the log)"}
    return JsonResponse(body, status=200 if ok else 503)
