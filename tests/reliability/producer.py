"""The producer loop a user writes around ``TaskQueue.push`` when Redis may be briefly away."""

from __future__ import annotations

import threading
import time
from typing import Any

from fairque_django import RedisUnavailableError, Task, TaskQueue

from . import tasks
from .relconfig import user


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


class Producer(threading.Thread):
    """Pushes one task every ``interval`` s until stopped; records what push acknowledged."""

    def __init__(self, queue: TaskQueue, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.queue = queue
        self.interval = interval
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.duplicates = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                task = tasks.work.create_task((i, 0.005), user_id=user(i % 20))
                reply = push_with_retry(self.queue, task, give_up_after=30)
                self.duplicates += bool(reply["duplicate"])
                self.acked.append(task.task_id)
                i += 1
                time.sleep(self.interval)  # the scenario: a steady trickle of pushes
        except BaseException as exc:
            self.error = exc
