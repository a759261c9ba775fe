"""A minimal Django project for the "as users run it" benchmark: fairque_django installed with its
default settings, one worker (``bench-dj``) serving every tenant, the benchmark's tasks
(:mod:`.fairque_app`) imported by ``runfairworker``.

The producer (the benchmark process) and the worker (``python -m django runfairworker bench-dj``,
what ``manage.py runfairworker`` runs) both use ``DJANGO_SETTINGS_MODULE =
"benchmarks.contenders.django_settings"``; the Redis is ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

from benchmarks.contenders import bodies

WORKER_ID = "bench-dj"
PREFIX = "fqdj"

SECRET_KEY = "benchmarks-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "fairque_django"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

FAIRQUE = {
    "redis": {"url": bodies.url()},
    "workers": [{"id": WORKER_ID, "assigned_users": ["*"]}],
    "queue": {"stats_prefix": PREFIX},  # its own keys; every other queue setting is the default
    "TASK_MODULES": ["benchmarks.contenders.fairque_app"],
}
