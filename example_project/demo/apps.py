from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The README's demo (``manage.py fairque_demo``): a showcase of the example shop, no models."""

    name = "demo"
    verbose_name = "Demo"
