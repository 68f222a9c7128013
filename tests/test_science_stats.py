"""The statistics against SciPy, statsmodels' published values, or cases worked by hand."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from slopestudy.science import stats

T4 = 2.7764451  # t(0.975, 4)


def test_t_interval_known_case():
    mean, low, high = stats.t_interval([1, 2, 3, 4, 5])
    half = T4 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    assert mean == 3 and low == pytest.approx(3 - half) and high == pytest.approx(3 + half)
    assert math.isnan(stats.t_interval([0.5])[1])  # one seed: no interval


def test_welch_interval_and_p_match_scipy_and_a_hand_case():
    a, b = [0.90, 0.91, 0.93, 0.92], [0.95, 0.97, 0.96, 0.99, 0.98]
    diff, low, high = stats.welch_interval(a, b)
    test = sps.ttest_ind(b, a, equal_var=False)
    ci = test.confidence_interval(0.95)
    assert diff == pytest.approx(sum(b) / 5 - sum(a) / 4)
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert stats.welch_p(a, b) == pytest.approx(test.pvalue)
    # equal variances and sizes: Welch's dof is 2n-2, so t(0.975, 4) * sqrt(2 s^2 / n)
    diff, low, high = stats.welch_interval([1, 2, 3], [2, 3, 4])
    assert diff == 1 and high - diff == pytest.approx(T4 * math.sqrt(2 * 1 / 3))
    assert stats.welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0 and stats.welch_p([0.5, 0.5], [0.6, 0.6]) == 0.0
    assert math.isnan(stats.welch_p([0.5], [0.6, 0.7]))


def test_paired_interval_hand_case_and_scipy():
    a, b = [1, 2, 3, 4, 5], [2, 3, 5, 5, 7]  # differences 1, 1, 2, 1, 2: mean 1.4, s = sqrt(0.3)
    diff, low, high = stats.paired_interval(a, b)
    half = T4 * math.sqrt(0.3) / math.sqrt(5)
    assert diff == pytest.approx(1.4) and (low, high) == pytest.approx((1.4 - half, 1.4 + half))
    assert (low, high) == pytest.approx((0.7199, 2.0801), abs=1e-4)
    test = sps.ttest_rel(b, a)
    assert (low, high) == pytest.approx(tuple(test.confidence_interval(0.95)))
    assert stats.paired_p(a, b) == pytest.approx(test.pvalue)
    # a pair with a missing value drops out; pairing is narrower than Welch on the same runs
    assert stats.paired_interval([*a, np.nan], [*b, 9.0]) == pytest.approx((diff, low, high))
    assert high - low < stats.welch_interval(a, b)[2] - stats.welch_interval(a, b)[1]
    with pytest.raises(ValueError, match="not pairs"):
        stats.paired_interval([1, 2], [1, 2, 3])


def test_clopper_pearson_known_values():
    assert stats.proportion_ci(0, 5) == pytest.approx((0.0, 0.0, 0.5218), abs=1e-4)
    assert stats.proportion_ci(4, 5) == pytest.approx((0.8, 0.2836, 0.9949), abs=1e-4)
    assert stats.proportion_ci(5, 5) == pytest.approx((1.0, 0.4782, 1.0), abs=1e-4)
    # the exact interval is a Beta quantile: low = B(0.025; k, n-k+1), high = B(0.975; k+1, n-k)
    _, low, high = stats.proportion_ci(7, 20)
    assert low == pytest.approx(sps.beta.ppf(0.025, 7, 14)) and high == pytest.approx(
        sps.beta.ppf(0.975, 8, 13)
    )
    assert all(math.isnan(v) for v in stats.proportion_ci(0, 0))
    assert stats.fmt_rate(4, 5) == "4/5 [0.28, 0.99]" and stats.fmt_rate(0, 5) == "0/5 [0.00, 0.52]"
    # a bound that only rounds to 1 is not shown as 1: 9/10 reaches 0.997, 5/5 reaches 1 exactly
    assert stats.fmt_rate(9, 10) == "9/10 [0.555, 0.997]" and stats.fmt_rate(5, 5) == "5/5 [0.48, 1.00]"


def test_fisher_exact_hand_case():
    # 5/5 against 0/5: the only table as extreme either way; p = 2 / C(10, 5) = 2/252
    assert stats.fisher_p(5, 5, 0, 5) == pytest.approx(2 / 252)
    assert stats.fisher_p(3, 5, 3, 5) == 1.0
    assert stats.fisher_p(1, 5, 4, 5) == pytest.approx(sps.fisher_exact([[1, 4], [4, 1]]).pvalue)
    assert stats.fisher_p(1, 5, 4, 5) == pytest.approx(0.2063, abs=1e-4)  # 52/252
    assert math.isnan(stats.fisher_p(0, 0, 1, 5))


def test_holm_textbook_and_statsmodels_cases():
    # Holm's example as on Wikipedia: p = 0.01, 0.04, 0.03, 0.005 -> H1 and H4 rejected at 0.05
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (adjusted < 0.05).tolist() == [True, False, False, True]
    # statsmodels multipletests(p, method="holm") gives these (ties, the cap at 1, the running max)
    p = [0.2, 0.001, 0.04, 0.03, 0.5, 0.012, 0.012]
    assert stats.holm(p) == pytest.approx([0.4, 0.007, 0.12, 0.12, 0.5, 0.072, 0.072])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    # NaN (no test) stays NaN and is not in the family: m = 2 here, not 3
    out = stats.holm([0.01, math.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([]).size == 0


def test_learned_needs_accuracy_and_a_loss_below_chance():
    # Adam a=0.2 depth 30 (results/fair_final_adam, seeds 100-104): final val acc and val loss
    acc = [0.1413, 0.4721, 0.2135, 0.3834, 0.9223]
    loss = [2.72e8, 1.317, 2.604, 1.667, 0.315]
    diverged = [False] * 5
    # seed 102 reaches 0.2 but its loss ended above a uniform guess's (ln 10): not learned
    assert stats.learned(acc, diverged, loss).tolist() == [False, True, False, True, True]
    assert stats.learned(acc, diverged, loss, threshold=0.5).tolist() == [False, False, False, False, True]
    # a diverged run never learned whatever its accuracy; NaN accuracy or loss is not learned
    assert stats.learned([0.95, math.nan, 0.95], [True, False, False], [0.1, 0.1, math.nan]).tolist() == [
        False,
        False,
        False,
    ]
    assert stats.learned([0.9], [False], [math.log(10)]).tolist() == [False]  # at chance: not below it
    assert stats.NEVER_LEARNED == 0.2 and stats.SECOND_THRESHOLD == 0.5
    assert pytest.approx(2.302585) == stats.CHANCE_LOSS


def test_formatters():
    assert stats.fmt_ci(0.9714, 0.968, 0.9741) == "0.971 [0.968, 0.974]"
    assert stats.fmt_ci(-0.0001, -0.0002, 0.0001) == "0.000 [0.000, 0.000]"  # no "-0.000"
    assert stats.fmt_ci(0.5, math.nan, math.nan) == "0.500" and stats.fmt_ci(math.nan, 0, 1) == "–"
    assert stats.fmt_p(0.0449) == "0.045" and stats.fmt_p(1e-5) == "<0.001" and stats.fmt_p(math.nan) == "–"
