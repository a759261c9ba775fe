"""The frozen configuration dataclasses; their fields, defaults and checks come from :mod:`.schema`.

Each section checks itself when built (directly, by ``dataclasses.replace`` or by the loader),
so a config object is always valid.  Errors name the key path: ``workers[1].poll_interval_seconds``
when the loader builds the section, ``worker.poll_interval_seconds`` when built directly.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigurationError, UnknownWorkerError
from ..ids import is_pattern, user_id_problem
from .kinds import Problem, at, base_path, item, join, map_item, raise_problems, type_name
from .schema import CLUSTER_SCHEMES, QUEUE, REDIS, WORKER, WORKER_ID
from .topology import POOL_PARTITION, Assignment, OwnerIndex, assignment_problems, glob_match

__all__ = ["FairQueueConfig", "QueueConfig", "RedisConfig", "WorkerConfig", "default_redis_provider",
           "set_default_redis_provider"]


def _rebuild(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    """Unpickle helper: re-create (and re-validate) a config object from its init fields."""
    return cls(**kwargs)


def _reduce(obj: Any, names: Iterable[str]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    kwargs = {name: getattr(obj, name) for name in names}
    for name, value in kwargs.items():
        if isinstance(value, types.MappingProxyType):
            kwargs[name] = dict(value)
    return _rebuild, (type(obj), kwargs)


# --------------------------------------------------------------------------- sections

# RedisConfig fields passed to redis-py: where the server is (ignored with a url), and for any client
_SERVER_FIELDS = ("host", "port", "db", "password", "username", "ssl")
_POOL_FIELDS = ("socket_timeout", "socket_connect_timeout", "health_check_interval", "max_connections")


@dataclass(frozen=True, slots=True, repr=False)
class RedisConfig:
    """How to reach Redis; ``url``, when set, wins over host/port/db/password/username/ssl."""

    host: str = REDIS["host"].default
    port: int = REDIS["port"].default
    db: int = REDIS["db"].default
    password: str | None = REDIS["password"].default
    username: str | None = REDIS["username"].default
    url: str | None = REDIS["url"].default
    ssl: bool = REDIS["ssl"].default
    socket_timeout: float = REDIS["socket_timeout"].default
    socket_connect_timeout: float = REDIS["socket_connect_timeout"].default
    health_check_interval: float = REDIS["health_check_interval"].default
    max_connections: int | None = REDIS["max_connections"].default
    cluster: bool = REDIS["cluster"].default
    startup_nodes: tuple[str, ...] = REDIS["startup_nodes"].default

    def __post_init__(self) -> None:
        base = base_path("redis")
        REDIS.normalize(self, base)
        scheme = urlsplit(self.url).scheme if self.url else ""
        if scheme in CLUSTER_SCHEMES:
            object.__setattr__(self, "cluster", True)  # the URL says so
        if not self.cluster:
            if self.startup_nodes:
                raise ConfigurationError("startup_nodes are the nodes of a Redis Cluster: set cluster: true as well "
                                         "(or use url/host/port for a single Redis)", join(base, "startup_nodes"))
            return
        if scheme == "unix":
            raise ConfigurationError("a Redis Cluster is reached over TCP, not a unix socket: use "
                                     "redis+cluster://host:port/ or startup_nodes", join(base, "url"))
        db = _url_db(self.url) if self.url else self.db
        if db != 0:
            where = "url" if self.url else "db"
            raise ConfigurationError(f"a Redis Cluster has only database 0 (got db {db}): give every application its "
                                     "own queue.stats_prefix instead", join(base, where))

    def __repr__(self) -> str:
        shown = {name: getattr(self, name) for name in REDIS.names}
        if shown["password"] is not None:
            shown["password"] = "***"
        if shown["url"] is not None:
            shown["url"] = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", shown["url"])
        return "RedisConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self, REDIS.names)

    def _common_kwargs(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in _POOL_FIELDS}, "decode_responses": False}

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis(**kwargs)`` (ignores ``url``)."""
        return {**{name: getattr(self, name) for name in _SERVER_FIELDS}, **self._common_kwargs()}

    def url_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(self.url, **kwargs)``."""
        return self._common_kwargs()

    def client_url(self) -> str | None:
        """``url`` as redis-py reads it: ``redis+cluster://`` becomes ``redis://`` (``cluster`` says the rest)."""
        if self.url is None:
            return None
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme.removesuffix('+cluster')}{sep}{rest}"

    def cluster_nodes(self) -> list[tuple[str, int]]:
        """The startup nodes of a cluster as (host, port): ``startup_nodes``, else (without a url) host/port.
        The url's host, when there is one, is a startup node too (redis-py adds it)."""
        if self.startup_nodes:
            return [_split_node(node) for node in self.startup_nodes]
        return [] if self.url else [(self.host, self.port)]


