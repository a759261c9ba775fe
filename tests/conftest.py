"""The shared fixtures (tests/support/fixtures.py), visible to every test directory, and the rule
for tests marked ``postgres`` (tests/support/postgres.py)."""

from __future__ import annotations

import os

import pytest

from tests.support.fixtures import (
    _fresh_django_conf,
    cluster,
    make_config,
    redis_client,
    redis_cluster,
    redis_config,
    redis_url,
    worker_env,
    workers,
)
from tests.support.postgres import unreachable_reason

__all__ = ["_fresh_django_conf", "cluster", "make_config", "pytest_collection_modifyitems", "pytest_runtest_setup",
           "redis_client", "redis_cluster", "redis_config", "redis_url", "worker_env", "workers"]

_POSTGRES_DOWN = pytest.StashKey[str]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """When PostgreSQL does not answer, its tests do not ask pytest-django for it (which would make
    every database test error) and are skipped, or failed under ``CI=true``."""
    marked = [item for item in items if item.get_closest_marker("postgres")]
    reason = unreachable_reason() if marked else None
    if reason is None:
        return
    ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    for item in marked:
        item.add_marker(pytest.mark.django_db(transaction=True), append=False)
        if ci:
            item.stash[_POSTGRES_DOWN] = reason
        else:
            item.add_marker(pytest.mark.skip(reason=f"{reason} (set FAIRQUE_TEST_POSTGRES_URL; .ci/run starts it)"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = item.stash.get(_POSTGRES_DOWN, None)
    if reason is not None:
        pytest.fail(f"CI=true and the test PostgreSQL is needed: {reason}", pytrace=False)
