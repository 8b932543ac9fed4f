"""Figures of a benchmark run as PNG bytes (matplotlib's Agg canvas; no display, no pyplot state).

Used by the HTML report (:mod:`prdnet.html_report`) and logged with each MLflow run
(:mod:`prdnet.tracking`), so both show the same pictures.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 90
METRIC_NAMES = {"mae": "MAE", "accuracy": "accuracy", "roc_auc": "ROC-AUC"}


def to_png(figure: Figure) -> bytes:
    """The figure rendered as PNG bytes."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def parity_png(true: np.ndarray, predicted: np.ndarray, title: str, unit: str = "") -> bytes:
    """Predicted against true test values, with the y = x line and the MAE in the legend."""
    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    figure = Figure(figsize=(3.4, 3.2))
    axes = figure.add_subplot()
    low = float(np.nanmin([true.min(), predicted.min()])) if true.size else 0.0
    high = float(np.nanmax([true.max(), predicted.max()])) if true.size else 1.0
    axes.plot([low, high], [low, high], color="0.6", lw=1, zorder=1)
    mae = float(np.mean(np.abs(predicted - true))) if true.size else float("nan")
    axes.scatter(true, predicted, s=8, alpha=0.6, zorder=2, label=f"MAE {mae:.3g} {unit}".rstrip())
    suffix = f" ({unit})" if unit else ""
    axes.set(xlabel=f"true{suffix}", ylabel=f"predicted{suffix}", title=title)
    axes.title.set_fontsize(8)
    axes.legend(loc="upper left", fontsize=7, frameon=False)
    return to_png(figure)


def probability_png(true: np.ndarray, probability: np.ndarray, title: str) -> bytes:
    """Classification: histogram of the predicted probability of class 1, per true class."""
    true, probability = np.asarray(true), np.asarray(probability, dtype=float)
    figure = Figure(figsize=(3.4, 3.2))
    axes = figure.add_subplot()
    bins = np.linspace(0, 1, 21)
    for label in (0, 1):
        axes.hist(probability[true == label], bins=bins, alpha=0.6, label=f"true class {label}")
    axes.set(xlabel="predicted probability of class 1", ylabel="test crystals", title=title)
    axes.title.set_fontsize(8)
    axes.legend(fontsize=7, frameon=False)
    return to_png(figure)


def learning_curve_png(history: pd.DataFrame, metric: str, title: str, unit: str = "") -> bytes:
    """Training and validation metric per epoch (history.csv columns ``train_<m>``, ``val_<m>``)."""
    figure = Figure(figsize=(3.4, 3.2))
    axes = figure.add_subplot()
    for split in ("train", "val"):
        column = f"{split}_{metric}"
        if column in history:
            axes.plot(history["epoch"], history[column], marker="o", ms=3, label=split)
    label = METRIC_NAMES.get(metric, metric) + (f" ({unit})" if unit and metric == "mae" else "")
    axes.set(xlabel="epoch", ylabel=label, title=title)
    axes.title.set_fontsize(8)
    axes.legend(fontsize=7, frameon=False)
    return to_png(figure)


def bar_chart_png(summary: pd.DataFrame, title: str, ylabel: str) -> bytes:
    """One group of bars per model variant (``label``), one bar per diffraction mode: the mean with
    error bars of ± one standard deviation (columns ``label``, ``diffraction``, ``mean``, ``std``, ``n``)."""
    labels: Sequence[str] = list(dict.fromkeys(summary["label"]))
    modes = ["none"] + sorted(set(summary["diffraction"]) - {"none"})
    width = 0.8 / len(modes)
    figure = Figure(figsize=(max(3.6, 1.1 * len(labels) + 1.5), 3.2))
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    for index, mode in enumerate(modes):
        rows = summary[summary["diffraction"] == mode].set_index("label").reindex(labels)
        axes.bar(positions + (index - (len(modes) - 1) / 2) * width, rows["mean"], width, yerr=rows["std"],
                 capsize=3, label="without diffraction" if mode == "none" else f"+{mode}")  # fmt: skip
    axes.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
    axes.set(ylabel=ylabel, title=title)
    axes.title.set_fontsize(9)
    axes.legend(fontsize=7, frameon=False)
    return to_png(figure)


def job_plots(run_dir: Path) -> list[tuple[str, str, bytes]]:
    """``(kind, caption, png)`` of one finished job: the parity plot of its test set (for a
    classifier, the class-probability histogram) and its learning curve."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tags = json.loads((run_dir / "run.json").read_text())["tags"]
    metric, unit = metrics["metric"], metrics.get("unit", "")
    title = (f"{tags.get('task', '')} {tags.get('fold', '')} seed {tags.get('seed', '0')}: "
             f"{tags.get('model', '')}/{tags.get('diffraction', '')}/{tags.get('ablation', '')}")  # fmt: skip
    plots = []
    if (run_dir / "predictions.parquet").exists():
        predictions = pd.read_parquet(run_dir / "predictions.parquet")
        if "probability" in predictions:
            png = probability_png(predictions["true"].to_numpy(), predictions["probability"].to_numpy(), title)
            plots.append(("parity", f"test probabilities, {title}", png))
        else:
            png = parity_png(predictions["true"].to_numpy(), predictions["predicted"].to_numpy(), title, unit)
            plots.append(("parity", f"parity (test set), {title}", png))
    if (run_dir / "history.csv").exists():
        png = learning_curve_png(pd.read_csv(run_dir / "history.csv"), metric, title, unit)
        plots.append(("learning-curve", f"learning curve, {title}", png))
    return plots
