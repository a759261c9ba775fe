"""Transitional: ``core/worker.py`` still imports these two names from here. They live in
:mod:`fairque_django.core.observe` now; delete this module once worker.py imports them from there."""

from .observe.liveness import mark_stopped
from .observe.samples import trim_throughput

__all__ = ["mark_stopped", "trim_throughput"]
