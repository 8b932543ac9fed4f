"""Evaluation metrics, in the units of the task's target."""

from __future__ import annotations

import numpy as np


def mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """MAE = (1/n) Σ |y − ŷ|, in the target's unit."""
    return float(np.mean(np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))))


def accuracy(labels: np.ndarray, predicted_labels: np.ndarray) -> float:
    """Fraction of correctly predicted class labels."""
    return float(np.mean(np.asarray(labels) == np.asarray(predicted_labels)))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in ascending order; tied values share the mean of their ranks
    (the ranks of the Mann–Whitney U statistic)."""
    values = np.asarray(values, float)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first_of_group = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first_of_group)
    ends = np.r_[starts[1:], len(values)]  # one past each group's last position
    group_rank = (starts + ends + 1) / 2.0  # mean of the 1-based positions starts+1 … ends
    ranks = np.empty(len(values))
    ranks[order] = group_rank[np.cumsum(first_of_group) - 1]
    return ranks


def roc_auc(labels: np.ndarray, positive_probability: np.ndarray) -> float:
    """Area under the ROC curve of a binary task, the positive class being the larger label:
    AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋), R₊ the sum of the positives' average ranks of the score
    (the Mann–Whitney form: the probability that a random positive outscores a random negative,
    ties counting one half). NaN if only one class is present."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        return float("nan")
    if len(classes) > 2:
        raise ValueError(f"roc_auc needs a binary task; got {len(classes)} classes")
    positive = labels == classes[1]
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    rank_sum = average_ranks(positive_probability)[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def task_metrics(kind: str, y_true: np.ndarray, y_pred: np.ndarray, probability: np.ndarray | None = None) -> dict[str, float]:
    """``{'mae': …}`` for regression; ``{'accuracy': …, 'roc_auc': …}`` for classification."""
    if kind == "regression":
        return {"mae": mean_absolute_error(y_true, y_pred)}
    metrics = {"accuracy": accuracy(y_true, y_pred)}
    if probability is not None:
        metrics["roc_auc"] = roc_auc(y_true, probability)
    return metrics


def primary_metric(kind: str) -> tuple[str, str]:
    """The metric used for model selection and tables, and its direction ('min' or 'max')."""
    return ("mae", "min") if kind == "regression" else ("accuracy", "max")
