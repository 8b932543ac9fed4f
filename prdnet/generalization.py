"""In distribution vs out of distribution: each model variant's test error on an out-of-distribution
split divided by its error on a random split of the same crystals, with bootstrap intervals.

A dataset with ``compare_with: <dataset>`` in the configuration is an out-of-distribution split
(``leave_cluster_out``, ``target_range``) of the crystals that ``<dataset>`` splits at random.
Per task and model variant (model, ablation, diffraction):

- ``mae_random``, ``mae_ood``: the mean over jobs (folds × seeds) of each job's test MAE;
- ``ood_over_random``: ``mae_ood / mae_random``, above 1 when the model does worse on crystals
  unlike its training crystals;
- ``diffraction_over_none_random`` and ``_ood``: the variant's MAE divided by the same model's
  without diffraction, on each split: the plug-in's gain in and out of distribution (below 1 =
  diffraction helps). The paper's long-range claim predicts a smaller quotient out of distribution.

Intervals: percentile bootstrap (``BOOTSTRAP_SAMPLES`` resamples) over test crystals, the same
resampled crystals for every seed and variant of a fold, so every quotient is paired by fold and
seed; a job's MAE is recomputed on each resample. It does not resample seeds (2-3 per fold are too
few), so it is the interval of the test sets' sampling, not of training noise; the seeds' spread is
in each dataset's own table.
"""

from __future__ import annotations

import json
from pathlib import Path
import numpy as np
import pandas as pd

from prdnet.io import atomic_path, write_text

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
VARIANT = ["model", "ablation", "diffraction"]


