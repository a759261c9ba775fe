"""Django signals sent by fairque_django.

``fairque_alert``
    Sent once per alert transition across all processes (see :mod:`fairque_django.alerts`),
    with ``sender`` the :class:`~fairque_django.alerts.AlertEvaluator` class and keyword
    arguments ``rule`` (the :class:`~fairque_django.core.observe.alert_rules.AlertRule`), ``state``
    (``"firing"`` or ``"resolved"``) and ``details`` (a JSON-ready dict: ``message``,
    ``value``, ``threshold``, ``since`` and rule-specific data such as ``tenants`` or
    ``workers``). Receivers run in the worker that saw the transition; one that raises is
    logged and does not stop the others.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["fairque_alert"]

fairque_alert = Signal()
