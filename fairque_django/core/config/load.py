"""Building a :class:`~.model.FairQueueConfig` from a mapping, a YAML file, the environment or
keywords (``create_default``), and back to plain data (``to_dict``).

:func:`collect` goes on after a bad section and returns every problem it found, as
:class:`~.kinds.Problem` data (the Django system checks list them); :func:`from_dict` raises
the first one, carrying all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Final, TypeVar

import yaml

from ..errors import ConfigurationError
from .kinds import Field, Problem, Section, at, item, join, map_item, problems_of, type_name, unknown_key
from .model import FairQueueConfig, QueueConfig, RedisConfig, WorkerConfig, default_redis
from .schema import FLOAT, QUEUE, REDIS, TOP_LEVEL_KEYS, USERS, WEIGHTS, WORKER, WORKER_ID
from .topology import Assignment, assignment_problems

__all__ = ["collect", "create_default", "from_dict", "from_yaml", "to_dict"]

T = TypeVar("T")

_PLACEHOLDER_RE: Final = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_PLACEHOLDER_BODY_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_WEIGHT: Final = Field("weight", FLOAT)


# --------------------------------------------------------------------------- env placeholders


def _expand(text: str, key: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """Expand ``${VAR}`` / ``${VAR:-default}`` (``$${`` is a literal ``${``).

    Returns the new text and whether any placeholder was substituted.
    """
    if "${" not in text:
        return text, False
    substituted = False

    def replace(found: re.Match[str]) -> str:
        nonlocal substituted
        if found.group() == "$${":
            return "${"
        body = found.group(1)
        if body is None:
            raise ConfigurationError(f"unterminated placeholder in {text!r}", key)
        parsed = _PLACEHOLDER_BODY_RE.fullmatch(body)
        if parsed is None:
            raise ConfigurationError(f"malformed placeholder '${{{body}}}'; use ${{VAR}} or ${{VAR:-default}}", key)
        substituted = True
        name, default = parsed.group(1), parsed.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigurationError(
                    f"environment variable {name!r} is not set (write '${{{name}:-default}}' to give a default)", key
                )
            return default
        return value

    return _PLACEHOLDER_RE.sub(replace, text), substituted


def _expand_weights(value: Mapping[Any, Any], key: str, env: Mapping[str, str]) -> dict[Any, Any]:
    weights: dict[Any, Any] = {}
    for user, weight in value.items():
        entry_key = map_item(key, user)
        if isinstance(user, str):
            user = _expand(user, entry_key, env)[0]
            entry_key = map_item(key, user)
        if user in weights:
            raise ConfigurationError("duplicate user id after expanding placeholders", entry_key)
        weights[user] = _from_raw(_WEIGHT, weight, entry_key, env)
    return weights


def _from_raw(spec: Field, value: object, key: str, env: Mapping[str, str] | None) -> object:
    """Expand placeholders in a raw field value and convert whole expansions to the field's kind."""
    if env is None:
        return value
    if isinstance(value, str):
        expanded, substituted = _expand(value, key, env)
        return spec.parse(expanded, value, key) if substituted else expanded
    if spec.kind is USERS and isinstance(value, (list, tuple)):
        return [_expand(v, item(key, i), env)[0] if isinstance(v, str) else v for i, v in enumerate(value)]
    if spec.kind is WEIGHTS and isinstance(value, Mapping):
        return _expand_weights(value, key, env)
    return value


def _escape_placeholders(text: str) -> str:
    return text.replace("${", "$${")


# --------------------------------------------------------------------------- sections


def _check_keys(raw: Mapping[Any, Any], allowed: Iterable[str], path: str) -> None:
    names = sorted(allowed)
    for name in raw:
        if not isinstance(name, str):
            raise ConfigurationError(f"keys must be strings, got {type_name(name)} ({name!r})", path or None)
        if name not in names:
            raise ConfigurationError(unknown_key(name, names), join(path, name))


def build(cls: type[T], section: Section, raw: object, path: str, env: Mapping[str, str] | None) -> T:
    """Build a section dataclass from a raw mapping, reporting errors under *path*."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"must be a mapping, not {type_name(raw)}", path)
    _check_keys(raw, section.names, path)
    for spec in section.fields:
        if spec.required and spec.name not in raw:
            raise ConfigurationError("is required", join(path, spec.name))
    kwargs = {name: _from_raw(section[name], value, join(path, name), env) for name, value in raw.items()}
    with at(path):
        return cls(**kwargs)


class _Collector:
    """The problems found so far, and the first error as raised (its type matters to callers)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.first: ConfigurationError | None = None

    def attempt(self, make: Callable[[], T]) -> T | None:
        try:
            return make()
        except ConfigurationError as exc:
            self.add(exc)
            return None

    def add(self, exc: ConfigurationError, more: Iterable[Problem] = ()) -> None:
        if self.first is None:
            self.first = exc
        self.problems.extend(problems_of(exc))
        self.problems.extend(more)

    def raise_first(self) -> None:
        if self.first is not None:
            self.first.problems = tuple(self.problems)  # type: ignore[attr-defined]
            raise self.first


def _raw_workers(data: Mapping[str, Any], found: _Collector) -> list[Any]:
    workers_raw = data.get("workers")
    if workers_raw is None:
        return []
    if not isinstance(workers_raw, (list, tuple)):
        found.add(ConfigurationError(f"must be a list of worker mappings, not {type_name(workers_raw)}", "workers"))
        return []
    return list(workers_raw)


def _raw_assignments(workers_raw: list[Any]) -> list[Assignment]:
    """The ids and assigned users of raw worker entries (for the cross-worker rules when some
    section did not build)."""
    out = []
    for index, raw in enumerate(workers_raw):
        if isinstance(raw, Mapping):
            users = raw.get("assigned_users")
            out.append(Assignment(index, raw.get("id"), users if isinstance(users, (list, tuple)) else ()))
    return out


def collect(
    data: object, *, worker_id: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[FairQueueConfig | None, list[Problem]]:
    """The configuration of *data* and no problems, or ``None`` and every problem found."""
    found = _Collector()
    config = _collect(data, worker_id, os.environ if environ is None else environ, found)
    return config, found.problems


def _collect(data: object, worker_id: str | None, env: Mapping[str, str], found: _Collector) -> FairQueueConfig | None:
    if not isinstance(data, Mapping):
        found.add(ConfigurationError(f"the configuration must be a mapping, not {type_name(data)}"))
        return None
    found.attempt(lambda: _check_keys(data, TOP_LEVEL_KEYS, ""))
    if found.first is not None:
        return None
    redis_raw = data.get("redis")
    redis = found.attempt(lambda: default_redis() if redis_raw is None else
                          build(RedisConfig, REDIS, redis_raw, "redis", env))
    workers_raw = _raw_workers(data, found)
    workers = [found.attempt(functools.partial(build, WorkerConfig, WORKER, raw, item("workers", index), env))
               for index, raw in enumerate(workers_raw)]
    queue_raw = data.get("queue")
    queue = found.attempt(lambda: QueueConfig() if queue_raw is None else build(QueueConfig, QUEUE, queue_raw,
                                                                               "queue", env))
    current: Any = worker_id
    if current is None:
        current = found.attempt(lambda: _from_raw(WORKER_ID, data.get("worker_id"), "worker_id", env))
    if found.first is not None:
        found.problems.extend(assignment_problems(_raw_assignments(workers_raw)))
        return None
    return found.attempt(lambda: FairQueueConfig(redis=redis, workers=tuple(workers), queue=queue,  # type: ignore[arg-type]
                                                 worker_id=current))


def from_dict(
    data: Mapping[str, Any], *, worker_id: str | None = None, environ: Mapping[str, str] | None = None
) -> FairQueueConfig:
    """See :meth:`FairQueueConfig.from_dict`."""
    found = _Collector()
    config = _collect(data, worker_id, os.environ if environ is None else environ, found)
    found.raise_first()
    assert config is not None
    return config


# --------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that rejects a key repeated in one mapping (YAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue
            if key in seen:
                first = seen[key].start_mark
                raise yaml.constructor.ConstructorError(
                    f"while constructing a mapping (first {key!r} at line {first.line + 1})",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The top-level mapping of a YAML configuration file, or raise naming the file."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigurationError(f"configuration file {filename!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read configuration file {filename!r}: {exc}") from exc
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigurationError(f"invalid YAML in configuration file {filename!r}{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"invalid YAML in configuration file {filename!r}: {exc}") from exc
    finally:
        loader.dispose()
    if data is None:
        raise ConfigurationError(f"configuration file {filename!r} is empty")
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"the top level of configuration file {filename!r} must be a mapping, not {type_name(data)}"
        )
    return data


def from_yaml(
    path: str | os.PathLike[str], *, worker_id: str | None = None, environ: Mapping[str, str] | None = None
) -> FairQueueConfig:
    """See :meth:`FairQueueConfig.from_yaml`."""
    data = read_yaml(path)
    try:
        return from_dict(data, worker_id=worker_id, environ=environ)
    except ConfigurationError as exc:
        add_note = getattr(exc, "add_note", None)  # Python 3.11+
        if add_note is not None:
            add_note(f"in configuration file {os.fspath(path)!r}")
        raise


# --------------------------------------------------------------------------- keywords and back


def _override_names() -> tuple[list[str], list[str]]:
    worker_fields = [n for n in WORKER.names if n not in ("id", "assigned_users", "steal_targets")]
    return worker_fields, list(QUEUE.names)


def _split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    worker_fields, queue_fields = _override_names()
    worker_kwargs: dict[str, Any] = {}
    queue_kwargs: dict[str, Any] = {}
    for name, value in overrides.items():
        if name in worker_fields:
            worker_kwargs[name] = value
        elif name in queue_fields:
            queue_kwargs[name] = value
        elif name not in ("redis", "queue"):
            allowed = sorted([*worker_fields, *queue_fields, "queue", "redis"])
            raise ConfigurationError(unknown_key(name, allowed, noun="create_default() option", listing="allowed"),
                                     name)
    return worker_kwargs, queue_kwargs


def _override_queue(value: object, queue_kwargs: dict[str, Any]) -> QueueConfig:
    if isinstance(value, QueueConfig):
        with at("queue"):
            return dataclasses.replace(value, **queue_kwargs)
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError(f"must be a QueueConfig or a mapping, not {type_name(value)}", "queue")
    return build(QueueConfig, QUEUE, {**(value or {}), **queue_kwargs}, "queue", None)


def _override_redis(value: object) -> RedisConfig:
    if value is None:
        return default_redis()
    if isinstance(value, RedisConfig):
        return value
    return build(RedisConfig, REDIS, value, "redis", None)


def create_default(
    worker_id: str = "worker-001",
    assigned_users: Iterable[str] = (),
    steal_targets: Iterable[str] = (),
    **overrides: Any,
) -> FairQueueConfig:
    """See :meth:`FairQueueConfig.create_default`."""
    worker_kwargs, queue_kwargs = _split_overrides(overrides)
    redis = _override_redis(overrides.get("redis"))
    queue = _override_queue(overrides.get("queue"), queue_kwargs)
    path = "workers[0]"
    users: dict[str, tuple[str, ...]] = {}
    for list_name, values in (("assigned_users", assigned_users), ("steal_targets", steal_targets)):
        if isinstance(values, str) or not isinstance(values, Iterable):
            WORKER[list_name].check(values, join(path, list_name))  # raises, naming the key
        users[list_name] = tuple(values)
    with at(path):
        worker = WorkerConfig(id=worker_id, assigned_users=users["assigned_users"],
                              steal_targets=users["steal_targets"], **worker_kwargs)
    return FairQueueConfig(redis=redis, workers=(worker,), queue=queue, worker_id=worker.id)


def _section_dict(obj: object, section: Section) -> dict[str, Any]:
    """Plain-data view of a section dataclass that ``from_dict`` accepts back unchanged."""
    out: dict[str, Any] = {}
    for name in section.names:
        value = getattr(obj, name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        elif isinstance(value, str):
            value = _escape_placeholders(value)
        out[name] = value
    return out


def to_dict(config: FairQueueConfig) -> dict[str, Any]:
    """See :meth:`FairQueueConfig.to_dict`."""
    return {
        "redis": _section_dict(config.redis, REDIS),
        "workers": [_section_dict(w, WORKER) for w in config.workers],
        "queue": _section_dict(config.queue, QUEUE),
        "worker_id": config.worker_id,
    }
