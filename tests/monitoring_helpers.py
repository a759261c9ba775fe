"""Helpers of the monitoring tests (metrics, alerts, Prometheus, health): real in-process workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.worker import Worker

FAST = {"poll_interval_seconds": 0.1, "heartbeat_interval_seconds": 0.1, "graceful_shutdown_timeout": 2}


@contextmanager
def running_worker(config: FairQueueConfig, worker_id: str, **kw: Any) -> Iterator[Worker]:
    """A real core Worker serving ``worker_id`` in a thread until the block ends (clean stop)."""
    worker = Worker(config, worker_id=worker_id, install_signal_handlers=False, **kw)
    thread = threading.Thread(target=worker.start, name=f"test-{worker_id}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), f"worker {worker_id} did not stop"


def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}")
        time.sleep(interval)
