"""Typed, validated, immutable configuration (no Django imports).

A :class:`FairQueueConfig` is built once, from ``create_default(...)``, from a mapping
(``from_dict``, e.g. the ``FAIRQUE`` Django setting) or from a YAML file in the format of
the FairQueue README (``from_yaml``).  Every problem is reported as a
:class:`~fairque_django.core.exceptions.ConfigurationError` whose message starts with the
path of the offending key, e.g. ``workers[1].poll_interval_seconds: must be > 0 (got 0)``.

Configuration is static: worker ids, assigned users and steal targets never come from
Redis.  An entry of ``assigned_users``/``steal_targets`` containing ``*`` or ``?`` is a
glob pattern (only those two wildcards; ``[`` is literal).  A user that no worker is
assigned to lives in the shared :data:`POOL_PARTITION`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import re
import types
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from .exceptions import ConfigurationError, UnknownWorkerError

__all__ = [
    "DEFAULT_MAX_USER_ID_LENGTH",
    "FAIRNESS_MODES",
    "GLOB_CHARS",
    "POOL_PARTITION",
    "FairQueueConfig",
    "QueueConfig",
    "RedisConfig",
    "WorkerConfig",
    "glob_match",
    "glob_to_lua_pattern",
    "is_pattern",
    "set_default_redis_provider",
]

GLOB_CHARS: Final = "*?"
"""Characters that make an ``assigned_users``/``steal_targets`` entry a glob pattern."""

POOL_PARTITION: Final = "~pool"
"""Partition of users that no worker is assigned to (worker ids may not start with ``~``)."""

DEFAULT_MAX_USER_ID_LENGTH: Final = 200
FAIRNESS_MODES: Final = ("count", "time")
MAX_WORKER_ID_LENGTH: Final = 200

_LUA_MAGIC: Final = "^$()%.[]*+-?"
_OWNER_CACHE_SIZE: Final = 16_384
_URL_SCHEMES: Final = ("redis", "rediss", "unix")

# Characters never allowed in ids: braces would break the "{prefix}" hash tag, whitespace
# and control characters make keys and logs ambiguous.
_BAD_CHARS_RE: Final = re.compile(r"[{}\s\x00-\x1f\x7f-\x9f]")


# --------------------------------------------------------------------------- patterns


def is_pattern(user: str) -> bool:
    """True if *user* is a glob pattern (contains ``*`` or ``?``)."""
    return any(ch in user for ch in GLOB_CHARS)


@functools.lru_cache(maxsize=1024)
def _compile_glob(glob: str) -> re.Pattern[bytes]:
    # Matching works on UTF-8 bytes so that "?" means exactly what "." means in the
    # Lua pattern produced by glob_to_lua_pattern (Lua strings are byte strings).
    parts: list[bytes] = []
    for byte in glob.encode("utf-8", "surrogatepass"):
        if byte == 0x2A:  # "*"
            parts.append(b".*")
        elif byte == 0x3F:  # "?"
            parts.append(b".")
        else:
            parts.append(re.escape(bytes((byte,))))
    return re.compile(b"".join(parts), re.DOTALL)


def glob_match(glob: str, user_id: str) -> bool:
    """Whether *user_id* matches *glob* (``*`` any run, ``?`` one byte, rest literal)."""
    return _compile_glob(glob).fullmatch(user_id.encode("utf-8", "surrogatepass")) is not None


def glob_to_lua_pattern(glob: str) -> str:
    """Convert a glob such as ``tenant:*`` into the anchored Lua pattern ``^tenant:.*$``."""
    out: list[str] = ["^"]
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in _LUA_MAGIC:
            out.append("%" + ch)
        else:
            out.append(ch)
    out.append("$")
    return "".join(out)


# --------------------------------------------------------------------------- key paths

# The key path of the section being built, so that errors raised from __post_init__ name
# e.g. "workers[1].poll_interval_seconds" rather than a context-free field name.
_PATH: ContextVar[str | None] = ContextVar("fairque_config_path", default=None)


@contextmanager
def _at(path: str) -> Iterator[None]:
    token = _PATH.set(path)
    try:
        yield
    finally:
        _PATH.reset(token)


def _base(default: str) -> str:
    path = _PATH.get()
    return default if path is None else path


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _item(base: str, index: int) -> str:
    return f"{base}[{index}]"


def _map_item(base: str, key: object) -> str:
    quoted = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else repr(key)
    return f"{base}[{quoted}]"


# --------------------------------------------------------------------------- validation


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


_KIND_NAMES: Final = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true/false)",
    "users": "a list of user ids",
    "weights": "a mapping of user id to weight",
}

_TYPE_KINDS: Final = {
    "str": "str",
    "str | None": "opt_str",
    "int": "int",
    "int | None": "opt_int",
    "float": "float",
    "float | None": "opt_float",
    "bool": "bool",
    "tuple[str, ...]": "users",
    "Mapping[str, float]": "weights",
}


_FIELD_KINDS: dict[type[Any], Mapping[str, str]] = {}


def _field_kinds(cls: type[Any]) -> Mapping[str, str]:
    """Init fields of a section dataclass mapped to their value kind."""
    kinds = _FIELD_KINDS.get(cls)
    if kinds is None:
        kinds = types.MappingProxyType(
            {f.name: _TYPE_KINDS[str(f.type)] for f in dataclasses.fields(cls) if f.init}
        )
        _FIELD_KINDS[cls] = kinds
    return kinds


def _required_fields(cls: type[Any]) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def _bad_char(text: str) -> str | None:
    found = _BAD_CHARS_RE.search(text)
    if found is not None:
        return found.group()
    if not text.isascii():
        for ch in text:
            if unicodedata.category(ch).startswith("C"):
                return ch
    return None


def _describe_char(ch: str) -> str:
    if ch in "{}":
        return repr(ch)
    return f"{ch!r} (U+{ord(ch):04X})"


def _check_user_id(value: object, key: str, *, allow_pattern: bool = True) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"user id must be a string, not {_type_name(value)}", key)
    if not value:
        raise ConfigurationError("user id must not be empty", key)
    bad = _bad_char(value)
    if bad is not None:
        raise ConfigurationError(
            f"user id {value!r} contains the forbidden character {_describe_char(bad)} "
            "(no braces, whitespace or control characters)",
            key,
        )
    if not allow_pattern and is_pattern(value):
        raise ConfigurationError(f"{value!r}: glob patterns are not allowed here", key)
    return value


def _check_worker_id(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"worker id must be a string, not {_type_name(value)}", key)
    if not value:
        raise ConfigurationError("worker id must not be empty", key)
    bad = _bad_char(value)
    if bad is not None:
        raise ConfigurationError(
            f"worker id {value!r} contains the forbidden character {_describe_char(bad)} "
            "(no braces, whitespace or control characters)",
            key,
        )
    if value.startswith("~"):
        raise ConfigurationError(
            f"worker id {value!r} must not start with '~' (reserved for {POOL_PARTITION!r})", key
        )
    if len(value) > MAX_WORKER_ID_LENGTH:
        raise ConfigurationError(
            f"worker id is {len(value)} characters long; the maximum is {MAX_WORKER_ID_LENGTH}",
            key,
        )
    return value


def _check_user_list(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(
            f"must be a list of user ids, not {_type_name(value)}"
            + (f" ({value!r}); write [{value!r}]" if isinstance(value, str) else ""),
            key,
        )
    seen: dict[str, int] = {}
    for index, entry in enumerate(value):
        user = _check_user_id(entry, _item(key, index))
        first = seen.setdefault(user, index)
        if first != index:
            raise ConfigurationError(
                f"duplicate entry {user!r} (also at {_item(key, first)})", _item(key, index)
            )
    return tuple(value)


def _check_weights(value: object, key: str) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"must be a mapping of user id to weight, not {_type_name(value)}", key)
    weights: dict[str, float] = {}
    for user, weight in value.items():
        entry_key = _map_item(key, user)
        _check_user_id(user, entry_key, allow_pattern=False)
        number = _check_kind("float", weight, entry_key)
        assert isinstance(number, float)
        if number <= 0:
            raise ConfigurationError(f"weight must be > 0 (got {weight!r})", entry_key)
        weights[user] = number
    return types.MappingProxyType(weights)


def _check_kind(kind: str, value: object, key: str) -> object:
    """Type-check *value* for a field of *kind*; return the normalised value."""
    if kind == "users":
        return _check_user_list(value, key)
    if kind == "weights":
        return _check_weights(value, key)
    optional = kind.startswith("opt_")
    base = kind.removeprefix("opt_")
    if value is None:
        if optional:
            return None
        raise ConfigurationError(f"must be {_KIND_NAMES[base]}, not None", key)
    ok: bool
    if base == "str":
        ok = isinstance(value, str)
    elif base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConfigurationError(
            f"must be {_KIND_NAMES[base]}{' or null' if optional else ''}, "
            f"not {_type_name(value)} ({value!r})",
            key,
        )
    if base == "float":
        assert isinstance(value, (int, float))
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigurationError(f"must be a finite number (got {value!r})", key)
        return number
    return value


def _normalize_fields(obj: object, base: str) -> None:
    """Type-check every init field of *obj* in place (lists -> tuples, ints -> floats)."""
    for name, kind in _field_kinds(type(obj)).items():
        value = getattr(obj, name)
        normalized = _check_kind(kind, value, _join(base, name))
        if normalized is not value:
            object.__setattr__(obj, name, normalized)


def _require(ok: bool, message: str, key: str) -> None:
    if not ok:
        raise ConfigurationError(message, key)


def _positive(obj: object, base: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            _require(value > 0, f"must be > 0 (got {value!r})", _join(base, name))


def _at_least(obj: object, base: str, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            _require(value >= minimum, f"must be >= {minimum} (got {value!r})", _join(base, name))


def _section_dict(obj: object) -> dict[str, Any]:
    """Plain-data view of a section dataclass that ``from_dict`` accepts back unchanged."""
    out: dict[str, Any] = {}
    for name in _field_kinds(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, str):
            value = _escape_placeholders(value)
        out[name] = value
    return out


def _init_kwargs(obj: object) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}  # type: ignore[arg-type]


def _rebuild(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    """Unpickle helper: re-create (and re-validate) a config object from its init fields."""
    return cls(**kwargs)


def _reduce(obj: object) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    kwargs = _init_kwargs(obj)
    for name, value in kwargs.items():
        if isinstance(value, types.MappingProxyType):
            kwargs[name] = dict(value)
    return _rebuild, (type(obj), kwargs)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True, repr=False)
class RedisConfig:
    """How to reach Redis; ``url``, when set, wins over host/port/db/password/username/ssl."""

    host: str = "localhost"
    port: int = 6379
    db: int = 0
    password: str | None = None
    username: str | None = None
    url: str | None = None
    ssl: bool = False
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    health_check_interval: float = 30.0
    max_connections: int | None = None

    def __post_init__(self) -> None:
        base = _base("redis")
        _normalize_fields(self, base)
        _require(bool(self.host), "must not be empty", _join(base, "host"))
        bad = _bad_char(self.host)
        _require(
            bad is None,
            f"contains the forbidden character {_describe_char(bad or ' ')}",
            _join(base, "host"),
        )
        _require(
            1 <= self.port <= 65535,
            f"must be between 1 and 65535 (got {self.port})",
            _join(base, "port"),
        )
        _require(0 <= self.db <= 15, f"must be between 0 and 15 (got {self.db})", _join(base, "db"))
        _positive(self, base, "socket_timeout", "socket_connect_timeout")
        _at_least(self, base, 0, "health_check_interval")
        _at_least(self, base, 1, "max_connections")
        if self.url is not None:
            scheme = urlsplit(self.url).scheme
            _require(
                scheme in _URL_SCHEMES,
                f"must start with one of {', '.join(s + '://' for s in _URL_SCHEMES)} "
                f"(got scheme {scheme!r})",
                _join(base, "url"),
            )

    def __repr__(self) -> str:
        shown = {name: getattr(self, name) for name in _field_kinds(RedisConfig)}
        if shown["password"] is not None:
            shown["password"] = "***"
        if shown["url"] is not None:
            shown["url"] = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", shown["url"])
        return "RedisConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self)

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "health_check_interval": self.health_check_interval,
            "max_connections": self.max_connections,
            "decode_responses": False,
        }

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis(**kwargs)`` (ignores ``url``)."""
        return {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "password": self.password,
            "username": self.username,
            "ssl": self.ssl,
            **self._common_kwargs(),
        }

    def url_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(self.url, **kwargs)``."""
        return self._common_kwargs()


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker: the users it serves first and the users it may steal from."""

    id: str
    assigned_users: tuple[str, ...] = ()
    steal_targets: tuple[str, ...] = ()
    poll_interval_seconds: float = 1.0
    max_concurrent_tasks: int = 10
    task_timeout_seconds: float | None = None
    graceful_shutdown_timeout: float = 30.0
    heartbeat_interval_seconds: float = 5.0
    # Derived lookup structures (not part of equality, repr or the public constructor).
    _assigned_exact: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _assigned_patterns: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _steal_exact: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _steal_patterns: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = _base("worker")
        _check_worker_id(self.id, _join(base, "id"))
        _normalize_fields(self, base)
        _positive(
            self,
            base,
            "poll_interval_seconds",
            "task_timeout_seconds",
            "graceful_shutdown_timeout",
            "heartbeat_interval_seconds",
        )
        _at_least(self, base, 1, "max_concurrent_tasks")
        assigned = frozenset(self.assigned_users)
        for index, user in enumerate(self.steal_targets):
            if user in assigned:
                raise ConfigurationError(
                    f"{user!r} is both in assigned_users and in steal_targets of worker {self.id!r}",
                    _item(_join(base, "steal_targets"), index),
                )
        object.__setattr__(self, "_assigned_exact", frozenset(u for u in assigned if not is_pattern(u)))
        object.__setattr__(self, "_assigned_patterns", tuple(u for u in self.assigned_users if is_pattern(u)))
        object.__setattr__(
            self, "_steal_exact", frozenset(u for u in self.steal_targets if not is_pattern(u))
        )
        object.__setattr__(self, "_steal_patterns", tuple(u for u in self.steal_targets if is_pattern(u)))

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self)

    @property
    def assigned_exact(self) -> frozenset[str]:
        """The non-pattern entries of ``assigned_users``."""
        return self._assigned_exact

    @property
    def assigned_patterns(self) -> tuple[str, ...]:
        """The glob entries of ``assigned_users``, in configuration order."""
        return self._assigned_patterns

    @property
    def steal_exact(self) -> frozenset[str]:
        """The non-pattern entries of ``steal_targets``."""
        return self._steal_exact

    @property
    def steal_patterns(self) -> tuple[str, ...]:
        """The glob entries of ``steal_targets``, in configuration order."""
        return self._steal_patterns

    def serves_assigned(self, user_id: str) -> bool:
        """Whether *user_id* is in ``assigned_users`` (exactly or by a glob pattern)."""
        return user_id in self._assigned_exact or any(glob_match(p, user_id) for p in self._assigned_patterns)

    def may_steal(self, user_id: str) -> bool:
        """Whether *user_id* is in ``steal_targets`` (exactly or by a glob pattern)."""
        return user_id in self._steal_exact or any(glob_match(p, user_id) for p in self._steal_patterns)


