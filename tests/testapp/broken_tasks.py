"""A task module that does not import (tests/django/test_checks.py, E106). Imported only by that test."""

from __future__ import annotations

raise RuntimeError("this task module is broken on purpose")
