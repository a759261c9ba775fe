"""Root conftest: collects the documentation's code blocks as tests (tests/docs/snippets.py)."""

from __future__ import annotations

import pytest
from sybil.integration.pytest import SybilItem

from tests.docs.snippets import pytest_collect_file

__all__ = ["pytest_collect_file", "pytest_collection_modifyitems"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first block of each document is a transactional database test: pytest-django then sets
    up the test database even when only documents run, and starts the document on an empty one.
    The document's later blocks use that database with autocommit (DocProject unblocks it), so
    in-process worker threads see what a block created; DocProject flushes it at the end."""
    seen: set[str] = set()
    for item in items:
        if isinstance(item, SybilItem) and str(item.path) not in seen:
            seen.add(str(item.path))
            item.add_marker(pytest.mark.django_db(transaction=True))
