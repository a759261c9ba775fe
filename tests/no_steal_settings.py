"""Test settings where nobody but worker-002 may serve ``user:*`` (starvation by configuration)."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import FAIRQUE as _BASE

FAIRQUE = {
    **_BASE,
    "workers": [
        {"id": "worker-001", "assigned_users": ["org:*"]},
        {"id": "worker-002", "assigned_users": ["user:*"], "steal_targets": ["org:*"]},
    ],
}
