"""Test settings with alert rules, for runfairworker subprocesses (tests/django/test_alerts.py)."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import FAIRQUE as BASE

FAIRQUE = {
    **BASE,
    "workers": [{**w, "heartbeat_interval_seconds": 0.2} for w in BASE["workers"]],
    "ALERTS": [{"name": "dlq", "type": "dlq_size_above", "threshold": 0, "severity": "critical"}],
    "ALERT_INTERVAL": 0.3,
}