def job_errors(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per job of a regression task: labels and its per-crystal absolute errors (ordered by id)."""
    rows = []
    for run_dir in run_dirs:
        tags = json.loads((run_dir / "run.json").read_text())["tags"]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if metrics.get("metric") != "mae":
            continue
        predictions = pd.read_parquet(run_dir / "predictions.parquet").sort_values("id")
        rows.append({**{k: tags[k] for k in ("dataset", "task", "fold", "model", "ablation", "diffraction")},
                     "seed": int(tags.get("seed", 0)), "unit": metrics.get("unit", ""),
                     "errors": np.abs(predictions["predicted"].to_numpy() - predictions["true"].to_numpy())})  # fmt: skip
    return pd.DataFrame(rows)


def _bootstrap_means(jobs: pd.DataFrame, draws: dict[tuple[str, str, str], np.ndarray]) -> pd.DataFrame:
    """Per variant: the mean over its jobs of each job's MAE, in each bootstrap resample (column ``b``) and unresampled."""
    out = []
    for keys, group in jobs.groupby(["dataset", "task", *VARIANT], sort=True):
        samples = np.mean([errors[draws[(row.dataset, row.task, row.fold)]].mean(axis=1)
                           for row, errors in zip(group.itertuples(), group["errors"])], axis=0)  # fmt: skip
        point = float(np.mean([errors.mean() for errors in group["errors"]]))
        out.append({**dict(zip(["dataset", "task", *VARIANT], keys)), "mae": point, "samples": samples, "n_jobs": len(group)})
    return pd.DataFrame(out)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(samples, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def generalization_table(errors: pd.DataFrame, compare_with: dict[str, str], seed: int = 0) -> pd.DataFrame:
    """The table of this module's docstring, one row per (OOD dataset, task, variant) present in both datasets."""
    rng = np.random.default_rng(seed)
    draws = {}
    for (dataset, task, fold), group in errors.groupby(["dataset", "task", "fold"], sort=True):
        n = len(group["errors"].iloc[0])
        draws[(dataset, task, fold)] = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    means = _bootstrap_means(errors, draws).set_index(["dataset", "task", *VARIANT])
    rows = []
    for ood, random_dataset in sorted(compare_with.items()):
        for (dataset, task, model, ablation, diffraction), row in means.iterrows():
            if dataset != ood or (random_dataset, task, model, ablation, diffraction) not in means.index:
                continue
            reference = means.loc[(random_dataset, task, model, ablation, diffraction)]
            ratio = row["samples"] / reference["samples"]
            entry = {"dataset": ood, "random_dataset": random_dataset, "task": task, "model": model, "ablation": ablation,
                     "diffraction": diffraction, "unit": errors.loc[errors["dataset"] == ood, "unit"].iloc[0],
                     "jobs_random": int(reference["n_jobs"]), "jobs_ood": int(row["n_jobs"]),
                     "mae_random": reference["mae"], "mae_ood": row["mae"],
                     "ood_over_random": row["mae"] / reference["mae"]}  # fmt: skip
            entry["ood_over_random_low"], entry["ood_over_random_high"] = _interval(ratio)
            none = (task, model, ablation, "none")
            if diffraction != "none" and (ood, *none) in means.index and (random_dataset, *none) in means.index:
                for name, where in (("random", random_dataset), ("ood", ood)):
                    base = means.loc[(where, *none)]
                    variant = means.loc[(where, task, model, ablation, diffraction)]
                    entry[f"diffraction_over_none_{name}"] = variant["mae"] / base["mae"]
                    low, high = _interval(variant["samples"] / base["samples"])
                    entry[f"diffraction_over_none_{name}_low"], entry[f"diffraction_over_none_{name}_high"] = low, high
            rows.append(entry)
    return pd.DataFrame(rows)


def _quotient(value: float, low: float, high: float) -> str:
    return "—" if pd.isna(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def generalization_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: one section per out-of-distribution dataset."""
    lines = ["# In distribution vs out of distribution", "",
             "MAE = mean over jobs (folds × seeds) of each job's test MAE. OOD / random = the out-of-distribution "
             "split's MAE divided by the random split's, same crystals, same recipe; below it, with diffraction / none = "
             "the variant's MAE divided by the same model's without diffraction (below 1: diffraction helps). "
             f"[low, high]: {CONFIDENCE:.0%} percentile bootstrap over test crystals ({BOOTSTRAP_SAMPLES} resamples, "
             "paired by fold and seed; seeds not resampled).", ""]  # fmt: skip
    for (dataset, task), group in table.groupby(["dataset", "task"], sort=True):
        unit = group["unit"].iloc[0]
        lines += [f"## {dataset} / {task} (against {group['random_dataset'].iloc[0]})", "",
                  f"| model | diffraction | MAE random ({unit}) | MAE OOD ({unit}) | OOD / random | "
                  "with diffraction / none, random | with diffraction / none, OOD | jobs random / OOD |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in group.sort_values(["model", "ablation", "diffraction"]).itertuples():
            label = row.model if row.ablation == "default" else f"{row.model} {row.ablation}"
            lines.append(
                f"| {label} | {row.diffraction} | {row.mae_random:.4g} | {row.mae_ood:.4g} | "
                f"{_quotient(row.ood_over_random, row.ood_over_random_low, row.ood_over_random_high)} | "
                f"{_quotient(*(getattr(row, f'diffraction_over_none_random{s}', np.nan) for s in ('', '_low', '_high')))} | "
                f"{_quotient(*(getattr(row, f'diffraction_over_none_ood{s}', np.nan) for s in ('', '_low', '_high')))} | "
                f"{row.jobs_random} / {row.jobs_ood} |"
            )  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def write_generalization(run_dirs: list[Path], compare_with: dict[str, str], out_prefix: Path) -> pd.DataFrame:
    """Write ``<prefix>.md`` and ``<prefix>.csv``; return the table."""
    table = generalization_table(job_errors(run_dirs), compare_with)
    write_text(out_prefix.with_suffix(".md"), generalization_markdown(table) if len(table) else
               "# In distribution vs out of distribution\n\nno variant ran on both an out-of-distribution split and its random split\n")  # fmt: skip
    with atomic_path(out_prefix.with_suffix(".csv")) as temporary:
        table.to_csv(temporary, index=False)
    return table
