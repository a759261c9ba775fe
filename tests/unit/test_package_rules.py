"""Rules about the package itself: the core never imports Django; no pickle or eval anywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT

PACKAGE = ROOT / "fairque_django"


def test_core_never_imports_django() -> None:
    code = (
        "import sys, importlib, pkgutil\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'django' or name.startswith('django.'):\n"
        "            raise ImportError('core imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fairque_django.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('fairque_django.core.' + m.name)\n"
        "import fairque_django\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_no_pickle_or_eval_in_the_package() -> None:
    banned = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|marshal|shelve|dill)\b"
                        r"|\b(pickle|marshal)\.\w+\(|(?<![\w.])(eval|exec)\s*\(")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if banned.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert offenders == []


def test_one_lua_file_per_script_with_a_header() -> None:
    from fairque_django.core.scripts import SCRIPT_NAMES

    lua = PACKAGE / "core" / "scripts" / "lua"
    for name in SCRIPT_NAMES:
        text = (lua / f"{name}.lua").read_text()
        assert text.startswith(f"-- {name}:") and "KEYS[1]" in text and "ARGV[1]" in text


def test_a_command_run_by_another_shares_its_includes() -> None:
    """ack_pop.lua runs complete.lua and pop.lua (``--- @command``): each as a local function, every
    include they use defined once, before them."""
    from fairque_django.core.scripts.loader import source

    text = source("ack_pop")
    assert text.count("local function complete_command(ARGV)") == 1
    assert text.count("local function pop_command(ARGV)") == 1
    for include in ("rcall", "leased_later", "tenant_block", "chunked"):
        assert text.count(f"-- includes/{include}.lua\n") == 1, include
    assert text.index("-- includes/tenant_block.lua") < text.index("local function pop_command(ARGV)")
    assert "@include" not in text and "@command" not in text


def test_import_layers() -> None:
    """The import-linter contracts in pyproject.toml: core without Django, layers without cycles."""
    lint = Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert res.returncode == 0 and "0 broken" in res.stdout, res.stdout + res.stderr


def test_adapters_import_no_private_name_of_the_core() -> None:
    private = re.compile(r"^\s*from\s+(?:fairque_django|\.+)\.?core[\w.]*\s+import\s+\(?([^)\n]*)")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "core" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = private.match(line)
            if m and any(name.strip().startswith("_") for name in m.group(1).split(",")):
                offenders.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert offenders == []
