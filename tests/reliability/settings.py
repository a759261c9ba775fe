"""Django settings of the reliability workers: the test settings with the ``FAIRQUE`` of
:mod:`tests.reliability.relconfig` (short leases, own prefix, optional dedicated Redis)."""

from __future__ import annotations

import os

from tests.reliability.relconfig import fairque_setting
from tests.settings import *  # noqa: F403

FAIRQUE = fairque_setting(os.environ)
