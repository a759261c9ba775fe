"""Start manage.py commands (workers) as real subprocesses against the test settings and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["DJANGO_SETTINGS_MODULE"] = env.get("FAIRQUE_TEST_SETTINGS", "tests.settings")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def manage(*args: str, **extra: str) -> subprocess.Popen[str]:
    """Start ``django-admin <args>`` with the test settings; stdout+stderr captured as text."""
    return subprocess.Popen([sys.executable, "-m", "django", *args], cwd=ROOT, env=command_env(**extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_manage(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=command_env(**extra),
                          capture_output=True, text=True, timeout=timeout)
