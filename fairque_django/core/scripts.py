"""Loads the Lua scripts (one file each, under ``lua/``) and registers them with a client."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript, Script

SCRIPT_NAMES = ("push", "pop", "complete", "fail", "release", "extend", "requeue_dead", "delete",
                "alert_transition", "migrate")
_INCLUDE = re.compile(r"^-- @include (\S+)$", re.MULTILINE)
_DEFINITION = re.compile(r"local (?:function )?([A-Za-z_]\w*)")
_WORD = re.compile(r"[A-Za-z_]\w*")


@cache
def _read(name: str) -> str:
    return resources.files("fairque_django.core").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


@cache
def _definitions(library: str) -> tuple[tuple[str, str], ...]:
    """The top-level definitions of a library, in order: (name, text with its leading comments)."""
    blocks: list[list[str]] = []
    pending: list[str] = []  # comment and blank lines: they belong to the next definition
    for line in _read(library).splitlines(keepends=True):
        match = _DEFINITION.match(line)
        if match:
            blocks.append([match.group(1), "".join(pending) + line])
            pending = []
        elif line.startswith("--") or not line.strip():
            pending.append(line)
        elif blocks:  # a line of the current definition's body
            blocks[-1][1] += "".join(pending) + line
            pending = []
    return tuple((name, text) for name, text in blocks)


def _used(library: str, code: str) -> str:
    """The definitions of ``library`` that ``code`` uses, directly or through each other.

    Every script runs its whole text on each call: leaving out what it never calls makes each
    call cheaper (fewer closures to build and collect)."""
    definitions = _definitions(library)
    names = {name for name, _ in definitions}
    wanted = set(_WORD.findall(code)) & names
    for name, text in reversed(definitions):  # a definition only uses the ones above it
        if name in wanted:
            wanted |= set(_WORD.findall(text)) & names
    return "".join(text for name, text in definitions if name in wanted)


@cache
def source(name: str) -> str:
    """The Lua source of script ``name`` with its ``-- @include`` lines expanded (only the parts of
    the included library that the script uses)."""
    text = _read(name)
    return _INCLUDE.sub(lambda m: _used(m.group(1).removesuffix(".lua"), text), text)


class Scripts:
    """The registered scripts of one client (EVALSHA, falling back to loading on NOSCRIPT)."""

    def __init__(self, client: Any) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(source(name)))

    push: Script
    pop: Script
    complete: Script
    fail: Script
    release: Script
    extend: Script
    requeue_dead: Script
    delete: Script
    alert_transition: Script
    migrate: Script


class AsyncScripts(Scripts):
    """The same scripts for a ``redis.asyncio`` client."""

    push: AsyncScript  # type: ignore[assignment]
    pop: AsyncScript  # type: ignore[assignment]
    complete: AsyncScript  # type: ignore[assignment]
    fail: AsyncScript  # type: ignore[assignment]
    release: AsyncScript  # type: ignore[assignment]
    extend: AsyncScript  # type: ignore[assignment]
    requeue_dead: AsyncScript  # type: ignore[assignment]
    delete: AsyncScript  # type: ignore[assignment]
    alert_transition: AsyncScript  # type: ignore[assignment]
    migrate: AsyncScript  # type: ignore[assignment]
