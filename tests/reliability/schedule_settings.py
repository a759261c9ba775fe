"""Settings of the schedule crash test's workers: the reliability settings plus a schedule that
ticks every second (``FAIRQUE_REL_SCHEDULE_EVERY``) for tenant ``t1:0``."""

from __future__ import annotations

import os

from tests.reliability.settings import *  # noqa: F403
from tests.reliability.settings import FAIRQUE

FAIRQUE = {
    **FAIRQUE,
    "TASK_MODULES": [*FAIRQUE["TASK_MODULES"], "tests.reliability.schedule_tasks"],
    "SCHEDULES": {
        "every-second": {"task": "tests.reliability.schedule_tasks.tick",
                         "every": int(os.environ.get("FAIRQUE_REL_SCHEDULE_EVERY", "1")), "user": "t1:0"},
    },
}
