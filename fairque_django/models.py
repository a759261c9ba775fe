"""The dashboard models have no tables: they only give the admin a "FairQueue" section and carry the
permissions that guard it (the queue itself lives in Redis)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class FairQueue(models.Model):
    """The FairQueue dashboard. Permissions:

    * ``fairque_django.view_fairqueue``: view the dashboard and the dead-letter queue;
    * ``fairque_django.manage_fairqueue``: requeue and delete dead tasks;
    * ``fairque_django.manage_tenants``: pause and resume tenants, change their runtime limits and
      cancel their queued tasks (the tenant page).
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_fairqueue", "Can view FairQueue dashboard and DLQ"),
            ("manage_fairqueue", "Can requeue and delete dead tasks"),
            ("manage_tenants", "Can pause tenants, change their limits and cancel their tasks"),
        ]
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"

    def __str__(self) -> str:
        return "FairQueue"


class DeadLetterQueue(FairQueue):
    """The dead-letter queue's entry in the admin index (same permissions as the dashboard)."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "dead task"
        verbose_name_plural = "dead-letter queue"


class OutboxEntry(models.Model):
    """A task enqueued with ``ENQUEUE_MODE = "outbox"``, written in the caller's database
    transaction; the relay (:mod:`fairque_django.outbox`) pushes it to Redis and deletes it."""

    id = models.BigAutoField(primary_key=True)
    task_id = models.CharField(max_length=200, unique=True)
    user_id = models.TextField()
    body = models.TextField(help_text="the task as JSON")
    created_at = models.DateTimeField(auto_now_add=True)
    available_at = models.DateTimeField(default=timezone.now, db_index=True,
                                        help_text="not relayed before this time")
    attempts = models.PositiveIntegerField(default=0, help_text="failed pushes of this row")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("id",)
        default_permissions = ()  # internal rows: no admin, no add/change/delete/view permissions
        verbose_name = "outbox entry"
        verbose_name_plural = "outbox"

    def __str__(self) -> str:
        return f"outbox {self.task_id} ({self.user_id})"
