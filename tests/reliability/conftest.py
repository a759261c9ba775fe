"""Fixtures of the reliability suite (the shared ones, ``workers`` included: tests/support/fixtures.py)."""

from __future__ import annotations

import uuid

import pytest

from .helpers import SETTINGS


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test only (the database is flushed around each test anyway)."""
    return f"fqrel{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rel_env(redis_url: str, prefix: str) -> dict[str, str]:
    """Environment for worker subprocesses and :func:`relconfig.core_config` (tests add to it)."""
    return {"DJANGO_SETTINGS_MODULE": SETTINGS, "FAIRQUE_TEST_REDIS_URL": redis_url, "FAIRQUE_REL_LOG_URL": redis_url,
            "FAIRQUE_REL_PREFIX": prefix}


@pytest.fixture
def worker_env(rel_env: dict[str, str]) -> dict[str, str]:
    """The ``workers`` of this suite run with its settings and its environment: the same dict, so
    what a test adds to ``rel_env`` (e.g. a dedicated Redis) reaches the workers it starts later."""
    return rel_env