def _empty_weights() -> Mapping[str, float]:
    return types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Queue-wide settings; every Redis key lives under the ``{stats_prefix}:`` hash tag."""

    stats_prefix: str = "fq"
    default_max_retries: int = 3
    enable_pipeline_optimization: bool = True
    xcom_ttl_seconds: int = 3600
    lease_timeout_seconds: float = 30.0
    retry_backoff_base_seconds: float = 1.0
    retry_backoff_max_seconds: float = 300.0
    max_payload_bytes: int = 1_048_576
    max_user_id_length: int = DEFAULT_MAX_USER_ID_LENGTH
    result_ttl_seconds: int = 3600
    store_results: bool = True
    batch_size: int = 1000
    # hash=False: a mapping is not hashable, and equal configs still hash equal without it.
    user_weights: Mapping[str, float] = field(default_factory=_empty_weights, hash=False)
    fairness: str = "count"
    metrics: bool = True

    def __post_init__(self) -> None:
        base = _base("queue")
        _normalize_fields(self, base)
        prefix_key = _join(base, "stats_prefix")
        _require(bool(self.stats_prefix), "must not be empty", prefix_key)
        bad = _bad_char(self.stats_prefix)
        _require(
            bad is None,
            f"{self.stats_prefix!r} contains the forbidden character "
            f"{_describe_char(bad or ' ')} (no braces, whitespace or control characters)",
            prefix_key,
        )
        _at_least(self, base, 0, "default_max_retries")
        _at_least(
            self,
            base,
            1,
            "xcom_ttl_seconds",
            "max_payload_bytes",
            "max_user_id_length",
            "result_ttl_seconds",
            "batch_size",
        )
        _positive(self, base, "lease_timeout_seconds")
        _at_least(self, base, 0, "retry_backoff_base_seconds", "retry_backoff_max_seconds")
        _require(
            self.fairness in FAIRNESS_MODES,
            f"must be one of {', '.join(map(repr, FAIRNESS_MODES))} (got {self.fairness!r})",
            _join(base, "fairness"),
        )

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self)


# --------------------------------------------------------------------------- default redis

_default_redis_provider: Callable[[], RedisConfig] | None = None


def set_default_redis_provider(provider: Callable[[], RedisConfig] | None) -> None:
    """Set (or clear with ``None``) the source of the Redis settings used when none are given.

    The Django adapter points this at the project's Redis connection settings; without a
    provider the default is ``RedisConfig()``.
    """
    global _default_redis_provider
    _default_redis_provider = provider


def _default_redis() -> RedisConfig:
    provider = _default_redis_provider
    if provider is None:
        return RedisConfig()
    with _at("redis"):
        result = provider()
    if not isinstance(result, RedisConfig):
        raise ConfigurationError(
            f"the default redis provider returned {_type_name(result)}, not RedisConfig", "redis"
        )
    return result


# --------------------------------------------------------------------------- owner index


class _OwnerIndex:
    """Lookup tables derived once from the workers: O(1) owner of an exact user id."""

    __slots__ = ("by_id", "exact", "match", "patterns", "steal_cache")

    def __init__(
        self,
        workers: tuple[WorkerConfig, ...],
        exact: dict[str, str],
        patterns: tuple[tuple[str, str], ...],
    ) -> None:
        self.by_id = {w.id: w for w in workers}
        self.exact = exact
        self.patterns = patterns
        compiled = tuple((_compile_glob(glob), wid) for glob, wid in patterns)

        def match(user_id: str) -> str | None:
            data = user_id.encode("utf-8", "surrogatepass")
            for regex, wid in compiled:
                if regex.fullmatch(data) is not None:
                    return wid
            return None

        self.match: Callable[[str], str | None] = functools.lru_cache(maxsize=_OWNER_CACHE_SIZE)(match)
        self.steal_cache: dict[str, tuple[str, ...]] = {}

    def owner_of(self, user_id: str) -> str | None:
        owner = self.exact.get(user_id)
        if owner is not None or not self.patterns:
            return owner
        return self.match(user_id)


# --------------------------------------------------------------------------- env placeholders

_PLACEHOLDER_RE: Final = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_PLACEHOLDER_BODY_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


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
            raise ConfigurationError(
                f"malformed placeholder '${{{body}}}'; use ${{VAR}} or ${{VAR:-default}}", key
            )
        substituted = True
        name, default = parsed.group(1), parsed.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigurationError(
                    f"environment variable {name!r} is not set (write '${{{name}:-default}}' "
                    "to give a default)",
                    key,
                )
            return default
        return value

    return _PLACEHOLDER_RE.sub(replace, text), substituted


def _escape_placeholders(text: str) -> str:
    return text.replace("${", "$${")


def _convert(kind: str, text: str, raw: str, key: str) -> object:
    """Convert the expansion of a placeholder string to the type the field expects."""
    optional = kind.startswith("opt_")
    base = kind.removeprefix("opt_")
    stripped = text.strip()
    if optional and not stripped:
        return None
    if base in ("str", "weights"):
        return text
    if base == "users":
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        if base == "int":
            return int(stripped, 10)
        if base == "float":
            return float(stripped)
    except ValueError:
        pass
    if base == "bool":
        lowered = stripped.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ConfigurationError(f"cannot convert {text!r} (from {raw!r}) to {_KIND_NAMES[base]}", key)


def _from_raw(kind: str, value: object, key: str, env: Mapping[str, str] | None) -> object:
    """Expand placeholders in a raw field value and convert whole expansions to the field type."""
    if env is None:
        return value
    if isinstance(value, str):
        expanded, substituted = _expand(value, key, env)
        return _convert(kind, expanded, value, key) if substituted else expanded
    if kind == "users" and isinstance(value, (list, tuple)):
        return [_expand(v, _item(key, i), env)[0] if isinstance(v, str) else v for i, v in enumerate(value)]
    if kind == "weights" and isinstance(value, Mapping):
        weights: dict[Any, Any] = {}
        for user, weight in value.items():
            entry_key = _map_item(key, user)
            if isinstance(user, str):
                user = _expand(user, entry_key, env)[0]
                entry_key = _map_item(key, user)
            if user in weights:
                raise ConfigurationError("duplicate user id after expanding placeholders", entry_key)
            weights[user] = _from_raw("float", weight, entry_key, env)
        return weights
    return value


def _check_keys(raw: Mapping[Any, Any], allowed: Iterable[str], path: str) -> None:
    names = sorted(allowed)
    for name in raw:
        if not isinstance(name, str):
            raise ConfigurationError(f"keys must be strings, got {_type_name(name)} ({name!r})", path or None)
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"unknown key {name!r}{hint} (allowed keys: {', '.join(names)})",
                _join(path, name),
            )


def _build(cls: type[Any], raw: object, path: str, env: Mapping[str, str] | None) -> Any:
    """Build a section dataclass from a raw mapping, reporting errors under *path*."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"must be a mapping, not {_type_name(raw)}", path)
    kinds = _field_kinds(cls)
    _check_keys(raw, kinds, path)
    for name in _required_fields(cls):
        if name not in raw:
            raise ConfigurationError("is required", _join(path, name))
    kwargs = {name: _from_raw(kinds[name], value, _join(path, name), env) for name, value in raw.items()}
    with _at(path):
        return cls(**kwargs)


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


