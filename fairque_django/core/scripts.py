"""Loads the Lua scripts (one file each, under ``lua/``) and registers them with a client."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript, Script

SCRIPT_NAMES = ("push", "pop", "complete", "fail", "release", "extend", "requeue_dead", "delete",
                "alert_transition")
_INCLUDE = re.compile(r"^-- @include (\S+)$", re.MULTILINE)


@cache
def source(name: str) -> str:
    """The Lua source of script ``name`` with its ``-- @include`` lines expanded."""
    text = resources.files("fairque_django.core").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")
    return _INCLUDE.sub(lambda m: source(m.group(1).removesuffix(".lua")), text)


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
