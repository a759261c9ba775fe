"""The ``FAIRQUE`` setting of the reliability suite, built from environment variables.

A test gives its worker subprocesses short leases, its own key prefix or a dedicated Redis by
setting ``FAIRQUE_REL_*`` variables; the test process builds the same configuration from the
same mapping with :func:`core_config`, so both sides agree on every key and timing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fairque_django.core.config import FairQueueConfig

WORKER_IDS = ("rel-1", "rel-2", "rel-3", "rel-4")


def user(k: int) -> str:
    """The k-th test user; ``t<n>:*`` users are assigned to worker ``rel-<n>`` (4 partitions)."""
    return f"t{k % len(WORKER_IDS) + 1}:{k}"


def fairque_setting(env: Mapping[str, str]) -> dict[str, Any]:
    """``FAIRQUE`` for the given environment (defaults: 2 s leases, 0.5 s heartbeats)."""
    url = env.get("FAIRQUE_REL_REDIS_URL") or env["FAIRQUE_TEST_REDIS_URL"]
    heartbeat = float(env.get("FAIRQUE_REL_HEARTBEAT", "0.5"))
    workers = [
        {
            "id": wid,
            "assigned_users": [f"t{n}:*"],
            # every worker may serve every user: work-conserving whatever gets killed
            # (FAIRQUE_REL_STEAL: comma-separated steal targets, "" = none)
            "steal_targets": [s for s in env.get("FAIRQUE_REL_STEAL", "*").split(",") if s],
            "poll_interval_seconds": float(env.get("FAIRQUE_REL_POLL", "0.5")),
            "heartbeat_interval_seconds": heartbeat,
            "graceful_shutdown_timeout": float(env.get("FAIRQUE_REL_GRACEFUL", "10")),
            "max_concurrent_tasks": int(env.get("FAIRQUE_REL_CONCURRENCY", "4")),
        }
        for n, wid in enumerate(WORKER_IDS, 1)
    ]
    return {
        "redis": {
            # FAIRQUE_REL_CLUSTER_NODES: a Redis Cluster's startup nodes, "host:port,host:port"
            **({"cluster": True, "startup_nodes": env["FAIRQUE_REL_CLUSTER_NODES"].split(",")}
               if env.get("FAIRQUE_REL_CLUSTER_NODES") else {"url": url}),
            "socket_timeout": float(env.get("FAIRQUE_REL_SOCKET_TIMEOUT", "2")),
            "socket_connect_timeout": float(env.get("FAIRQUE_REL_SOCKET_TIMEOUT", "2")),
        },
        "workers": workers,
        "queue": {
            "stats_prefix": env.get("FAIRQUE_REL_PREFIX", "fqrel"),
            "lease_timeout_seconds": float(env.get("FAIRQUE_REL_LEASE", "2")),
            "default_max_retries": int(env.get("FAIRQUE_REL_MAX_RETRIES", "3")),
            "retry_backoff_base_seconds": float(env.get("FAIRQUE_REL_BACKOFF", "0.05")),
            "retry_backoff_max_seconds": 1.0,
            # orphan takeover (FAIRQUE_REL_ORPHANS=0: off; FAIRQUE_REL_ORPHAN_AFTER: seconds)
            **({"orphan_takeover": env["FAIRQUE_REL_ORPHANS"] == "1"} if "FAIRQUE_REL_ORPHANS" in env else {}),
            **({"orphan_after_seconds": float(env["FAIRQUE_REL_ORPHAN_AFTER"])}
               if env.get("FAIRQUE_REL_ORPHAN_AFTER") else {}),
            # tenant limits (FAIRQUE_REL_TENANT_LIMITS: the queue.tenant_limits mapping as JSON)
            **({"tenant_limits": json.loads(env["FAIRQUE_REL_TENANT_LIMITS"])}
               if env.get("FAIRQUE_REL_TENANT_LIMITS") else {}),
        },
        "TASK_MODULES": ["tests.reliability.tasks"],
    }


def core_config(env: Mapping[str, str]) -> FairQueueConfig:
    """The core configuration the workers started with ``env`` use."""
    sections = {k: v for k, v in fairque_setting(env).items() if not k.isupper()}
    return FairQueueConfig.from_dict(sections)
