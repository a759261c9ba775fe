"""The test PostgreSQL: ``FAIRQUE_TEST_POSTGRES_URL`` (default: role and database ``fairque`` on
127.0.0.1:5432, which ``.ci/run`` creates). The test settings give it the alias ``pg``; tests
marked ``postgres`` use it. When it does not answer they are skipped, except under ``CI=true``,
where they fail."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

POSTGRES_URL = os.environ.get("FAIRQUE_TEST_POSTGRES_URL", "postgresql://fairque:fairque@127.0.0.1:5432/fairque")
ALIAS = "pg"


def database_settings(url: str = POSTGRES_URL) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for a ``postgresql://user:password@host:port/name`` URL."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/")) or "fairque"
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # a name of its own: the worker subprocesses of a test connect to the same test database
        "TEST": {"NAME": os.environ.get("FAIRQUE_TEST_POSTGRES_DB", f"test_{name}")},
    }


def unreachable_reason(url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` when it answers."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc}); pip install 'psycopg[binary]'"
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        parts = urlsplit(url)
        return f"PostgreSQL at {parts.hostname}:{parts.port or 5432} does not answer: {exc}".strip()
    return None
