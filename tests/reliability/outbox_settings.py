"""Django settings of outbox workers: the reliability settings on the test PostgreSQL database
(the one pytest-django created for the alias ``pg``) with ``ENQUEUE_MODE = "outbox"``, so every
``runfairworker`` runs the outbox relay."""

from __future__ import annotations

from tests.reliability.settings import *  # noqa: F403
from tests.reliability.settings import FAIRQUE as REL_FAIRQUE
from tests.support.postgres import database_settings

_PG = database_settings()
DATABASES = {"default": {**_PG, "NAME": _PG["TEST"]["NAME"]}}
FAIRQUE = {**REL_FAIRQUE, "ENQUEUE_MODE": "outbox", "OUTBOX_RELAY_INTERVAL": 0.2}
