"""Tolerant decoding of Redis replies shared by the read model (a corrupt value reads as 0 / None)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from ..codec import text
from ..connection import is_cluster

# The server's clock read inside a pipeline, routed by a key: a cluster pipeline cannot send a
# keyless command such as TIME (it would not know which node), and a MULTI/EXEC one must stay on
# the slot of its keys. The reply is [seconds, microseconds], as TIME's.
_TIME_SCRIPT = "return redis.call('TIME')"


def time_command(client: Any, route_key: str) -> list[Any]:
    """The command that reads the server's clock in a pipeline of ``client``: TIME, or on a cluster
    a script routed by ``route_key`` (to the node of the pipeline's keys). Use it as
    ``pipe.execute_command(*time_command(client, key))``; its reply is (seconds, microseconds)."""
    return ["EVAL", _TIME_SCRIPT, 1, route_key] if is_cluster(client) else ["TIME"]


def to_int(value: Any) -> int:
    if value is None:
        return 0
    try:
        return int(float(text(value)))
    except (ValueError, OverflowError):  # garbage, nan, inf
        return 0


def to_float(value: Any) -> float | None:
    try:
        return float(text(value))
    except (TypeError, ValueError):
        return None


def floats(raw: Mapping[Any, Any]) -> dict[str, float]:
    """A hash of numbers as ``{text: float}``, dropping what is not a number."""
    out: dict[str, float] = {}
    for k, v in (raw or {}).items():
        f = to_float(v)
        if f is not None:
            out[text(k)] = f
    return out


def json_list(value: Any) -> list[Any]:
    try:
        data = json.loads(text(value)) if value is not None else []
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def replies(values: Sequence[Any], defaults: Sequence[Any]) -> list[Any]:
    """Pipeline replies with errors (e.g. WRONGTYPE on a corrupt key) replaced by defaults;
    a connection problem is raised as usual."""
    out = []
    for reply, default in zip(values, defaults, strict=True):
        if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
            raise reply
        out.append(default if isinstance(reply, Exception) else reply)
    return out
