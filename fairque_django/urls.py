"""Monitoring URLs: ``path("fairque/", include("fairque_django.urls"))`` gives ``fairque/metrics``
(Prometheus, staff or bearer token) and ``fairque/health`` (JSON for load balancers)."""

from __future__ import annotations

from django.urls import URLPattern, path

from . import views

app_name = "fairque"

urlpatterns: list[URLPattern] = [
    path("metrics", views.metrics, name="metrics"),
    path("health", views.health, name="health"),
]
