"""Summaries over seeds: mean and spread, and a paired interval for the gap between methods."""

from __future__ import annotations

import math

# Two-sided 95% quantiles of Student's t by degrees of freedom (the normal's 1.96 beyond 30
# is within 4% of t's, and suites run a handful of seeds).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` >= 1 degrees of freedom."""
    if df < 1:
        raise ValueError(f"t975 needs df >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def paired_interval(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int] | None:
    """Mean of ``a[s] - b[s]`` over the seeds both have, and the half-width of its 95% t
    interval; None with fewer than 2 common seeds (no spread to estimate)."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    mean, sd = mean_std([a[s] - b[s] for s in common])
    return mean, t975(len(common) - 1) * sd / math.sqrt(len(common)), len(common)
