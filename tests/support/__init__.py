"""The test-support API, shared by every test directory (unit, integration, django, reliability, docs).

- ``wait``: :func:`eventually` (and :func:`eventually_async`), the one way to wait for a condition;
- ``fixtures``: the pytest fixtures (tests/conftest.py re-exports them): ``redis_client``,
  ``make_config``, ``workers``...;
- ``inprocess``: :func:`running_worker`, a real Worker in a thread;
- ``processes``: management commands and worker subprocesses (``Workers``, ``run_manage``);
- ``redis_url``: ``REDIS_URL``, the test Redis; ``redis_state``: what the server says of it;
- ``clock``: :class:`Clock`, for the functions that take the time as an argument.

Tests read state through the package's public API (``TaskQueue.get_task_state``, ``get_stats``,
``collect_metrics``, the DLQ API...); where a check needs more, it goes here, named and documented.
"""

from __future__ import annotations

from .clock import Clock
from .inprocess import FAST, running_worker
from .wait import eventually, eventually_async

__all__ = ["FAST", "Clock", "eventually", "eventually_async", "running_worker"]
