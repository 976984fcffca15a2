"""Figures with their spread: mean ± std, and paired differences with a 95% t interval and the
verdict "not distinguishable" when the interval holds 0."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_std(values: list[float]) -> str:
    """Mean ± sample standard deviation (ddof 1), in %."""
    a = np.asarray(values, dtype=float) * 100
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def paired_difference(a: dict[tuple, float], b: dict[tuple, float]) -> tuple[float, float, float, int] | None:
    """Mean of a − b over the pairs both have (same fold and seed), with its 95% t interval, in
    points of %; ``None`` with fewer than two pairs."""
    pairs = sorted(set(a) & set(b))
    if len(pairs) < 2:
        return None
    d = np.array([a[k] - b[k] for k in pairs]) * 100
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half), len(d)


def difference_cells(d: tuple[float, float, float, int]) -> str:
    """Mean, 95% interval and verdict of a ``paired_difference``, as three table cells."""
    mean, low, high, _ = d
    verdict = "not distinguishable" if low <= 0 <= high else ("better" if low > 0 else "worse")
    return f"{mean:+.2f} | [{low:+.2f}, {high:+.2f}] | {verdict}"
