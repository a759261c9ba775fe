"""Root conftest: collects the documentation's code blocks as tests (tests/docs/snippets.py)."""

from tests.docs.snippets import pytest_collect_file

__all__ = ["pytest_collect_file"]
