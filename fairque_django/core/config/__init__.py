"""Typed, validated, immutable configuration (no Django imports).

A :class:`FairQueueConfig` is built once, from ``create_default(...)``, from a mapping
(``from_dict``, e.g. the ``FAIRQUE`` Django setting) or from a YAML file in the format of
the FairQueue README (``from_yaml``).  Every problem is reported as a
:class:`~fairque_django.core.errors.ConfigurationError` whose message starts with the
path of the offending key, e.g. ``workers[1].poll_interval_seconds: must be > 0 (got 0)``.

Configuration is static: worker ids, assigned users and steal targets never come from Redis.

* :mod:`.schema`: every field (name, kind, default, bounds, doc), declared once;
* :mod:`.kinds`: the machinery of the schema (kinds, fields, sections, problems, key paths);
* :mod:`.model`: the frozen dataclasses;
* :mod:`.load`: dict / YAML / environment placeholders / ``create_default`` / ``to_dict``;
* :mod:`.topology`: glob patterns, partitions, steal partitions, rules between workers.
"""

from __future__ import annotations

from ..ids import GLOB_CHARS, MAX_WORKER_ID_LENGTH, is_pattern
from .kinds import Field, Kind, Problem, Section, problems_of
from .load import collect, read_yaml
from .model import (
    FairQueueConfig,
    QueueConfig,
    RedisConfig,
    WorkerConfig,
    default_redis_provider,
    set_default_redis_provider,
)
from .schema import DEFAULT_MAX_USER_ID_LENGTH, FAIRNESS_MODES
from .topology import POOL_PARTITION, glob_match, glob_to_lua_pattern

__all__ = [
    "DEFAULT_MAX_USER_ID_LENGTH",
    "FAIRNESS_MODES",
    "GLOB_CHARS",
    "MAX_WORKER_ID_LENGTH",
    "POOL_PARTITION",
    "FairQueueConfig",
    "Field",
    "Kind",
    "Problem",
    "QueueConfig",
    "RedisConfig",
    "Section",
    "WorkerConfig",
    "collect",
    "default_redis_provider",
    "glob_match",
    "glob_to_lua_pattern",
    "is_pattern",
    "problems_of",
    "read_yaml",
    "set_default_redis_provider",
]
