"""The emulation of the released PRDNet evaluation (benchmarks/emulate_released_evaluation.py):
each split standardized with its own statistics, MAE in standardized units, drop_last batches."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from emulate_released_evaluation import kept_by_drop_last, released_style_mae  # noqa: E402


def test_a_drop_last_loader_of_batch_64_scores_whole_batches_only():
    assert [kept_by_drop_last(n) for n in (40, 64, 127, 128, 400)] == [0, 64, 64, 128, 384]


def test_perfect_predictions_score_zero_only_when_the_test_split_has_the_training_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(2.0, 3.0, 1000)
    test = (train[:128] - train[:128].mean()) / train[:128].std(ddof=1) * train.std(ddof=1) + train.mean()
    assert released_style_mae(train, test, test) == pytest.approx(0.0, abs=1e-12)
    shifted = test + 1.5  # the test split's own standardization hides a shift of its mean
    assert released_style_mae(train, shifted, shifted) == pytest.approx(1.5 / train.std(ddof=1) * np.std(
        (train - train.mean()) / train.std(ddof=1)), rel=1e-9)


def test_the_reported_mae_is_in_units_of_standard_deviations_not_the_target_unit():
    rng = np.random.default_rng(1)
    train, test = rng.normal(0.0, 1.0, 2000), rng.normal(0.0, 1.0, 256)
    predicted = test + rng.normal(0.0, 0.1, 256)
    base = released_style_mae(train, test, predicted)
    # the same crystals in a unit 1000 times smaller (eV → meV): our MAE × 1000, the released one unchanged
    assert released_style_mae(train * 1000, test * 1000, predicted * 1000) == pytest.approx(base, rel=1e-9)
    assert np.mean(np.abs(predicted * 1000 - test * 1000)) == pytest.approx(1000 * np.mean(np.abs(predicted - test)))


def test_a_test_split_smaller_than_one_batch_scores_nothing():
    values = np.linspace(0, 1, 40)
    assert np.isnan(released_style_mae(values, values, values))
    assert released_style_mae(values, values, values, drop_last=False) == pytest.approx(0.0, abs=1e-12)
