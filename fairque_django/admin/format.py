"""Display helpers shared by the admin pages (no queue access)."""

from __future__ import annotations

from datetime import datetime, timezone


def format_age(seconds: float | None) -> str:
    """A short human duration: ``"0.4 s"``, ``"42 s"``, ``"3 min 5 s"``, ``"2 h 3 min"``, ``"4 d 2 h"``."""
    if seconds is None:
        return "—"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{int(s)} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def when(ts: float | None) -> datetime | None:
    """A Unix time as an aware datetime (None for none or 0)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts else None
