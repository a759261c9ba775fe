"""Old home of the script arguments and replies, now :mod:`.scripts.commands`; these names stay
importable here for the modules that still import them from this path."""

from __future__ import annotations

from .scripts.commands import PRIORITY_PUSHED, STAT_FIELDS, PopPlan, chunks, stat_counters, stored_flags, task_fields
from .scripts.commands import Commands as QueueProtocol
from .scripts.commands import text as _text

__all__ = ["PRIORITY_PUSHED", "STAT_FIELDS", "PopPlan", "QueueProtocol", "_text", "chunks", "stat_counters",
           "stored_flags", "task_fields"]
