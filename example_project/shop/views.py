"""A tiny JSON API: create an order (which enqueues its processing) and look at it."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from fairque_django.tenancy import current_tenant

from .models import Order, Organization
from .tasks import process_order


def _organization(request: HttpRequest) -> Organization | JsonResponse:
    org = getattr(request, "tenant", None)
    if isinstance(org, Organization):
        return org
    if getattr(request, "organization_slug", ""):
        return JsonResponse({"error": f"unknown organisation {request.organization_slug!r}"},
                            status=404)
    return JsonResponse({"error": "say which organisation: X-Organization header or ?org=<slug>"},
                        status=400)


@csrf_exempt  # an API for the example (curl); a real one would authenticate the organisation
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """``POST /orders/`` with ``item`` and ``quantity``: store the order, queue its processing."""
    org = _organization(request)
    if isinstance(org, JsonResponse):
        return org
    try:
        quantity = int(request.POST.get("quantity", "1"))
    except ValueError:
        return JsonResponse({"error": "quantity must be a whole number"}, status=400)
    if quantity < 1:
        return JsonResponse({"error": "quantity must be at least 1"}, status=400)
    with transaction.atomic():
        order = Order.objects.create(organization=org, item=request.POST.get("item", "widget")[:100],
                                     quantity=quantity)
        # No user= here: FairQueueTenantMiddleware made this organisation the current tenant.
        # ENQUEUE_ON_COMMIT pushes the task once the order row is committed.
        task_id = process_order.enqueue(order.pk).id
    return JsonResponse({"order_id": order.pk, "task_id": task_id, "tenant": current_tenant()}, status=202)


@require_GET
def order_detail(request: HttpRequest, order_id: int) -> JsonResponse:
    """``GET /orders/<id>/``: the order's status (only within its own organisation)."""
    org = _organization(request)
    if isinstance(org, JsonResponse):
        return org
    order = get_object_or_404(Order, pk=order_id, organization=org)
    return JsonResponse({"order_id": order.pk, "status": order.status, "total": str(order.total),
                         "confirmation": order.confirmation})
