"""Per-tenant limits: the ``queue.tenant_concurrency`` / ``queue.tenant_limits`` settings, rates
such as ``"10/s"``, and the spec strings the Lua scripts read (``P:tlimits``, ``P:limitcfg``).

A spec is ``"cap\\tinterval_ms\\tburst\\trate"``: each part a number, ``''`` (not set here: the
next source decides) or ``'-'`` (explicitly none). ``interval_ms`` is the rate's emission interval
(``10/s`` -> 100 ms); ``rate`` its text, for display. Sources, per field: the runtime limits
(Redis), then the settings entry (an exact id before glob patterns in declaration order: the first
match wins), then the default (``tenant_concurrency`` for the cap, no rate, burst 1).
"""

from __future__ import annotations

import enum
import hashlib
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigurationError
from ..ids import is_pattern, user_id_problem
from .kinds import map_item
from .topology import glob_match, glob_to_lua_pattern

__all__ = ["LIMIT_KEYS", "RATE_UNITS", "UNCHANGED", "LimitSpec", "Unchanged", "effective_limits", "limit_spec",
           "limits_mirror", "parse_rate", "settings_entry", "tenant_limits_setting"]

RATE_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
LIMIT_KEYS: Final = ("concurrency", "rate", "burst")
_RATE_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")


class Unchanged(enum.Enum):
    """The default of ``set_tenant_limits``' arguments: keep the runtime value set before."""

    UNCHANGED = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED


def parse_rate(rate: object) -> float:
    """The emission interval in ms of a rate such as ``"10/s"``, ``"100/m"``, ``"1000/h"``;
    raises ValueError with the reason."""
    if not isinstance(rate, str):
        raise ValueError(f"a rate is a string such as '10/s', '100/m' or '1000/h', not {type(rate).__name__}")
    found = _RATE_RE.match(rate)
    if not found:
        raise ValueError(f"{rate!r} is not a rate: write N/s, N/m or N/h (e.g. '10/s')")
    count = float(found.group(1))
    if count <= 0:
        raise ValueError(f"{rate!r}: the number of tasks must be > 0")
    return RATE_UNITS[found.group(2)] * 1000.0 / count


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One source's limits; ``None``: not set by this source. A runtime ``concurrency``/``rate``
    of ``False`` means explicitly none (it overrides the settings)."""

    concurrency: int | bool | None = None
    rate: str | bool | None = None
    burst: int | None = None

    def encode(self) -> str:
        """The spec string the scripts read."""
        def part(value: Any, conv: Any) -> str:
            if value is None:
                return ""
            if value is False:
                return "-"
            return str(conv(value))
        return "\t".join((part(self.concurrency, str), part(self.rate, lambda r: repr(parse_rate(r))),
                          part(self.burst, str), part(self.rate, str)))

    @classmethod
    def decode(cls, spec: str | None) -> LimitSpec | None:
        """The runtime limits stored as ``spec`` (None: none stored, or a malformed one, which the
        scripts drop at their next look)."""
        if spec is None:
            return None
        parts = spec.split("\t")
        if len(parts) != 4:
            return None

        def whole(text: str) -> int | bool | None:
            if text == "-":
                return False
            return int(text) if text.isdigit() and int(text) > 0 else None
        rate: str | bool | None = False if parts[3] == "-" else (parts[3] or None)
        if parts[1] == "-":
            rate = False
        burst = whole(parts[2])
        return cls(whole(parts[0]), rate, None if burst is False else burst)


def _whole(value: object, what: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ConfigurationError(f"{what} must be an integer >= 1, not {value!r}", key)
    if value < 1:
        raise ConfigurationError(f"{what} must be >= 1 (got {value!r})", key)
    return int(value)


def limit_spec(raw: Mapping[Any, Any], key: str) -> LimitSpec:
    """A checked settings entry ``{"concurrency": N, "rate": "10/s", "burst": N}`` (all optional)."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"must be a mapping with keys {', '.join(LIMIT_KEYS)}, not {type(raw).__name__}", key)
    for name in raw:
        if name not in LIMIT_KEYS:
            raise ConfigurationError(f"unknown key {name!r} (allowed keys: {', '.join(LIMIT_KEYS)})", key)
    conc = raw.get("concurrency")
    rate = raw.get("rate")
    burst = raw.get("burst")
    if conc is not None:
        conc = _whole(conc, "concurrency", key)
    if rate is not None:
        try:
            parse_rate(rate)
        except ValueError as exc:
            raise ConfigurationError(f"rate: {exc}", key) from None
    if burst is not None:
        burst = _whole(burst, "burst", key)
    return LimitSpec(conc, rate, burst)


