"""Django app configuration."""

from __future__ import annotations

from django.apps import AppConfig


class FairQueueAppConfig(AppConfig):
    name = "fairque_django"
    verbose_name = "FairQueue"
    default_auto_field = "django.db.models.AutoField"
