"""Reporting: numbers for tables, plain-text tables, ``name: value vs target PASS/MISS`` verdicts,
run metadata and JSON results."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from .server import redact, server_info


def out(line: str = "") -> None:
    print(line, flush=True)


def fmt(value: Any, digits: int = 2) -> str:
    """Numbers for tables: thousands separators, ``digits`` decimals below 100."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
          digits: int = 2) -> str:
    """A plain-text table (first column left-aligned, the others right-aligned); printed and returned."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values))

    text = []
    if title:
        text.append(title)
    text.append(line(list(headers)))
    text.append("  ".join("-" * w for w in widths))
    text += [line(r) for r in cells]
    rendered = "\n".join(text)
    out(rendered)
    return rendered


def verdict(name: str, value: float, target: float, op: str = ">=", unit: str = "",
            detail: str = "") -> dict[str, Any]:
    """Print ``name: value vs target PASS/MISS`` and return it as a record."""
    ok = {">=": value >= target, ">": value > target, "<=": value <= target, "<": value < target}[op]
    if math.isnan(value):
        ok = False
    u = f" {unit}" if unit else ""
    out(f"{name}: {fmt(value)}{u} vs target {op} {fmt(target)}{u} {'PASS' if ok else 'MISS'}"
        + (f" ({detail})" if detail else ""))
    return {"name": name, "value": value, "target": target, "op": op, "unit": unit, "pass": ok,
            "detail": detail}


def run_meta(url: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "redis_url": redact(url), "redis_py": redis.__version__,
    }
    try:
        meta.update(server_info(url))
        meta["load_avg"] = os.getloadavg()
    except (redis.RedisError, OSError):
        pass
    meta.update(extra)
    return meta


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON (non-JSON values via ``str``); creates the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True) + "\n", "utf-8")
    tmp.replace(path)
    return path


def parse_only(spec: str | None, allowed: Iterable[str]) -> list[str]:
    """``--only A,c`` -> ["A", "C"], validated against ``allowed`` (all when empty)."""
    allowed = [a.upper() for a in allowed]
    if not spec:
        return allowed
    chosen = [s.strip().upper() for s in spec.split(",") if s.strip()]
    bad = [c for c in chosen if c not in allowed]
    if bad:
        raise SystemExit(f"--only: unknown scenario(s) {bad}; choose from {allowed}")
    return [a for a in allowed if a in chosen]
