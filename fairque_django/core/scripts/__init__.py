"""The Lua scripts (one file per command under ``lua/``, assembled by :mod:`.loader`), their
registration with a client, and (in :mod:`.commands`) the arguments and replies of each.

The data flow of one call: a driver (``core/queue.py`` or ``core/aio.py``) asks
:mod:`.commands` for a script's arguments, runs it through ``core/transport.py`` and hands the
reply back to :mod:`.commands` to decode. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from redis.commands.core import AsyncScript, Script

from .loader import source

__all__ = ["SCRIPT_NAMES", "AsyncScripts", "Scripts", "source"]

SCRIPT_NAMES = ("push", "pop", "complete", "fail", "release", "extend", "requeue_dead", "delete",
                "alert_transition", "steal_sync", "progress", "schedule_tick", "tenant",
                "limits_sync", "cancel", "cancel_queued", "metrics_flush", "fold_idle", "ack_pop")


class Scripts:
    """The registered scripts of one client (``sha`` for EVALSHA; calling one loads it on NOSCRIPT)."""

    def __init__(self, client: Any) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(source(name)))

    push: Script
    pop: Script
    complete: Script
    fail: Script
    release: Script
    extend: Script
    requeue_dead: Script
    delete: Script
    alert_transition: Script
    steal_sync: Script
    progress: Script
    schedule_tick: Script
    tenant: Script
    limits_sync: Script
    cancel: Script
    cancel_queued: Script
    metrics_flush: Script
    fold_idle: Script
    ack_pop: Script


class AsyncScripts(Scripts):
    """The same scripts for a ``redis.asyncio`` client."""

    push: AsyncScript  # type: ignore[assignment]
    pop: AsyncScript  # type: ignore[assignment]
    complete: AsyncScript  # type: ignore[assignment]
    fail: AsyncScript  # type: ignore[assignment]
    release: AsyncScript  # type: ignore[assignment]
    extend: AsyncScript  # type: ignore[assignment]
    requeue_dead: AsyncScript  # type: ignore[assignment]
    delete: AsyncScript  # type: ignore[assignment]
    alert_transition: AsyncScript  # type: ignore[assignment]
    steal_sync: AsyncScript  # type: ignore[assignment]
    progress: AsyncScript  # type: ignore[assignment]
    schedule_tick: AsyncScript  # type: ignore[assignment]
    tenant: AsyncScript  # type: ignore[assignment]
    limits_sync: AsyncScript  # type: ignore[assignment]
    cancel: AsyncScript  # type: ignore[assignment]
    cancel_queued: AsyncScript  # type: ignore[assignment]
    metrics_flush: AsyncScript  # type: ignore[assignment]
    fold_idle: AsyncScript  # type: ignore[assignment]
    ack_pop: AsyncScript  # type: ignore[assignment]
