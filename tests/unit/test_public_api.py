"""Every public name is the documented object (docs/api.md), before and after django.setup().

The names are checked in fresh interpreters: one that never configures Django (core names only),
and one that runs django.setup() and imports every submodule of the package first, so that a
submodule can never again shadow a public function (``fairque_django.enqueue`` was once the module
``fairque_django/enqueue.py`` after ``ready()`` imported it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fairque_django
from tests.support.processes import ROOT

API_DOC = ROOT / "docs" / "api.md"

# How a name's kind is told apart, as the documentation table names it.
PROBE = r'''
import enum, importlib, inspect, json, os, pkgutil, sys
django_names = sys.argv[1] == "django"
if django_names:
    import django
    django.setup()
import fairque_django
if django_names:
    for info in pkgutil.walk_packages(fairque_django.__path__, "fairque_django."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
lazy = set(fairque_django._LAZY)

def kind(name, obj):
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "exception"
        return "enum" if issubclass(obj, enum.Enum) else "class"
    if inspect.iscoroutinefunction(obj):
        return "coroutine function"
    code = getattr(obj, "__code__", None)
    wrapped = getattr(obj, "__wrapped__", None) is not None
    if wrapped and code is not None and code.co_filename.endswith("contextlib.py"):
        return "context manager"
    return "function" if callable(obj) else type(obj).__name__

out = {}
for name in fairque_django.__all__:
    if name in lazy and not django_names:
        continue
    out[name] = kind(name, getattr(fairque_django, name))
print(json.dumps(out))
'''


def documented() -> dict[str, tuple[str, bool]]:
    """name -> (kind, needs Django) from the table in docs/api.md."""
    rows = re.findall(r"^\| `(\w+)` \| ([a-z ]+) \| (yes|no) \|", API_DOC.read_text(), re.M)
    return {name: (kind, django == "yes") for name, kind, django in rows}


def probe(mode: str) -> dict[str, str]:
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("FAIRQUE_", "PYTHON"))})
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def expected_kind(name: str, kind: str) -> str:
    # a decorator is a function to the probe
    return {"decorator": "function"}.get(kind, kind)


def test_every_public_name_is_documented_once() -> None:
    docs = documented()
    assert sorted(docs) == sorted(fairque_django.__all__)
    assert len(fairque_django.__all__) == len(set(fairque_django.__all__))
    lazy = {name for name, (_, needs_django) in docs.items() if needs_django}
    assert lazy == set(fairque_django._LAZY)


def test_core_names_without_django() -> None:
    docs = documented()
    seen = probe("core")
    assert set(seen) == {n for n, (_, needs_django) in docs.items() if not needs_django}
    for name, kind in seen.items():
        assert kind == expected_kind(name, docs[name][0]), name


def test_every_name_after_django_setup_and_all_imports() -> None:
    docs = documented()
    seen = probe("django")
    assert set(seen) == set(docs)
    for name, kind in seen.items():
        assert kind != "module", f"fairque_django.{name} is a module, not the documented {docs[name][0]}"
        assert kind == expected_kind(name, docs[name][0]), name


def test_no_submodule_is_named_like_a_public_name() -> None:
    package = Path(fairque_django.__file__).parent
    submodules = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
    assert not submodules & set(fairque_django.__all__)


@pytest.mark.usefixtures("redis_client")
def test_the_readme_spelling_works() -> None:
    """The README calls fairque_django.enqueue(...) on the package, in a configured project."""
    import fairque_django.enqueuing
    from fairque_django.core.results import TaskResult

    assert fairque_django.enqueue is fairque_django.enqueuing.enqueue
    handle = fairque_django.enqueue(fairque_django.Task.create(payload={"x": 1}), user="user:1", on_commit=False)
    assert isinstance(handle, TaskResult) and handle.user_id == "user:1"
