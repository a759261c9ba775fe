"""The "FairQueue" section of the Django admin: a dashboard and the dead-letter queue.

The models have no table; their ModelAdmins only mount the views of :mod:`.views`:

* ``admin/fairque_django/fairqueue/`` — dashboard (``admin:fairque_dashboard``)
* ``admin/fairque_django/fairqueue/schedules/`` — periodic schedules (``admin:fairque_schedules``);
  ``.../schedules/action/`` — run now / pause / resume, POST only, confirm first
* ``admin/fairque_django/fairqueue/tenant/?id=<user id>`` — one tenant (``admin:fairque_tenant``);
  ``.../tenant/action/`` — pause / resume, runtime limits, cancel: POST only, confirm first,
  ``manage_tenants`` (:mod:`.tenants`)
* ``admin/fairque_django/deadletterqueue/`` — DLQ list (``admin:fairque_dlq``)
* ``admin/fairque_django/deadletterqueue/task/<id>/`` — DLQ detail (``admin:fairque_dlq_detail``)
* ``admin/fairque_django/deadletterqueue/requeue/`` and ``.../delete/`` — POST only, confirm first

To use another admin site: ``site.register(FairQueue, FairQueueAdmin)`` and
``site.register(DeadLetterQueue, DeadLetterQueueAdmin)``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.http import HttpRequest
from django.urls import URLPattern, path

from ..models import DeadLetterQueue, FairQueue
from .tenants import MANAGE_TENANTS_PERMISSION, TenantPages
from .views import FairQueueViews, can_view


class _QueuePageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No add/change/delete of rows (there are none); viewing needs ``view_fairqueue``."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view(request)

    def views(self) -> FairQueueViews:
        admins: list[admin.ModelAdmin[Any]] = []
        for model in (FairQueue, DeadLetterQueue):
            try:
                admins.append(self.admin_site.get_model_admin(model))
            except NotRegistered:
                admins.append(self)
        return FairQueueViews(admins[0], admins[1])


@admin.register(FairQueue)
class FairQueueAdmin(_QueuePageAdmin):
    def get_urls(self) -> list[URLPattern]:
        views = self.views()
        wrap = self.admin_site.admin_view
        dashboard = wrap(views.guarded(views.dashboard))
        tenants = TenantPages(views)
        return [
            path("", dashboard, name="fairque_dashboard"),
            path("", dashboard, name="fairque_django_fairqueue_changelist"),
            path("schedules/", wrap(views.guarded(views.schedules)), name="fairque_schedules"),
            path("schedules/action/", wrap(views.guarded(views.schedule_action, manage=True)),
                 name="fairque_schedule_action"),
            path("tenant/", wrap(views.guarded(tenants.tenant)), name="fairque_tenant"),
            path("tenant/action/", wrap(views.guarded(tenants.action, permission=MANAGE_TENANTS_PERMISSION)),
                 name="fairque_tenant_action"),
        ]


@admin.register(DeadLetterQueue)
class DeadLetterQueueAdmin(_QueuePageAdmin):
    def get_urls(self) -> list[URLPattern]:
        views = self.views()
        wrap = self.admin_site.admin_view
        dlq = wrap(views.guarded(views.dlq_list))
        return [
            path("", dlq, name="fairque_dlq"),
            path("", dlq, name="fairque_django_deadletterqueue_changelist"),
            path("requeue/", wrap(views.guarded(views.dlq_requeue, manage=True)), name="fairque_dlq_requeue"),
            path("delete/", wrap(views.guarded(views.dlq_delete, manage=True)), name="fairque_dlq_delete"),
            path("task/<path:task_id>/", wrap(views.guarded(views.dlq_detail)), name="fairque_dlq_detail"),
        ]
