"""Statistics of the benchmarks: medians, percentiles, ratios of same-repetition pairs, Jain's index."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return float(s[0])
    k = (len(s) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """n, mean, p50, p95, p99, max (and min) of ``values`` multiplied by ``scale``."""
    if not values:
        nan = float("nan")
        return {"n": 0, "mean": nan, "min": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    v = [x * scale for x in values]
    return {"n": len(v), "mean": statistics.fmean(v), "min": min(v), "p50": percentile(v, 50),
            "p95": percentile(v, 95), "p99": percentile(v, 99), "max": max(v)}


def median_summary(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Field-by-field median of several :func:`summarize` results (one per repetition)."""
    if not runs:
        return {}
    return {k: median([r[k] for r in runs]) for k in runs[0]}


def paired_ratio(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Median of x/y over same-repetition pairs (a noisy moment hits both sides of a pair)."""
    return median([x / y for x, y in zip(xs, ys, strict=True)])


def jain(xs: list[float]) -> float:
    s2 = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * s2) if s2 > 0 else 1.0


def water_fill(caps: list[float], total: float) -> list[float]:
    """Max-min fair split of ``total`` among claimants capped at ``caps``."""
    order = sorted(range(len(caps)), key=lambda i: caps[i])
    out = [0.0] * len(caps)
    remaining = total
    for k, i in enumerate(order):
        share = remaining / (len(caps) - k)
        take = min(caps[i], share)
        out[i] = take
        remaining -= take
    return out


def median_of(runs: list[dict[str, Any]], path: tuple[str, ...]) -> float:
    vals = []
    for run in runs:
        v: Any = run
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and not math.isnan(v):
            vals.append(float(v))
    return statistics.median(vals) if vals else float("nan")
