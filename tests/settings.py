"""Django settings for the test suite."""

from __future__ import annotations

from tests.support.postgres import ALIAS as POSTGRES_ALIAS
from tests.support.postgres import database_settings
from tests.support.redis_url import REDIS_URL

SECRET_KEY = "fairque-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "fairque_django",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    # only tests marked `postgres` use it (the outbox tests; tests/conftest.py)
    POSTGRES_ALIAS: database_settings(),
}
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
FAIRQUE = {
    "redis": {"url": REDIS_URL},
    "workers": [
        {"id": "worker-001", "assigned_users": ["user:1", "user:2", "user:3"],
         "steal_targets": ["user:4", "user:5"], "poll_interval_seconds": 0.5},
        {"id": "worker-002", "assigned_users": ["user:4", "user:5"],
         "steal_targets": ["user:1", "user:2", "user:3"], "poll_interval_seconds": 0.5},
    ],
    "queue": {"lease_timeout_seconds": 5},
    "TASK_MODULES": ["tests.testapp.django_tasks"],
}
# Django's task framework (django.tasks / the django_tasks backport) on fairque: tests/django/test_backend.py
TASKS = {
    "default": {
        "BACKEND": "fairque_django.backends.FairQueueBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"MAX_RETRIES": 1},
    },
}
