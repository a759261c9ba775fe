"""The machinery of the declarative schema: value kinds, fields, sections, problems, key paths.

:mod:`.schema` declares every field with these; everything that validates a setting (the
loader, the dataclasses, the Django adapter, the task backend's ``OPTIONS``, alert rules)
goes through :meth:`Field.check` and :meth:`Section.check`, so a rule and its message exist
once.  A check raises :class:`ConfigurationError` whose message starts with the key path;
:class:`Problem` is the same thing as data, for reports that list several at once.
"""

from __future__ import annotations

import difflib
import json
import math
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ConfigurationError

__all__ = [
    "REQUIRED", "Field", "Kind", "Problem", "Section", "at", "base_path", "item", "join", "map_item",
    "problems_of", "raise_problems", "type_name", "unknown_key",
]


# --------------------------------------------------------------------------- key paths

# The key path of the section being built, so that errors raised from __post_init__ name
# e.g. "workers[1].poll_interval_seconds" rather than a context-free field name.
_PATH: ContextVar[str | None] = ContextVar("fairque_config_path", default=None)


@contextmanager
def at(path: str) -> Iterator[None]:
    """Build the section at *path* (its errors name ``path.field``)."""
    token = _PATH.set(path)
    try:
        yield
    finally:
        _PATH.reset(token)


def base_path(default: str) -> str:
    """The path set by :func:`at`, else *default* (a dataclass built directly)."""
    path = _PATH.get()
    return default if path is None else path


def join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def item(base: str, index: int) -> str:
    return f"{base}[{index}]"


def map_item(base: str, key: object) -> str:
    quoted = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else repr(key)
    return f"{base}[{quoted}]"


