"""Management commands (workers above all) as real subprocesses, against the test settings and Redis.

A worker's output goes to a log file, never a pipe: a chatty worker would block on a full pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = "tests.settings"


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a ``django-admin`` subprocess: this checkout first on the path, the
    test settings (``FAIRQUE_TEST_SETTINGS`` names others), unbuffered output; then ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["DJANGO_SETTINGS_MODULE"] = env.get("FAIRQUE_TEST_SETTINGS", SETTINGS)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def manage(*args: str, **extra: str) -> subprocess.Popen[str]:
    """Start ``django-admin <args>`` with the test settings; stdout+stderr captured as text."""
    return subprocess.Popen([sys.executable, "-m", "django", *args], cwd=ROOT, env=command_env(**extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_manage(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``django-admin <args>`` to the end with the test settings."""
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=command_env(**extra),
                          capture_output=True, text=True, timeout=timeout)


class WorkerProc:
    """One ``manage.py runfairworker`` subprocess whose output goes to a log file."""

    def __init__(self, worker_id: str, args: tuple[str, ...], env: dict[str, str], log_path: Path) -> None:
        self.worker_id = worker_id
        self.log_path = log_path
        self._fh = open(log_path, "w")  # noqa: SIM115 - closed by wait(), kill() and close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runfairworker", worker_id, *args],
            cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the worker wrote so far."""
        if not self._fh.closed:
            self._fh.flush()
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit (at most ``timeout`` s) and return the exit code."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def finish(self, timeout: float) -> str:
        """Wait for the exit (e.g. of a ``--burst`` worker) and return its whole output."""
        self.wait(timeout)
        return self.log()

    def kill(self) -> None:
        """SIGKILL: a crash, no clean stop."""
        self.send_signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then wait up to ``timeout`` s; returns the exit code."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class Workers:
    """Starts worker subprocesses (settings and environment: ``env``) and kills leftovers at the end."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.started: list[WorkerProc] = []

    def environment(self, **extra: str) -> dict[str, str]:
        return command_env(**{**self.env, **extra})

    def start(self, worker_id: str, *args: str, **extra: str) -> WorkerProc:
        """``runfairworker worker_id *args``; ``extra``: environment variables of this one."""
        log_path = self.log_dir / f"{worker_id}-{len(self.started)}.log"
        proc = WorkerProc(worker_id, args, self.environment(**extra), log_path)
        self.started.append(proc)
        return proc

    def manage(self, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run another management command with the same settings and environment."""
        return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.environment(**extra),
                              capture_output=True, text=True, timeout=timeout)

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.alive():
                proc.kill()
            proc.close()
