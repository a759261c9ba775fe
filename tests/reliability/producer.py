"""The producer loop a user writes around ``TaskQueue.push`` when Redis may be briefly away."""

from __future__ import annotations

import time
from typing import Any

from fairque_django import RedisUnavailableError, Task, TaskQueue


def push_with_retry(queue: TaskQueue, task: Task, *, give_up_after: float = 60.0) -> dict[str, Any]:
    """Push ``task``, retrying with exponential backoff while Redis is unreachable.

    Retrying the same Task object is safe: push is idempotent by task id, so if an attempt
    reached Redis but its reply was lost, the retry answers ``duplicate=True`` and stores
    nothing new. Either answer means the task is stored.
    """
    deadline = time.monotonic() + give_up_after
    delay = 0.05
    while True:
        try:
            return queue.push(task)
        except RedisUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
