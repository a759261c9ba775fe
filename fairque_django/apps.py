"""Django app configuration."""

from __future__ import annotations

from django.apps import AppConfig


class FairQueueAppConfig(AppConfig):
    name = "fairque_django"
    verbose_name = "FairQueue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from .checks import register_checks
        from .conf import django_client_provider, django_default_redis, on_setting_changed
        from .core.config import set_default_redis_provider
        from .core.connection import set_client_provider
        from .core.registry import set_default_enqueuer
        from .enqueue import enqueue

        # create_default()/FairQueueConfig() without redis= use the project's Redis, and a
        # TaskQueue built from the FAIRQUE config shares Django's connection.
        set_default_redis_provider(django_default_redis)
        set_client_provider(django_client_provider)
        set_default_enqueuer(enqueue)  # TaskFunction.enqueue()/.delay()/.apply_async()
        register_checks()
        setting_changed.connect(on_setting_changed, dispatch_uid="fairque_django.conf.on_setting_changed")
