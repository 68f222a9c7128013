"""The statistics every number in the findings is reported with: one definition each.

- learned:    not diverged, and at the end of training validation accuracy >= NEVER_LEARNED and
              validation loss finite and below CHANCE_LOSS (test accuracy and loss where there
              is no validation split); else a failure. Failure counts also at SECOND_THRESHOLD,
              to show they do not hinge on the cut.
- one arm:    mean ± t(0.975, n-1) · s/√n over the runs that learned   (Student t interval)
- two arms:   (mean_b - mean_a) ± t(0.975, ν) · √(s_a²/n_a + s_b²/n_b)  (Welch; ν by
              Welch–Satterthwaite), only where neither arm has failures
- pairs:      mean of the per-seed differences b_i - a_i ± t(0.975, n-1) · s_d/√n  (runs that
              share seed, initial weights and batch order, e.g. PReLU and its fixed-slope twin)
- k/n:        success rate with the exact Clopper–Pearson interval; two rates compared with
              Fisher's exact test (deep nets learn or stay at chance: bimodal, so no t-interval)
- families:   Holm's step-down adjustment of the p-values of a table of comparisons; a
              difference is "resolved" only if its adjusted p < ALPHA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
ALPHA = 1 - LEVEL

# A run "never learned" when its final validation accuracy (test accuracy where there is no
# validation split) stays below this: about twice chance (0.1135 on MNIST). Why here: of the
# 1132 committed runs with a validation split, 416 end within 0.05-0.15 (at chance) and 658
# above 0.8; the 58 between 0.2 and 0.8 are sparse, with no empty gap (13 in 0.3-0.5, the
# sparsest stretch). So the cut is a convention, and every failure count is also reported at
# SECOND_THRESHOLD (the phase diagram's line between "learns" and "stalls"): where the two
# counts differ, the runs in between are the story. Failures (this, or diverged) are counted
# as k/n, never averaged into an accuracy.
NEVER_LEARNED = 0.2
SECOND_THRESHOLD = 0.5
# ...and its loss on the same held-out examples is finite and below a uniform 10-class guess's
# cross-entropy (ln 10): accuracy alone let through runs whose training had blown up (Adam a=0.5
# at depth 30 ended at val acc 0.27-0.41 with validation loss 7.7-90). Why the evaluation loss and
# not runs.csv's train_loss: that is the mean over the last epoch (over all of training in a
# 1-epoch run), so a run that spiked early and recovered (val acc 0.85, val loss 0.60) would fail.
CHANCE_LOSS = math.log(10)
LEARNED_RULE = (
    f"not diverged, final val acc ≥ {NEVER_LEARNED:g} and final val loss below ln 10 ≈ {CHANCE_LOSS:.2f}"
)


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


# --- learned or not --------------------------------------------------------------------------
def learned(
    acc: Sequence[float],
    diverged: Sequence[bool],
    loss: Sequence[float],
    threshold: float = NEVER_LEARNED,
) -> np.ndarray:
    """Per run: True if it learned (the one rule: LEARNED_RULE; `acc` and `loss` measured at the
    end on the same held-out examples; NaN accuracy or loss: not learned)."""
    acc, loss = np.asarray(acc, dtype=float), np.asarray(loss, dtype=float)
    with np.errstate(invalid="ignore"):
        return ~np.asarray(diverged, dtype=bool) & (acc >= threshold) & (loss < CHANCE_LOSS)


# --- means over seeds ------------------------------------------------------------------------
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


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of Welch's test of mean(b) = mean(a); NaN unless both arms have 2+ values."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # no spread: the difference is exact
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(sps.ttest_ind(b, a, equal_var=False).pvalue)


def _pairs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """b_i - a_i over the pairs where both are finite (a[i], b[i]: the same seed's two runs)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired: {len(a)} and {len(b)} values are not pairs")
    keep = np.isfinite(a) & np.isfinite(b)
    return b[keep] - a[keep]


def paired_interval(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL
) -> tuple[float, float, float]:
    """(mean of b_i - a_i, low, high): the t interval of the per-seed differences (SciPy's
    ttest_rel); NaN bounds with fewer than 2 pairs."""
    d = _pairs(a, b)
    return t_interval(d, level)


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of the paired t test of b_i - a_i = 0; NaN with fewer than 2 pairs."""
    d = _pairs(a, b)
    if len(d) < 2:
        return math.nan
    if np.all(d == d[0]):  # every pair differs by the same amount: exact
        return 1.0 if d[0] == 0 else 0.0
    return float(sps.ttest_1samp(d, 0.0).pvalue)


# --- success rates ---------------------------------------------------------------------------
def proportion_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float, float]:
    """(k/n, low, high): the exact Clopper–Pearson interval of a success rate; NaN for n = 0."""
    if n == 0:
        return math.nan, math.nan, math.nan
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return k / n, float(ci.low), float(ci.high)


def fisher_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p of Fisher's exact test that two success rates k_a/n_a and k_b/n_b are equal."""
    if n_a == 0 or n_b == 0:
        return math.nan
    table = [[int(k_a), int(n_a - k_a)], [int(k_b), int(n_b - k_b)]]
    return float(sps.fisher_exact(table).pvalue)


# --- many comparisons ------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input's order; NaN stays NaN and is not
    counted in the family. The i-th smallest of m is multiplied by m - i (i from 0), then the
    running maximum is taken (an adjusted p never falls below a smaller one's), capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


# --- text ------------------------------------------------------------------------------------
def fmt_interval(low: float, high: float, digits: int = 3) -> str:
    """'[0.968, 0.974]', or '' when there is no interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    low, high = (round(v, digits) + 0.0 for v in (low, high))  # + 0.0: no "-0.000"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def fmt_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """'0.971 [0.968, 0.974]', or just the mean when there is no interval."""
    if not math.isfinite(mean):
        return "–"
    text = f"{round(mean, digits) + 0.0:.{digits}f}"
    bounds = fmt_interval(low, high, digits)
    return f"{text} {bounds}" if bounds else text


def fmt_rate(k: int, n: int, digits: int = 2) -> str:
    """'4/5 [0.28, 0.99]': k of n with its Clopper–Pearson interval."""
    if n == 0:
        return "0/0"
    _, low, high = proportion_ci(k, n)
    # a bound that only rounds to 0 or 1 (9/10: 0.997) gets one more digit: "1.00" would claim
    # an interval that reaches certainty
    if (low > 0 and round(low, digits) == 0) or (high < 1 and round(high, digits) == 1):
        digits += 1
    return f"{int(k)}/{int(n)} {fmt_interval(low, high, digits)}"


def fmt_p(p: float) -> str:
    """'0.045', '<0.001', or '–' when there is no test."""
    if not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
