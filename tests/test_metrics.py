"""The metrics are plain NumPy (no scikit-learn import in a training job); the ROC AUC equals the
Mann–Whitney probability, ties counting one half."""

from __future__ import annotations

import numpy as np
import pytest

from prdnet.metrics import average_ranks, roc_auc


def test_tied_values_share_the_mean_of_their_ranks():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4.0, 1.0, 4.0, 2.0, 4.0])


def test_roc_auc_of_a_hand_counted_case():
    # positives score 0.9 and 0.5, negatives 0.5 and 0.1: of the 4 pairs, 3 won and 1 tied → 3.5 / 4
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.875)


def test_roc_auc_equals_scikit_learn_with_many_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # rounded: many ties
    assert roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_is_undefined_with_one_class_and_refused_with_three():
    assert np.isnan(roc_auc(np.zeros(4), np.arange(4.0)))
    with pytest.raises(ValueError, match="binary"):
        roc_auc(np.array([0, 1, 2]), np.arange(3.0))