def _url_db(url: str) -> int:
    """The database a ``redis://`` URL selects (its path, else ``?db=``; 0 without either)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path:
        return int(path) if path.isdigit() else -1
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return int(db) if db.isdigit() else -1


def _split_node(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker: the users it serves first and the users it may steal from."""

    id: str
    assigned_users: tuple[str, ...] = WORKER["assigned_users"].default
    steal_targets: tuple[str, ...] = WORKER["steal_targets"].default
    poll_interval_seconds: float = WORKER["poll_interval_seconds"].default
    max_concurrent_tasks: int = WORKER["max_concurrent_tasks"].default
    task_timeout_seconds: float | None = WORKER["task_timeout_seconds"].default
    graceful_shutdown_timeout: float = WORKER["graceful_shutdown_timeout"].default
    heartbeat_interval_seconds: float = WORKER["heartbeat_interval_seconds"].default
    # Derived from the lists (not part of equality, repr or the constructor): their exact
    # entries and their glob entries (in configuration order).
    assigned_exact: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    assigned_patterns: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    steal_exact: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    steal_patterns: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = base_path("worker")
        WORKER.normalize(self, base)
        assigned = frozenset(self.assigned_users)
        for index, user in enumerate(self.steal_targets):
            if user in assigned:
                raise ConfigurationError(
                    f"{user!r} is both in assigned_users and in steal_targets of worker {self.id!r}",
                    item(join(base, "steal_targets"), index),
                )
        object.__setattr__(self, "assigned_exact", frozenset(u for u in assigned if not is_pattern(u)))
        object.__setattr__(self, "assigned_patterns", tuple(u for u in self.assigned_users if is_pattern(u)))
        object.__setattr__(self, "steal_exact", frozenset(u for u in self.steal_targets if not is_pattern(u)))
        object.__setattr__(self, "steal_patterns", tuple(u for u in self.steal_targets if is_pattern(u)))

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self, WORKER.names)

    def serves_assigned(self, user_id: str) -> bool:
        """Whether *user_id* is in ``assigned_users`` (exactly or by a glob pattern)."""
        return user_id in self.assigned_exact or any(glob_match(p, user_id) for p in self.assigned_patterns)

    def may_steal(self, user_id: str) -> bool:
        """Whether *user_id* is in ``steal_targets`` (exactly or by a glob pattern)."""
        return user_id in self.steal_exact or any(glob_match(p, user_id) for p in self.steal_patterns)


def _empty_pins() -> Mapping[str, int]:
    return types.MappingProxyType({})


def _empty_weights() -> Mapping[str, float]:
    return types.MappingProxyType({})


