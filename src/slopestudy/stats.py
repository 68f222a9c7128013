"""Confidence intervals over seeds: what every accuracy in the findings is reported with.

- one arm:  mean ± t(0.975, n-1) · s/√n                         (Student t interval)
- two arms: (mean_b - mean_a) ± t(0.975, ν) · √(s_a²/n_a + s_b²/n_b)  (Welch; ν by
  Welch–Satterthwaite), so arms with different spreads or seed counts are compared fairly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of the mean; NaN bounds with fewer than 2 values."""
    x = _clean(values)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def welch_interval(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL
) -> tuple[float, float, float]:
    """(mean(b) - mean(a), low, high); NaN bounds unless both arms have 2+ values."""
    a, b = _clean(a), _clean(b)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # identical values in both arms: the difference is exact
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = sps.t.ppf(0.5 + level / 2, dof) * se
    return diff, diff - half, diff + half


def fmt_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """'0.971 [0.968, 0.974]', or just the mean when there is no interval."""
    if not math.isfinite(mean):
        return "–"
    mean, low, high = (round(v, digits) + 0.0 for v in (mean, low, high))  # + 0.0: no "-0.000"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