# --------------------------------------------------------------------------- top level

_TOP_LEVEL_KEYS: Final = ("queue", "redis", "worker_id", "workers")


@dataclass(frozen=True, slots=True)
class FairQueueConfig:
    """The whole configuration: Redis, the static set of workers, queue settings.

    ``worker_id`` names the worker of the current process (``runfairworker <id>``).
    """

    redis: RedisConfig = field(default_factory=_default_redis)
    workers: tuple[WorkerConfig, ...] = ()
    queue: QueueConfig = field(default_factory=QueueConfig)
    worker_id: str | None = None
    # Derived once in __post_init__; not part of equality, repr or the constructor.
    _index: _OwnerIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.redis, RedisConfig):
            raise ConfigurationError(f"must be a RedisConfig, not {_type_name(self.redis)}", "redis")
        if not isinstance(self.queue, QueueConfig):
            raise ConfigurationError(f"must be a QueueConfig, not {_type_name(self.queue)}", "queue")
        if isinstance(self.workers, list):
            object.__setattr__(self, "workers", tuple(self.workers))
        if not isinstance(self.workers, tuple):
            raise ConfigurationError(
                f"must be a list of WorkerConfig, not {_type_name(self.workers)}", "workers"
            )
        max_len = self.queue.max_user_id_length
        first_index: dict[str, int] = {}
        exact: dict[str, str] = {}
        exact_index: dict[str, int] = {}
        patterns: list[tuple[str, str]] = []
        for index, worker in enumerate(self.workers):
            path = _item("workers", index)
            if not isinstance(worker, WorkerConfig):
                raise ConfigurationError(f"must be a WorkerConfig, not {_type_name(worker)}", path)
            first = first_index.setdefault(worker.id, index)
            if first != index:
                raise ConfigurationError(
                    f"duplicate worker id {worker.id!r} (also workers[{first}].id)",
                    _join(path, "id"),
                )
            for list_name in ("assigned_users", "steal_targets"):
                for pos, user in enumerate(getattr(worker, list_name)):
                    if len(user) > max_len:
                        raise ConfigurationError(
                            f"user id is {len(user)} characters long; the maximum is {max_len} "
                            "(queue.max_user_id_length)",
                            _item(_join(path, list_name), pos),
                        )
            for pos, user in enumerate(worker.assigned_users):
                if is_pattern(user):
                    patterns.append((user, worker.id))
                    continue
                owner = exact.setdefault(user, worker.id)
                if owner != worker.id:
                    raise ConfigurationError(
                        f"user {user!r} is assigned to both worker {owner!r} "
                        f"(workers[{exact_index[user]}]) and worker {worker.id!r} "
                        f"(workers[{index}])",
                        _item(_join(path, "assigned_users"), pos),
                    )
                exact_index.setdefault(user, index)
        for user in self.queue.user_weights:
            if len(user) > max_len:
                raise ConfigurationError(
                    f"user id is {len(user)} characters long; the maximum is {max_len}",
                    _map_item("queue.user_weights", user),
                )
        if self.worker_id is not None:
            _check_worker_id(self.worker_id, "worker_id")
            if self.workers and self.worker_id not in first_index:
                raise UnknownWorkerError(self.worker_id, list(first_index))
        object.__setattr__(self, "_index", _OwnerIndex(self.workers, exact, tuple(patterns)))

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def create_default(
        cls,
        worker_id: str = "worker-001",
        assigned_users: Iterable[str] = (),
        steal_targets: Iterable[str] = (),
        **overrides: Any,
    ) -> FairQueueConfig:
        """A single-worker configuration (the README's ``create_default``).

        *overrides* may name any :class:`WorkerConfig` field (``poll_interval_seconds=0.1``),
        any :class:`QueueConfig` field (``xcom_ttl_seconds=10``), ``redis=`` (a
        :class:`RedisConfig` or a mapping) and ``queue=`` (a :class:`QueueConfig` or a
        mapping; individual queue-field keywords are applied on top of it).
        """
        worker_fields = [
            n for n in _field_kinds(WorkerConfig) if n not in ("id", "assigned_users", "steal_targets")
        ]
        queue_fields = list(_field_kinds(QueueConfig))
        worker_kwargs: dict[str, Any] = {}
        queue_kwargs: dict[str, Any] = {}
        for name, value in overrides.items():
            if name in worker_fields:
                worker_kwargs[name] = value
            elif name in queue_fields:
                queue_kwargs[name] = value
            elif name not in ("redis", "queue"):
                allowed = sorted([*worker_fields, *queue_fields, "queue", "redis"])
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(
                    f"unknown create_default() option {name!r}{hint} (allowed: {', '.join(allowed)})",
                    name,
                )

        redis_value = overrides.get("redis")
        redis: RedisConfig
        if redis_value is None:
            redis = _default_redis()
        elif isinstance(redis_value, RedisConfig):
            redis = redis_value
        else:
            redis = _build(RedisConfig, redis_value, "redis", None)

        queue_value = overrides.get("queue")
        queue: QueueConfig
        if isinstance(queue_value, QueueConfig):
            with _at("queue"):
                queue = dataclasses.replace(queue_value, **queue_kwargs)
        else:
            if queue_value is not None and not isinstance(queue_value, Mapping):
                raise ConfigurationError(
                    f"must be a QueueConfig or a mapping, not {_type_name(queue_value)}", "queue"
                )
            queue = _build(QueueConfig, {**(queue_value or {}), **queue_kwargs}, "queue", None)

        path = "workers[0]"
        users: dict[str, tuple[str, ...]] = {}
        for list_name, values in (
            ("assigned_users", assigned_users),
            ("steal_targets", steal_targets),
        ):
            if isinstance(values, str) or not isinstance(values, Iterable):
                _check_user_list(values, _join(path, list_name))  # raises, naming the key
            users[list_name] = tuple(values)
        with _at(path):
            worker = WorkerConfig(
                id=worker_id,
                assigned_users=users["assigned_users"],
                steal_targets=users["steal_targets"],
                **worker_kwargs,
            )
        return cls(redis=redis, workers=(worker,), queue=queue, worker_id=worker.id)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        worker_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> FairQueueConfig:
        """Build from a mapping with sections ``redis``, ``workers``, ``queue`` and ``worker_id``.

        Strings may contain ``${VAR}`` / ``${VAR:-default}`` placeholders, looked up in
        *environ* (default ``os.environ``); a value that contains a placeholder is then
        converted to the field's type (``port: "${REDIS_PORT}"``; an empty expansion of an
        optional field is ``None``; a list field is split on commas).  ``$${`` is a literal
        ``${``.  A missing ``redis`` section uses the default redis provider.  *worker_id*
        overrides the ``worker_id`` key.
        """
        env: Mapping[str, str] = os.environ if environ is None else environ
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"the configuration must be a mapping, not {_type_name(data)}")
        _check_keys(data, _TOP_LEVEL_KEYS, "")

        redis_raw = data.get("redis")
        redis = _default_redis() if redis_raw is None else _build(RedisConfig, redis_raw, "redis", env)

        workers_raw = data.get("workers")
        if workers_raw is None:
            workers_raw = []
        if not isinstance(workers_raw, (list, tuple)):
            raise ConfigurationError(
                f"must be a list of worker mappings, not {_type_name(workers_raw)}", "workers"
            )
        workers = tuple(
            _build(WorkerConfig, raw, _item("workers", i), env) for i, raw in enumerate(workers_raw)
        )

        queue_raw = data.get("queue")
        queue = QueueConfig() if queue_raw is None else _build(QueueConfig, queue_raw, "queue", env)

        current: Any = worker_id
        if current is None:
            current = _from_raw("opt_str", data.get("worker_id"), "worker_id", env)
        return cls(redis=redis, workers=workers, queue=queue, worker_id=current)

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        *,
        worker_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> FairQueueConfig:
        """Load a YAML file in the FairQueue README format (see :meth:`from_dict`)."""
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
            raise ConfigurationError(
                f"invalid YAML in configuration file {filename!r}{where}: {problem}"
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"invalid YAML in configuration file {filename!r}: {exc}") from exc
        finally:
            loader.dispose()
        if data is None:
            raise ConfigurationError(f"configuration file {filename!r} is empty")
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"the top level of configuration file {filename!r} must be a mapping, not {_type_name(data)}"
            )
        try:
            return cls.from_dict(data, worker_id=worker_id, environ=environ)
        except ConfigurationError as exc:
            add_note = getattr(exc, "add_note", None)  # Python 3.11+
            if add_note is not None:
                add_note(f"in configuration file {filename!r}")
            raise

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars) that :meth:`from_dict` turns back into ``self``."""
        return {
            "redis": _section_dict(self.redis),
            "workers": [_section_dict(w) for w in self.workers],
            "queue": _section_dict(self.queue),
            "worker_id": self.worker_id,
        }

    # ------------------------------------------------------------------ queries

    @property
    def worker_ids(self) -> tuple[str, ...]:
        """Ids of all configured workers, in configuration order."""
        return tuple(self._index.by_id)

    @property
    def worker(self) -> WorkerConfig:
        """The current worker (see :meth:`get_worker`)."""
        return self.get_worker(None)

    def get_worker(self, worker_id: str | None = None) -> WorkerConfig:
        """The worker *worker_id*; ``None`` means ``self.worker_id`` or the only worker."""
        wanted = worker_id if worker_id is not None else self.worker_id
        if wanted is None:
            if len(self.workers) == 1:
                return self.workers[0]
            ids = ", ".join(self.worker_ids) or "(none)"
            raise ConfigurationError(
                f"no worker_id given and {len(self.workers)} workers configured "
                f"(configured worker ids: {ids})",
                "worker_id",
            )
        worker = self._index.by_id.get(wanted)
        if worker is None:
            raise UnknownWorkerError(wanted, list(self.worker_ids))
        return worker

    def owner_of(self, user_id: str) -> str | None:
        """Id of the worker *user_id* is assigned to, or ``None`` (it is in the pool).

        Exact entries win over patterns; among patterns the first match in worker order wins.
        """
        return self._index.owner_of(user_id)

    def partition_of(self, user_id: str) -> str:
        """The owner's worker id, or :data:`POOL_PARTITION` for an unassigned user."""
        owner = self._index.owner_of(user_id)
        return POOL_PARTITION if owner is None else owner

    def steal_partitions(self, worker_id: str | None = None) -> tuple[str, ...]:
        """Partitions (worker ids, :data:`POOL_PARTITION`) where this worker's steal targets live.

        Exact targets contribute their owner (or the pool); any steal pattern means every
        other worker plus the pool.  The worker's own id is excluded.  Order: worker order,
        then the pool.
        """
        worker = self.get_worker(worker_id)
        index = self._index
        cached = index.steal_cache.get(worker.id)
        if cached is not None:
            return cached
        if worker.steal_patterns:
            wanted = {*self.worker_ids, POOL_PARTITION}
        else:
            wanted = {self.partition_of(user) for user in worker.steal_exact}
        wanted.discard(worker.id)
        result = tuple(w for w in (*self.worker_ids, POOL_PARTITION) if w in wanted)
        index.steal_cache[worker.id] = result
        return result

    def weight_of(self, user_id: str) -> float:
        """The scheduling weight of *user_id* (``queue.user_weights``, default 1.0)."""
        return self.queue.user_weights.get(user_id, 1.0)
