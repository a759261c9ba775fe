"""Models without tables: they only give the admin a "FairQueue" section and carry the
permissions that guard it (the queue itself lives in Redis)."""

from __future__ import annotations

from django.db import models


class FairQueue(models.Model):
    """The FairQueue dashboard. Permissions:

    * ``fairque_django.view_fairqueue``: view the dashboard and the dead-letter queue;
    * ``fairque_django.manage_fairqueue``: requeue and delete dead tasks.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_fairqueue", "Can view FairQueue dashboard and DLQ"),
            ("manage_fairqueue", "Can requeue and delete dead tasks"),
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
