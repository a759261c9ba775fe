"""Settings of the example project: a small multi-tenant shop whose organisations are the
fairque tenants.

Environment variables (all optional):

``FAIRQUE_REDIS_URL``    Redis for the cache and the queue (default ``redis://127.0.0.1:6379/0``)
``FAIRQUE_KEY_PREFIX``   prefix of every fairque key (default ``fq``); the demo uses its own
``FAIRQUE_EXAMPLE_DB``   path of the SQLite database (default ``db.sqlite3`` next to ``manage.py``)
``DJANGO_SECRET_KEY``    secret key (the default is for local use only)
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-fairque-example-project-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "fairque_django",
    "shop",
    "demo",  # manage.py fairque_demo (python3 run.py demo)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.tenant = the Organization named by the request ...
    "shop.middleware.OrganizationMiddleware",
    # ... becomes the current fairque tenant: tasks enqueued by the view belong to it.
    "fairque_django.middleware.FairQueueTenantMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("FAIRQUE_EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
        # web process and workers share the file: wait for a lock instead of failing at once
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# --- Redis: one connection for the cache and the queue ------------------------------------------
FAIRQUE_REDIS_URL = os.environ.get("FAIRQUE_REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": FAIRQUE_REDIS_URL,
    }
}

# --- fairque ------------------------------------------------------------------------------------
# Every organisation is a tenant "org:<pk>" (Organization.fairque_user_id). worker-001 serves the
# odd-numbered organisations first, worker-002 the even-numbered ones; each steals from the
# other's organisations whenever its own have nothing ready, so neither idles while work waits.
_ODD = [f"org:*{d}" for d in "13579"]
_EVEN = [f"org:*{d}" for d in "02468"]

FAIRQUE = {
    "CACHE_ALIAS": "default",  # share django-redis' connection (and its LOCATION)
    "ENQUEUE_ON_COMMIT": True,  # a worker never sees a task about an uncommitted order
    "workers": [
        {"id": "worker-001", "assigned_users": _ODD, "steal_targets": ["org:*"], "max_concurrent_tasks": 4},
        {"id": "worker-002", "assigned_users": _EVEN, "steal_targets": ["org:*"], "max_concurrent_tasks": 4},
    ],
    "queue": {
        "stats_prefix": os.environ.get("FAIRQUE_KEY_PREFIX", "fq"),
        "default_max_retries": 3,
        "lease_timeout_seconds": 30,
        "xcom_ttl_seconds": 3600,
    },
}

# Django's task framework (django.tasks on Django 6, the django-tasks backport before) on fairque.
TASKS = {
    "default": {
        "BACKEND": "fairque_django.backends.FairQueueBackend",
    }
}
