"""A real core Worker in a thread of the test process (for tests that read what it does live)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.worker import Worker

# worker options that make heartbeats and polls fast enough for a test to see them at once
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
