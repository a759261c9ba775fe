"""Django app configuration."""

from __future__ import annotations

from django.apps import AppConfig


class FairQueueAppConfig(AppConfig):
    name = "fairque_django"
    verbose_name = "FairQueue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.signals import setting_changed

        from .checks import register_checks
        from .conf import get_queue, install_providers, on_setting_changed
        from .core.context import set_default_queue_factory
        from .core.registry import set_default_enqueuer
        from .enqueuing import aenqueue, enqueue

        install_providers()
        set_default_enqueuer(enqueue, aenqueue)  # TaskFunction.enqueue()/.delay()/.apply_async()/.aenqueue()
        set_default_queue_factory(get_queue)  # XCom and result handles outside tasks use the configured queue
        register_checks()
        setting_changed.connect(on_setting_changed, dispatch_uid="fairque_django.conf.on_setting_changed")
        if any(str(c.get("BACKEND", "")).startswith("fairque_django.")
               for c in getattr(settings, "TASKS", {}).values() if isinstance(c, dict)):
            # registers the task framework's system checks, which call FairQueueBackend.check()
            from . import compat  # noqa: F401
