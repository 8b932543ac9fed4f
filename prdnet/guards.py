"""The Dummy baseline and the sanity guards of a finished training job.

A job can exit 0 and still be no result: a model that outputs one value for every crystal, a
train/eval mismatch (batch norm in eval mode amplifying a leak), a loss that became NaN. The
guards below name each case; a flagged job keeps its files, and its flags appear in
``metrics.json``, the tables and as an MLflow tag, never as a silent row.

Dummy (MatBench's "Dummy" leaderboard entry): predict the mean of the training targets
(regression) or the majority class (classification) for every test crystal, fitted on every
non-test crystal of the fold (training and validation parts), as the leaderboard's Dummy is
fitted on the whole official training fold.

Guards (thresholds in :class:`SanityThresholds`, config block ``sanity``):
- ``worse_than_dummy``: test error ≥ the Dummy's on the same test set (MAE), or test accuracy ≤
  the Dummy's (classification);
- ``constant_predictions``: std of the test predictions < ``constant_fraction`` × std of the test
  targets (regression), or one predicted class and a spread of predicted probabilities below
  ``constant_fraction`` (classification);
- ``validation_exploded``: at some epoch the validation error exceeds ``explosion_factor`` × its
  best value so far while the training loss is below its first epoch's (train/eval mismatch);
- non-finite loss or metric: not a flag but an error (:class:`NonFiniteError`): the job fails with
  the epoch and batch where it happened, instead of writing ``Infinity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DUMMY_MODEL = "dummy"
"""The model name of the Dummy baseline in the workflow, tables, MatBench files and MLflow."""


class NonFiniteError(FloatingPointError):
    """A loss or metric became NaN or infinite."""


@dataclass(frozen=True)
class SanityThresholds:
    """Thresholds of the guards (config block ``sanity``)."""

    constant_fraction: float = 0.01
    """Prediction spread below this fraction of the targets' spread counts as constant."""
    explosion_factor: float = 10.0
    """Validation error above this multiple of its best so far counts as exploded."""


def dummy_prediction(fit_targets: np.ndarray, kind: str) -> float:
    """The Dummy's one prediction: mean of ``fit_targets`` (regression, in the target's unit) or
    the most frequent class (classification; the smallest label on a tie)."""
    fit_targets = np.asarray(fit_targets)
    if kind == "classification":
        labels, counts = np.unique(fit_targets.astype(int), return_counts=True)
        return float(labels[np.argmax(counts)])
    return float(np.mean(fit_targets))


def require_finite(value: float, what: str) -> float:
    """``value`` if it is finite, else raise :class:`NonFiniteError` naming ``what``."""
    if not math.isfinite(value):
        raise NonFiniteError(f"{what} is {value}: the training diverged (try a lower learning rate, gradient "
                             "clipping (training.max_grad_norm) or check the targets for absurd values)")  # fmt: skip
    return value


def _error(kind: str, metric_value: float) -> float:
    """An error where lower is better: MAE as is, 1 − accuracy for classification."""
    return 1.0 - metric_value if kind == "classification" else metric_value


def sanity_flags(
    kind: str,
    test_true: np.ndarray,
    test_predicted: np.ndarray,
    test_probability: np.ndarray | None,
    test_metric: float,
    dummy_test_metric: float,
    train_losses: list[float],
    val_metrics: list[float],
    thresholds: SanityThresholds = SanityThresholds(),
) -> dict[str, str]:
    """The guards that fire, as {flag: explanation} (empty when the job looks sound).

    ``test_metric`` and ``dummy_test_metric`` are the primary metric (MAE or accuracy) of the
    model and of the Dummy on the same test set; ``train_losses`` and ``val_metrics`` the
    per-epoch history.
    """
    flags: dict[str, str] = {}
    if _error(kind, test_metric) >= _error(kind, dummy_test_metric):
        flags["worse_than_dummy"] = f"test metric {test_metric:.6g} is not better than the Dummy's {dummy_test_metric:.6g}"
    if kind == "classification":
        spread = float(np.ptp(test_probability)) if test_probability is not None and len(test_probability) else 0.0
        if len(np.unique(test_predicted)) <= 1 and spread < thresholds.constant_fraction:
            flags["constant_predictions"] = f"one predicted class; probabilities spread {spread:.3g}"
    else:
        prediction_std, target_std = float(np.std(test_predicted)), float(np.std(test_true))
        if prediction_std < thresholds.constant_fraction * target_std:
            flags["constant_predictions"] = (f"predictions spread (std) {prediction_std:.3g} < "
                                             f"{thresholds.constant_fraction:g} × targets' {target_std:.3g}")  # fmt: skip
    errors = [_error(kind, value) for value in val_metrics]
    for epoch in range(1, len(errors)):
        best_so_far = min(errors[:epoch])
        if train_losses[epoch] < train_losses[0] and errors[epoch] > thresholds.explosion_factor * best_so_far > 0:
            flags["validation_exploded"] = (f"epoch {epoch + 1}: validation error {errors[epoch]:.6g} > "
                                            f"{thresholds.explosion_factor:g} × best so far {best_so_far:.6g} "
                                            "while the training loss fell")  # fmt: skip
            break
    return flags
