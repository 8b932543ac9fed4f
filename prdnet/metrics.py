"""Evaluation metrics, in the units of the task's target."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """MAE = (1/n) Σ |y − ŷ|, in the target's unit."""
    return float(np.mean(np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))))


def accuracy(labels: np.ndarray, predicted_labels: np.ndarray) -> float:
    """Fraction of correctly predicted class labels."""
    return float(np.mean(np.asarray(labels) == np.asarray(predicted_labels)))


def roc_auc(labels: np.ndarray, positive_probability: np.ndarray) -> float:
    """Area under the ROC curve of a binary task (NaN if only one class is present)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, positive_probability))


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
