"""run.py's browser step for ``tests``: installs Debian's chromium only when it is missing and it may
(root + apt-get), and never fails the run when it cannot (the browser tests then skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import run


@pytest.fixture
def missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A chromium path that does not exist (yet), as if it were Debian's, and we are root."""
    target = tmp_path / "chromium"
    monkeypatch.setattr(run, "CHROMIUM", target)
    monkeypatch.setattr(run, "DEBIAN_CHROMIUM", target)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return target


def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, exit_code: int = 0,
             creates: Path | None = None) -> Path:
    """An apt-get first on PATH that logs its calls (and creates `creates` on install)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    make = f'[ "$1" = install ] && : > "{creates}"\n' if creates else ""
    script = bin_dir / "apt-get"
    script.write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> "{log}"\n{make}exit {exit_code}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def test_installs_chromium_with_apt_when_root(missing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_apt(tmp_path, monkeypatch, creates=missing)
    assert run.ensure_chromium() is True
    assert log.read_text().splitlines() == ["noninteractive update -qq",
                                            "noninteractive install -y -qq chromium"]
    assert "installing Debian's chromium" in capsys.readouterr().out


def test_a_failing_apt_is_not_fatal(missing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_apt(tmp_path, monkeypatch, exit_code=100)
    assert run.ensure_chromium() is False
    assert log.read_text().splitlines() == ["noninteractive update -qq"]
    assert "installing chromium failed" in capsys.readouterr().out
    assert not missing.exists()


def test_no_install_without_root_or_apt(missing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_apt(tmp_path, monkeypatch, creates=missing)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run.ensure_chromium() is False
    assert "(not root)" in capsys.readouterr().out
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert run.ensure_chromium() is False
    assert "(no apt-get)" in capsys.readouterr().out
    assert not log.exists()


def test_nothing_to_do_when_present_or_another_binary_is_named(
        missing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_apt(tmp_path, monkeypatch, creates=missing)
    monkeypatch.setattr(run, "DEBIAN_CHROMIUM", tmp_path / "debian-chromium")  # FAIRQUE_CHROMIUM elsewhere
    assert run.ensure_chromium() is False
    assert "FAIRQUE_CHROMIUM names another binary" in capsys.readouterr().out
    missing.touch()
    assert run.ensure_chromium() is True
    assert not log.exists()


def test_the_browser_is_only_wanted_when_the_browser_tests_may_run() -> None:
    assert run.wants_browser([])
    assert run.wants_browser(["-k", "worker", "-x"])
    assert run.wants_browser(["tests"])
    assert run.wants_browser(["tests/django/test_admin_browser.py::test_admin_pages_fit_the_window"])
    assert not run.wants_browser(["tests/integration/test_queue.py", "-p", "no:cacheprovider"])
