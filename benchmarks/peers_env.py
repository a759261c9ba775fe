"""The benchmarks' own virtualenv: fairque_django (editable) plus the peers (RQ, Huey, Celery)
and matplotlib. Created on first use at ``benchmarks/.venv-peers``; never part of the project's
dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv-peers"
REQUIREMENTS = HERE / "requirements-peers.txt"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_peers_env() -> Path:
    """Create/refresh the venv when the requirements changed; return its python."""
    marker = VENV / ".installed"
    wanted = REQUIREMENTS.read_text() + (ROOT / "pyproject.toml").read_text()
    if python().exists() and marker.exists() and marker.read_text() == wanted:
        return python()
    if not python().exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-e", str(ROOT), "-r", str(REQUIREMENTS)], check=True)
    marker.write_text(wanted)
    return python()


def in_peers_env() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


if __name__ == "__main__":
    print(ensure_peers_env())