def type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def unknown_key(name: object, allowed: Iterable[str], *, noun: str = "key", listing: str = "allowed keys",
                more: str = "") -> str:
    """``unknown key 'prot'; did you mean 'port'? (allowed keys: ...)``."""
    names = list(allowed)
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {noun} {name!r}{hint} ({listing}: {', '.join(names)}{more})"


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration: the key path, the message and what kind of problem
    (``code``: ``invalid``, ``duplicate_worker_id``, ``double_assignment``, ``unknown_worker``).
    ``subject`` and ``places`` describe a duplicate: the id and every place it appears."""

    key: str | None
    message: str
    code: str = "invalid"
    subject: str | None = None
    places: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message

    def error(self) -> ConfigurationError:
        exc = ConfigurationError(self.message, self.key)
        exc.problems = (self,)  # type: ignore[attr-defined]
        return exc


def raise_problems(problems: Sequence[Problem]) -> None:
    """Raise the first of *problems* (if any), carrying all of them (see :func:`problems_of`)."""
    if problems:
        exc = problems[0].error()
        exc.problems = tuple(problems)  # type: ignore[attr-defined]
        raise exc


def problems_of(exc: ConfigurationError) -> tuple[Problem, ...]:
    """Every problem *exc* reports (one built from its text when it carries none)."""
    found = getattr(exc, "problems", None)
    if found:
        return tuple(found)
    text = str(exc)
    prefix = f"{exc.key}: " if exc.key else ""
    message = text[len(prefix):] if prefix and text.startswith(prefix) else text
    code = "unknown_worker" if type(exc).__name__ == "UnknownWorkerError" else "invalid"
    return (Problem(exc.key, message, code),)


# --------------------------------------------------------------------------- kinds


def _same(value: Any, key: str) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of value: its name in messages (``an integer``), which Python values it accepts,
    how an accepted value is normalised (may raise naming *key*), and how the text of an
    environment placeholder is converted to it (``None``: not from text)."""

    name: str
    accepts: Callable[[object], bool]
    normalize: Callable[[Any, str], Any] = _same
    parse: Callable[[str], Any] | None = None
    doc: str = ""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final[Any] = _Required()


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: name, kind, default, bounds (``minimum``/``maximum``, ``above``: strictly
    greater than ``minimum``), allowed ``choices`` (of the value, or of each item of a list),
    an extra ``rule`` returning a problem text, and a one-line ``doc``."""

    name: str
    kind: Kind
    default: Any = REQUIRED
    doc: str = ""
    optional: bool = False
    minimum: float | None = None
    above: bool = False
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    rule: Callable[[Any], str | None] | None = None
    expects: str = ""  # overrides "<kind name>[ or null]" in type errors

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: object, key: str) -> Any:
        """The normalised *value*, or raise :class:`ConfigurationError` naming *key*."""
        if value is None and self.optional:
            return None
        if value is None or not self.kind.accepts(value):
            expects = self.expects or self.kind.name + (" or null" if self.optional else "")
            got = "None" if value is None else f"{type_name(value)} ({value!r})"
            raise ConfigurationError(f"must be {expects}, not {got}", key)
        given, value = value, self.kind.normalize(value, key)
        problem = self._bounds_problem(value, given) or self._choices_problem(value)
        if problem is None and self.rule is not None:
            problem = self.rule(value)
        if problem is not None:
            raise ConfigurationError(problem, key)
        return value

    def _bounds_problem(self, value: Any, given: object) -> str | None:
        if self.minimum is not None and (value < self.minimum or (self.above and value == self.minimum)):
            return f"must be {'>' if self.above else '>='} {self.minimum:g} (got {given!r})"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum:g} (got {given!r})"
        return None

    def _choices_problem(self, value: Any) -> str | None:
        if not self.choices:
            return None
        listed = ", ".join(map(repr, self.choices))
        if isinstance(value, tuple):  # a list whose items must be some of the choices
            if value and all(v in self.choices for v in value):
                return None
            return f"{self.name} must be some of {listed} (got {list(value)!r})"
        return None if value in self.choices else f"must be one of {listed} (got {value!r})"

    def parse(self, text: str, raw: str, key: str) -> Any:
        """Convert the expansion *text* of a placeholder (in *raw*) to this field's kind."""
        if self.optional and not text.strip():
            return None
        parse = self.kind.parse
        if parse is not None:
            try:
                return parse(text)
            except ValueError:
                pass
        raise ConfigurationError(f"cannot convert {text!r} (from {raw!r}) to {self.kind.name}", key)


@dataclass(frozen=True, slots=True)
class Section:
    """A named group of fields (a config section, the ``FAIRQUE`` options, an alert rule type)."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    by_name: Mapping[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", types.MappingProxyType({f.name: f for f in self.fields}))

    def __getitem__(self, name: str) -> Field:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    def defaults(self) -> dict[str, Any]:
        """Field name -> default, for the fields that have one."""
        return {f.name: f.default for f in self.fields if not f.required}

    def unknown(self, raw: Mapping[Any, Any]) -> list[Any]:
        return [name for name in raw if name not in self.by_name]

    def check(self, raw: Mapping[Any, Any], key_of: Callable[[str], str]) -> tuple[dict[str, Any], list[Problem]]:
        """Check every key of *raw* that names a field (unknown keys are the caller's: the
        message differs per place); return the normalised values and the problems found."""
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, value in raw.items():
            spec = self.by_name.get(name)
            if spec is None:
                continue
            try:
                values[name] = spec.check(value, key_of(name))
            except ConfigurationError as exc:
                problems.extend(problems_of(exc))
        return values, problems

    def normalize(self, obj: object, base: str) -> None:
        """Check every field of the frozen dataclass *obj* in place (lists -> tuples, ...)."""
        for spec in self.fields:
            value = getattr(obj, spec.name)
            normalized = spec.check(value, join(base, spec.name))
            if normalized is not value:
                object.__setattr__(obj, spec.name, normalized)


def finite_float(value: Any, key: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigurationError(f"must be a finite number (got {value!r})", key)
    return number
