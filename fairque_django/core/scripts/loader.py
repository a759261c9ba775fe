"""Assembles the Lua scripts: each command file (``lua/<name>.lua``) with its includes.

A command names what it uses at its top, one line each: ``--- @include "includes/<name>"``; an
include file (one small function, ``lua/includes/<name>.lua``) names its own dependencies the
same way, relative to ``includes/``. The loader puts every include once, each after what it
includes, before the command's text; a name it cannot find is an error at load time.

A command may run other commands in the same call: ``--- @command "<name>"`` puts that command's
text (its includes merged with the rest) as ``local function <name>_command(ARGV) ... end``; the
commands share their includes and what those keep per call (e.g. ack_pop.lua: complete, then pop).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r'^--- @include "([\w/]+)"\n', re.MULTILINE)
_COMMAND = re.compile(r'^--- @command "(\w+)"\n', re.MULTILINE)


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
    embedded = _COMMAND.findall(text)
    placed: list[str] = []
    for dep in [*_includes(text, ""), *(d for command in embedded for d in _includes(_read(command), ""))]:
        _expand(dep, placed, (name,))
    parts = [f"-- {path}.lua\n{_INCLUDE.sub('', _read(path)).strip()}\n" for path in placed]
    body = _COMMAND.sub(lambda m: _as_function(m[1]), text)
    return "".join(parts) + _INCLUDE.sub("", body)


def _as_function(command: str) -> str:
    """Command ``command``'s text (without its include lines) as ``local function <command>_command(ARGV)``."""
    return f"local function {command}_command(ARGV)\n{_INCLUDE.sub('', _read(command)).strip()}\nend\n"