def _empty_limits() -> Mapping[str, Mapping[str, Any]]:
    return types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Queue-wide settings; every Redis key lives under the ``{stats_prefix}:`` hash tag."""

    stats_prefix: str = QUEUE["stats_prefix"].default
    default_max_retries: int = QUEUE["default_max_retries"].default
    enable_pipeline_optimization: bool = QUEUE["enable_pipeline_optimization"].default
    xcom_ttl_seconds: int = QUEUE["xcom_ttl_seconds"].default
    lease_timeout_seconds: float = QUEUE["lease_timeout_seconds"].default
    retry_backoff_base_seconds: float = QUEUE["retry_backoff_base_seconds"].default
    retry_backoff_max_seconds: float = QUEUE["retry_backoff_max_seconds"].default
    max_payload_bytes: int = QUEUE["max_payload_bytes"].default
    max_user_id_length: int = QUEUE["max_user_id_length"].default
    result_ttl_seconds: int = QUEUE["result_ttl_seconds"].default
    store_results: bool = QUEUE["store_results"].default
    batch_size: int = QUEUE["batch_size"].default
    idempotency_ttl_seconds: int = QUEUE["idempotency_ttl_seconds"].default
    tenant_retention_seconds: float = QUEUE["tenant_retention_seconds"].default
    shards: int = QUEUE["shards"].default
    # hash=False: a mapping is not hashable, and equal configs still hash equal without it.
    shard_pins: Mapping[str, int] = field(default_factory=_empty_pins, hash=False)
    user_weights: Mapping[str, float] = field(default_factory=_empty_weights, hash=False)
    fairness: str = QUEUE["fairness"].default
    metrics: bool = QUEUE["metrics"].default
    orphan_takeover: bool = QUEUE["orphan_takeover"].default
    orphan_after_seconds: float | None = QUEUE["orphan_after_seconds"].default
    tenant_concurrency: int | None = QUEUE["tenant_concurrency"].default
    tenant_limits: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty_limits, hash=False)

    def __post_init__(self) -> None:
        QUEUE.normalize(self, base_path("queue"))
        for user, shard in self.shard_pins.items():
            if shard >= self.shards:
                raise ConfigurationError(f"shard {shard} does not exist: queue.shards is {self.shards} "
                                         f"(shards 0 to {self.shards - 1})", map_item("queue.shard_pins", user))

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self, QUEUE.names)


# --------------------------------------------------------------------------- default redis

_default_redis_provider: Callable[[], RedisConfig] | None = None


def set_default_redis_provider(provider: Callable[[], RedisConfig] | None) -> None:
    """Set (or clear with ``None``) the source of the Redis settings used when none are given.

    The Django adapter points this at the project's Redis connection settings; without a
    provider the default is ``RedisConfig()``.
    """
    global _default_redis_provider
    _default_redis_provider = provider


def default_redis_provider() -> Callable[[], RedisConfig] | None:
    """The provider set by :func:`set_default_redis_provider` (``None``: ``RedisConfig()``)."""
    return _default_redis_provider


def default_redis() -> RedisConfig:
    """The Redis settings used when a configuration names none."""
    provider = _default_redis_provider
    if provider is None:
        return RedisConfig()
    with at("redis"):
        result = provider()
    if not isinstance(result, RedisConfig):
        raise ConfigurationError(f"the default redis provider returned {type_name(result)}, not RedisConfig", "redis")
    return result


# --------------------------------------------------------------------------- top level


def _length_problems(workers: tuple[WorkerConfig, ...], queue: QueueConfig) -> list[Problem]:
    """User ids longer than ``queue.max_user_id_length`` (the sections cannot know the limit)."""
    limit = queue.max_user_id_length
    found: list[Problem] = []
    for index, worker in enumerate(workers):
        for list_name in ("assigned_users", "steal_targets"):
            for pos, user in enumerate(getattr(worker, list_name)):
                problem = user_id_problem(user, limit, allow_pattern=True)
                if problem is not None:
                    key = item(join(item("workers", index), list_name), pos)
                    found.append(Problem(key, f"{problem} (queue.max_user_id_length)"))
    for user in queue.user_weights:
        problem = user_id_problem(user, limit)
        if problem is not None:
            found.append(Problem(map_item("queue.user_weights", user), problem))
    return found


def _worker_order(problem: Problem) -> tuple[int, int]:
    found = re.match(r"workers\[(\d+)\]", problem.key or "")
    return (int(found.group(1)), 0) if found else (1 << 30, 1)


@dataclass(frozen=True, slots=True)
class FairQueueConfig:
    """The whole configuration: Redis, the static set of workers, queue settings.

    ``worker_id`` names the worker of the current process (``runfairworker <id>``).
    """

    redis: RedisConfig = field(default_factory=default_redis)
    workers: tuple[WorkerConfig, ...] = ()
    queue: QueueConfig = field(default_factory=QueueConfig)
    worker_id: str | None = None
    # Derived once in __post_init__; not part of equality, repr or the constructor.
    _index: OwnerIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_types()
        found = assignment_problems(Assignment(i, w.id, w.assigned_users) for i, w in enumerate(self.workers))
        raise_problems(sorted(found + _length_problems(self.workers, self.queue), key=_worker_order))
        if self.worker_id is not None:
            WORKER_ID.check(self.worker_id, "worker_id")
            if self.workers and all(w.id != self.worker_id for w in self.workers):
                raise UnknownWorkerError(self.worker_id, [w.id for w in self.workers])
        object.__setattr__(self, "_index", OwnerIndex(self.workers))

    def _check_types(self) -> None:
        if not isinstance(self.redis, RedisConfig):
            raise ConfigurationError(f"must be a RedisConfig, not {type_name(self.redis)}", "redis")
        if not isinstance(self.queue, QueueConfig):
            raise ConfigurationError(f"must be a QueueConfig, not {type_name(self.queue)}", "queue")
        if isinstance(self.workers, list):
            object.__setattr__(self, "workers", tuple(self.workers))
        if not isinstance(self.workers, tuple):
            raise ConfigurationError(f"must be a list of WorkerConfig, not {type_name(self.workers)}", "workers")
        for index, worker in enumerate(self.workers):
            if not isinstance(worker, WorkerConfig):
                raise ConfigurationError(f"must be a WorkerConfig, not {type_name(worker)}", item("workers", index))

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _reduce(self, ("redis", "workers", "queue", "worker_id"))

    # ------------------------------------------------------------------ constructors (see load.py)

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
        from .load import create_default

        return create_default(worker_id, assigned_users, steal_targets, **overrides)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, worker_id: str | None = None,
                  environ: Mapping[str, str] | None = None) -> FairQueueConfig:
        """Build from a mapping with sections ``redis``, ``workers``, ``queue`` and ``worker_id``.

        Strings may contain ``${VAR}`` / ``${VAR:-default}`` placeholders, looked up in
        *environ* (default ``os.environ``); a value that contains a placeholder is then
        converted to the field's type (``port: "${REDIS_PORT}"``; an empty expansion of an
        optional field is ``None``; a list field is split on commas).  ``$${`` is a literal
        ``${``.  A missing ``redis`` section uses the default redis provider.  *worker_id*
        overrides the ``worker_id`` key.  An error carries every problem found
        (:func:`~.kinds.problems_of`).
        """
        from .load import from_dict

        return from_dict(data, worker_id=worker_id, environ=environ)

    @classmethod
    def from_yaml(cls, path: Any, *, worker_id: str | None = None,
                  environ: Mapping[str, str] | None = None) -> FairQueueConfig:
        """Load a YAML file in the FairQueue README format (see :meth:`from_dict`)."""
        from .load import from_yaml

        return from_yaml(path, worker_id=worker_id, environ=environ)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars) that :meth:`from_dict` turns back into ``self``."""
        from .load import to_dict

        return to_dict(self)

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
                f"no worker_id given and {len(self.workers)} workers configured (configured worker ids: {ids})",
                "worker_id",
            )
        worker: WorkerConfig | None = self._index.by_id.get(wanted)
        if worker is None:
            raise UnknownWorkerError(wanted, list(self.worker_ids))
        return worker

    def owner_of(self, user_id: str) -> str | None:
        """Id of the worker *user_id* is assigned to, or ``None`` (it is in the pool).

        Exact entries win over patterns; among patterns the first match in worker order wins.
        """
        return self._index.owner_of(user_id)

    def partition_of(self, user_id: str) -> str:
        """The owner's worker id, or :data:`~.topology.POOL_PARTITION` for an unassigned user."""
        owner = self._index.owner_of(user_id)  # inlined: called for every pushed task
        return POOL_PARTITION if owner is None else owner

    def steal_partitions(self, worker_id: str | None = None) -> tuple[str, ...]:
        """Partitions (worker ids, ``POOL_PARTITION``) where this worker's steal targets live
        (see :func:`~.topology.steal_partitions`)."""
        return self._index.steal_partitions(self.get_worker(worker_id))

    def partition_servers(self) -> dict[str, tuple[str, ...]]:
        """Partition -> the workers that serve it by configuration (see
        :func:`~.topology.partition_servers`): what orphan takeover watches."""
        return self._index.partition_servers()

    def orphan_watch(self, worker_id: str | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The partitions worker *worker_id* takes over when none of their servers has a live
        heartbeat, with those servers: every partition it does not serve itself (none when
        ``queue.orphan_takeover`` is off)."""
        if not self.queue.orphan_takeover:
            return ()
        wid = self.get_worker(worker_id).id
        return tuple((part, servers) for part, servers in self.partition_servers().items() if wid not in servers)

    def weight_of(self, user_id: str) -> float:
        """The scheduling weight of *user_id* (``queue.user_weights``, default 1.0)."""
        return self.queue.user_weights.get(user_id, 1.0)