def tenant_limits_setting(value: Mapping[Any, Any], key: str) -> Mapping[str, Mapping[str, Any]]:
    """``queue.tenant_limits`` checked: id or glob pattern -> its limits (read-only mappings)."""
    out: dict[str, Mapping[str, Any]] = {}
    for entry, raw in value.items():
        entry_key = map_item(key, entry)
        problem = user_id_problem(entry, allow_pattern=True)
        if problem is not None:
            raise ConfigurationError(problem, entry_key)
        spec = limit_spec(raw, entry_key)
        out[entry] = types.MappingProxyType({k: v for k, v in (("concurrency", spec.concurrency), ("rate", spec.rate),
                                                                 ("burst", spec.burst)) if v is not None})
    return types.MappingProxyType(out)


def settings_entry(limits: Mapping[str, Mapping[str, Any]], user_id: str) -> str | None:
    """The ``tenant_limits`` entry that applies to ``user_id``: its exact id, else the first
    matching glob pattern (declaration order), else None."""
    if user_id in limits:
        return user_id
    for entry in limits:
        if is_pattern(entry) and glob_match(entry, user_id):
            return entry
    return None


def effective_limits(default_cap: int | None, limits: Mapping[str, Mapping[str, Any]], user_id: str,
                     runtime: LimitSpec | None) -> dict[str, Any]:
    """The limits in force for ``user_id`` and where each comes from (``"runtime"``,
    ``"settings:<entry>"`` or ``"default"``): what the scripts apply (see the module doc)."""
    entry = settings_entry(limits, user_id)
    found = limits.get(entry, {}) if entry is not None else {}
    out: dict[str, Any] = {}
    defaults: dict[str, Any] = {"concurrency": default_cap, "rate": None, "burst": 1}
    for name in LIMIT_KEYS:
        given = getattr(runtime, name) if runtime is not None else None
        if given is not None:
            out[name], out[f"{name}_source"] = (None if given is False else given), "runtime"
        elif found.get(name) is not None:
            out[name], out[f"{name}_source"] = found[name], f"settings:{entry}"
        else:
            out[name], out[f"{name}_source"] = defaults[name], "default"
    return out


def limits_mirror(default_cap: int | None, limits: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[Any]]:
    """(digest, fields) of ``P:limitcfg``, the settings as the scripts read them: ``def`` the
    default cap, ``x:<id>`` the spec of an exact entry, ``p`` the patterns in order, one line
    each ``<anchored Lua pattern>\\t<spec>``."""
    fields: list[Any] = ["def", "" if default_cap is None else str(default_cap)]
    lines: list[str] = []
    for entry, raw in limits.items():
        spec = LimitSpec(raw.get("concurrency"), raw.get("rate"), raw.get("burst")).encode()
        if is_pattern(entry):
            lines.append(f"{glob_to_lua_pattern(entry)}\t{spec}")
        else:
            fields += [f"x:{entry}", spec]
    fields += ["p", "\n".join(lines)]
    digest = hashlib.sha1("\x00".join(map(str, fields)).encode("utf-8")).hexdigest()[:16]
    return digest, fields
