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
    error bars of ± one standard deviation (columns ``label``, ``diffraction``, ``mean``, ``std``,
    ``n``). Each bar carries its job count (``n=``); optional columns add the statistics:
    ``significant`` (a ``*`` over a diffraction bar whose paired Δ against the same model without
    diffraction has a 95% interval excluding zero), ``best`` (the best bar, outlined in black) and
    ``published`` (a dashed line across the variant's group at the published value naming it)."""
    labels: Sequence[str] = list(dict.fromkeys(summary["label"]))
    modes = ["none"] + sorted(set(summary["diffraction"]) - {"none"})
    width = 0.8 / len(modes)
    figure = Figure(figsize=(max(3.6, 1.1 * len(labels) + 1.5), 3.4))
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    top = float(np.nanmax(summary["mean"] + summary["std"].fillna(0))) if len(summary) else 1.0
    for index, mode in enumerate(modes):
        rows = summary[summary["diffraction"] == mode].set_index("label").reindex(labels)
        x = positions + (index - (len(modes) - 1) / 2) * width
        best = np.array([value is True or value is np.True_ for value in rows["best"]]) if "best" in rows else np.zeros(len(labels), bool)
        axes.bar(x, rows["mean"], width, yerr=rows["std"], capsize=3, edgecolor=["black" if b else "none" for b in best],
                 linewidth=1.6, label="without diffraction" if mode == "none" else f"+{mode}")  # fmt: skip
        for xi, row in zip(x, rows.itertuples()):
            if pd.isna(row.mean):
                continue
            height = row.mean + (0 if pd.isna(row.std) else row.std)
            mark = "*" if "significant" in rows and bool(getattr(row, "significant", False)) else ""
            axes.text(xi, height + 0.02 * top, f"{mark}\nn={int(row.n)}" if mark else f"n={int(row.n)}", ha="center",
                      va="bottom", fontsize=6)  # fmt: skip
    if "published" in summary:
        for position, label in zip(positions, labels):
            values = summary.loc[summary["label"] == label, "published"].dropna()
            if len(values):
                axes.hlines(values.iloc[0], position - 0.45, position + 0.45, colors="#c0392b", linestyles="dashed",
                            linewidth=1.2, label="published" if "published" not in axes.get_legend_handles_labels()[1] else None)  # fmt: skip
    axes.set_ylim(top=top * 1.25 if top > 0 else None)
    axes.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
    axes.set(ylabel=ylabel, title=title)
    axes.title.set_fontsize(9)
    axes.legend(fontsize=7, frameon=False)
    return to_png(figure)


def generalization_png(table: pd.DataFrame, title: str) -> bytes:
    """OOD / random error ratio per model variant (columns ``label``, ``diffraction``,
    ``ood_over_random`` and its ``_low``/``_high`` interval): points with interval bars, one marker
    per diffraction mode, a line at 1 (no loss out of distribution)."""
    labels: Sequence[str] = list(dict.fromkeys(table["label"]))
    modes = ["none"] + sorted(set(table["diffraction"]) - {"none"})
    width = 0.6 / max(1, len(modes) - 1) if len(modes) > 1 else 0.0
    figure = Figure(figsize=(max(3.6, 1.1 * len(labels) + 1.5), 3.2))
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    for index, mode in enumerate(modes):
        rows = table[table["diffraction"] == mode].set_index("label").reindex(labels)
        errors = np.vstack([rows["ood_over_random"] - rows["ood_over_random_low"], rows["ood_over_random_high"] - rows["ood_over_random"]])
        axes.errorbar(positions + (index - (len(modes) - 1) / 2) * width, rows["ood_over_random"], yerr=errors, fmt="os^dv"[index % 5],
                      capsize=3, label="without diffraction" if mode == "none" else f"+{mode}")  # fmt: skip
    axes.axhline(1.0, color="#888", linewidth=0.8, linestyle="--")
    axes.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
    axes.set(ylabel="test MAE, OOD / random", title=title)
    axes.title.set_fontsize(9)
    axes.legend(fontsize=7, frameon=False)
    return to_png(figure)


def error_cost_png(points: pd.DataFrame, title: str, ylabel: str) -> bytes:
    """Test error against device-hours per job (log scale): one point per model variant (columns
    ``label``, ``diffraction``, ``hours``, ``mean``, ``low``, ``high``) with its interval, the
    diffraction modes of one variant joined by a line, so the plug-in's price and gain show together."""
    figure = Figure(figsize=(4.6, 3.4))
    axes = figure.add_subplot()
    markers = dict(zip(["none"] + sorted(set(points["diffraction"]) - {"none"}), "os^dv"))
    for index, (label, group) in enumerate(points.groupby("label", sort=True)):
        group = group.sort_values("hours")
        color = f"C{index % 10}"
        axes.plot(group["hours"], group["mean"], color=color, linewidth=0.8, alpha=0.6)
        for row in group.itertuples():
            axes.errorbar(row.hours, row.mean, yerr=[[row.mean - row.low], [row.high - row.mean]], fmt=markers[row.diffraction],
                          color=color, capsize=3, markersize=5)  # fmt: skip
        axes.annotate(label, (group["hours"].iloc[-1], group["mean"].iloc[-1]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    for mode, marker in markers.items():
        axes.plot([], [], marker, color="#555", label="without diffraction" if mode == "none" else f"+{mode}")
    axes.set_xscale("log")
    axes.set(xlabel="device-hours per job (log)", ylabel=ylabel, title=title)
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
