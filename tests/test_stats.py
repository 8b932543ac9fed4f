"""Paired statistics: Student's paired t-test and its 95% interval, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prdnet.stats import format_comparison, paired_t

# t quantile t(0.975, 4) from the Student table; two-sided p for t = 3√2 with 4 df from the closed
# form of the t distribution with 4 degrees of freedom: P(|T| ≥ t) = 1 − (t/√(t²+4))·(1 + 2/(t²+4)).
T_975_DF4 = 2.7764451


def test_paired_t_on_five_pairs_matches_the_hand_computation():
    a = np.array([11.0, 12.0, 13.0, 14.0, 15.0])
    b = np.array([10.0, 10.0, 10.0, 10.0, 10.0])  # differences 1..5
    result = paired_t(a, b)
    mean, sd = 3.0, math.sqrt(2.5)  # Σ(d−3)² = 10, /(n−1) = 2.5
    se = sd / math.sqrt(5)
    t = mean / se  # = 3√2
    p = 1 - (t / math.sqrt(t * t + 4)) * (1 + 2 / (t * t + 4))
    assert result.n_pairs == 5 and result.mean_difference == pytest.approx(3.0)
    assert result.p_value == pytest.approx(p, rel=1e-6) and result.p_value == pytest.approx(0.013236, abs=1e-5)
    assert (result.ci_low, result.ci_high) == pytest.approx((mean - T_975_DF4 * se, mean + T_975_DF4 * se), rel=1e-6)
    assert result.excludes_zero


def test_pairs_that_cancel_out_are_not_significant():
    result = paired_t([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0])  # differences −1, 1, −1, 1
    assert result.mean_difference == 0.0 and result.p_value == pytest.approx(1.0)
    assert result.ci_low < 0 < result.ci_high and not result.excludes_zero


def test_one_pair_gives_no_interval_and_no_p_value():
    result = paired_t([2.0], [1.0])
    assert result.n_pairs == 1 and math.isnan(result.p_value) and not result.excludes_zero
    assert format_comparison(result) == "+1 (n=1)"


def test_the_cell_shows_the_interval_p_value_and_a_marker():
    text = format_comparison(paired_t([11.0, 12.0, 13.0, 14.0, 15.0], [10.0] * 5))
    assert text == "+3 [+1.04, +4.96] p=0.013 *"
    assert format_comparison(paired_t([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0])).endswith("p=1")
