"""Worker processes: one launcher for every contender, each child in its own process group, its
output in a log file, always stopped (context exit, interpreter exit, SIGTERM/SIGINT)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import ROOT


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


def process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of a live process from /proc (Linux; clock-tick resolution), else nan; with
    ``children``, plus the CPU of its children that exited and were waited for (e.g. RQ's work
    horses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / _TICKS
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

    def launch(self, name: str, cmd: Sequence[str], url: str, *, env: Mapping[str, str] | None = None) -> Proc:
        """THE worker launcher of every contender: ``cmd`` (a contender's ``worker_cmd``) with the
        environment its task bodies read (:mod:`benchmarks.contenders.bodies`): the Redis URL and
        the worker's label (``name``)."""
        return self.start(name, cmd, env={"BENCH_REDIS_URL": url, "BENCH_WORKER": name, **(env or {})})

    def dead(self) -> list[Proc]:
        return [p for p in self.procs if not p.alive()]

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far, per running process name."""
        return {p.name: p.cpu_seconds() for p in self.procs}

    def stop_all(self, grace: float = 8.0) -> None:
        """SIGTERM every process first (so they stop in parallel), then stop each within ``grace``."""
        procs = list(self.procs)
        for p in procs:
            if p.alive():
                self._signal(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            self.stop(p, timeout=max(0.1, deadline - time.monotonic()))

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


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
