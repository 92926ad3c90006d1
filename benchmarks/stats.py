"""Figures: quantiles of samples, and the agent's handling time from its histograms."""

from __future__ import annotations

import statistics


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"n": len(ms), "p50_ms": quantile(ms, 0.5), "p99_ms": quantile(ms, 0.99),
            "mean_ms": statistics.fmean(ms) if ms else float("nan")}


def handling(before: dict, after: dict, methods: list[str]) -> dict[str, dict[str, float]]:
    """Per method, between two scrapes: calls, mean and (histogram-interpolated) median ms."""
    out = {}
    for m in methods:
        c0, s0, b0 = before.get(m, (0, 0.0, []))
        c1, s1, b1 = after.get(m, (0, 0.0, []))
        n = c1 - c0
        if n <= 0:
            continue
        prev = dict(b0)
        buckets = [(le, cnt - prev.get(le, 0)) for le, cnt in b1]
        out[m] = {"calls": n, "mean_ms": (s1 - s0) / n * 1000,
                  "p50_ms": _histogram_quantile(buckets, 0.5) * 1000}
    return out


def _histogram_quantile(cumulative: list[tuple[float, int]], q: float) -> float:
    total = cumulative[-1][1] if cumulative else 0
    if total == 0:
        return float("nan")
    rank = q * total
    prev_le, prev_count = 0.0, 0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            span = count - prev_count
            frac = (rank - prev_count) / span if span else 0.0
            return prev_le + (le - prev_le) * frac
        prev_le, prev_count = le, count
    return prev_le
