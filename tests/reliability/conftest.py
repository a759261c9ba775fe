"""Fixtures of the reliability suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .helpers import Workers


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test only (the database is flushed around each test anyway)."""
    return f"fqrel{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rel_env(redis_url: str, prefix: str) -> dict[str, str]:
    """Environment for worker subprocesses and :func:`relconfig.core_config` (tests add to it)."""
    return {"FAIRQUE_TEST_REDIS_URL": redis_url, "FAIRQUE_REL_LOG_URL": redis_url, "FAIRQUE_REL_PREFIX": prefix}


@pytest.fixture
def workers(redis_client: redis.Redis, rel_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Worker subprocesses; every one still running at the end is killed (before the flush)."""
    group = Workers(tmp_path, rel_env)
    yield group
    group.cleanup()
    if os.environ.get("FAIRQUE_REL_SHOW_LOGS"):
        for proc in group.started:
            print(f"--- {proc.log_path}\n{proc.log()[-3000:]}")
