"""Assembles the Lua scripts: each command file (``lua/<name>.lua``) with its includes.

A command names what it uses at its top, one line each: ``--- @include "includes/<name>"``; an
include file (one small function, ``lua/includes/<name>.lua``) names its own dependencies the
same way, relative to ``includes/``. The loader puts every include once, each after what it
includes, before the command's text; a name it cannot find is an error at load time.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r'^--- @include "([\w/]+)"\n', re.MULTILINE)


@cache
def _read(path: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(f"{path}.lua").read_text("utf-8")


def _includes(text: str, base: str) -> list[str]:
    """The include paths ``text`` names (relative to ``lua/``); ``base`` is its folder."""
    return [name if "/" in name else f"{base}{name}" for name in _INCLUDE.findall(text)]


def _expand(path: str, placed: list[str], visiting: tuple[str, ...]) -> None:
    """Add ``path``'s includes, then ``path`` itself, to ``placed`` (each once, in use order)."""
    if path in placed:
        return
    if path in visiting:
        raise ValueError(f"Lua include cycle: {' -> '.join((*visiting, path))}")
    for dep in _includes(_read(path), path.rpartition("/")[0] + "/"):
        _expand(dep, placed, (*visiting, path))
    placed.append(path)


@cache
def source(name: str) -> str:
    """The Lua source of command ``name``: its includes (without their include lines), then its
    own text."""
    text = _read(name)
    placed: list[str] = []
    for dep in _includes(text, ""):
        _expand(dep, placed, (name,))
    parts = [f"-- {path}.lua\n{_INCLUDE.sub('', _read(path)).strip()}\n" for path in placed]
    return "".join(parts) + _INCLUDE.sub("", text)
