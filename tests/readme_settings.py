"""The test settings with the README's quick-start worker configuration (README.md, "Use it in
your project"), for the tests that follow the README literally."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import FAIRQUE as _BASE

FAIRQUE = {
    **_BASE,
    "workers": [
        {"id": "worker-001", "assigned_users": ["org:*"], "steal_targets": ["user:*"]},
        {"id": "worker-002", "assigned_users": ["user:*"], "steal_targets": ["org:*"]},
    ],
}
