"""The test Redis URL, resolved once per process: FAIRQUE_TEST_REDIS_URL (default DB 15 on
127.0.0.1:6379), or an embedded redis-server when nothing answers there."""

from __future__ import annotations

import os

from example_project.embedded_redis import ensure_redis

REDIS_URL = ensure_redis(os.environ.get("FAIRQUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
os.environ["FAIRQUE_TEST_REDIS_URL"] = REDIS_URL  # subprocesses (workers) use the same server
