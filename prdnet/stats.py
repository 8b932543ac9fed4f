"""Paired statistics for the benchmark tables: is a difference between two variants real?

Two variants (with vs without diffraction, or model A vs model B) are compared on the jobs they
share: the same task, fold and seed, hence the same training, validation and test ids. For each
shared (fold, seed) the difference d_i = a_i − b_i of the test metric is one pair. With n pairs,
mean d̄ and sample standard deviation s (ddof 1):

    standard error   se = s / √n
    t statistic      t  = d̄ / se,                 n − 1 degrees of freedom
    two-sided p      p  = 2 · P(T_{n−1} ≥ |t|)     (Student's paired t-test)
    95% interval     d̄ ± t_{0.975, n−1} · se

Why the t-test: the benchmark has few pairs (5 MatBench folds × a few seeds; 1 fold × a few seeds
on MP). Wilcoxon's signed-rank test cannot reach p < 0.05 with fewer than 6 pairs (its smallest
two-sided p with n = 5 is 1/16), and a bootstrap interval from 2–10 pairs is too narrow. The
t-test is exact when the differences are normal; with n = 2 its interval is wide (t = 12.7) and
honest about it. Folds share most training data and seeds of one fold share its test set, so the
pairs are not fully independent and the interval errs on the narrow side (Nadeau & Bengio 2003).
With fewer than two pairs there is no interval and no p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
METHOD_NOTE = (
    "Paired statistics: differences paired by fold and seed (same training and test ids); mean "
    "difference, 95% confidence interval d̄ ± t(0.975, n−1)·s/√n and two-sided p from Student's paired "
    "t-test on the n pairs (exact for normal differences; pairs from overlapping folds are not fully "
    "independent, so the interval errs on the narrow side; fewer than 2 pairs: no interval). "
    "* = the interval excludes zero."
)


@dataclass(frozen=True)
class PairedComparison:
    """Mean paired difference, its 95% interval and the paired t-test's two-sided p-value."""

    n_pairs: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely on one side of zero (NaN intervals never do)."""
        return bool(self.ci_low > 0 or self.ci_high < 0)


def paired_t(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> PairedComparison:
    """Student's paired t-test of ``a − b`` (arrays aligned pair by pair)."""
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if differences.ndim != 1 or differences.size == 0:
        raise ValueError(f"need a non-empty 1-d array of pairs, got shape {differences.shape}")
    n = differences.size
    mean = float(differences.mean())
    if n < 2:
        return PairedComparison(n, mean, math.nan, math.nan, math.nan)
    standard_error = float(differences.std(ddof=1)) / math.sqrt(n)
    if standard_error == 0.0:  # every pair differs by the same amount
        p_value = 1.0 if mean == 0.0 else 0.0
        return PairedComparison(n, mean, mean, mean, p_value)
    t_statistic = mean / standard_error
    p_value = float(2.0 * stats.t.sf(abs(t_statistic), df=n - 1))
    half_width = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * standard_error
    return PairedComparison(n, mean, mean - half_width, mean + half_width, p_value)


def format_comparison(comparison: PairedComparison, scale: float = 1.0) -> str:
    """``+0.012 [-0.030, +0.054] p=0.41`` (``*`` appended when the interval excludes zero)."""
    mean = f"{comparison.mean_difference * scale:+.3g}"
    if comparison.n_pairs < 2:
        return f"{mean} (n=1)"
    low, high = comparison.ci_low * scale, comparison.ci_high * scale
    marker = " *" if comparison.excludes_zero else ""
    return f"{mean} [{low:+.3g}, {high:+.3g}] p={comparison.p_value:.2g}{marker}"
