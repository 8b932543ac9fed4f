"""What the released PRDNet evaluation does to a reported MAE, emulated on our own predictions.

The released code (Bin-Cao/PRDNet@a422056) scores a model as follows, on its cached-data path:

1. each split is standardized with its **own** statistics: ``PygStructureDataset`` turns the
   labels of whatever split it is given into (y − mean) / std of that split (``prdnet/graphs.py``
   L59-67, ``mean_train`` left None by ``CachedPrdnetDataset``, ``prdnet/cached_dataset.py``
   L34-43), so the test labels are z_test = (y − μ_test) / σ_test;
2. ``train_dgl`` then re-derives ``mean_train`` and ``std_train`` from the already standardized
   training loader (``prdnet/train.py`` L233-267: mean ≈ 0, ``np.std`` ≈ 1) and reports
   MAE = mean |ẑ·s + m − (z_test·s + m)| = s · mean |ẑ − z_test| (L401-412, L535-537), a number in
   units of the test split's standard deviation, not in the target's unit;
3. every loader, the test one included, has ``drop_last=True`` with batch 64
   (``trainer.py`` L335-343, batch size L911-916), so the last n mod 64 test crystals are never
   scored (a test split under 64 crystals scores none).

Given a job of ours (trained on targets standardized with the training part's statistics, as the
released model is), its test predictions ŷ in the target's unit map to the released model's
output ẑ = (ŷ − μ_train) / σ_train. This script re-scores every finished job under a results
folder both ways and writes ``benchmarks/results/released_evaluation.json``: per job and per
(dataset, task), our MAE (target's unit), the released-style MAE (1 and 3 together), and the
released-style MAE without ``drop_last`` (1 alone), with their ratio to ours.

    python benchmarks/emulate_released_evaluation.py --results results/released_evaluation

Deviation: ``mean_train``/``std_train`` of step 2 come from the shuffled training loader without
its last partial batch; we take them over the whole training part (a difference of one partial
batch in ~thousands of crystals).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording

from prdnet.data.splits import read_split

RELEASED_BATCH = 64
"""Bin-Cao/PRDNet trainer.py L911-916: create_trainer_config batch_size 64."""


def standardized(values: np.ndarray) -> np.ndarray:
    """(y − mean) / std with the values' own mean and unbiased std (torch's ``Tensor.std``),
    as the released ``PygStructureDataset`` standardizes every split it is given."""
    return (values - values.mean()) / values.std(ddof=1)


def kept_by_drop_last(n: int, batch_size: int = RELEASED_BATCH) -> int:
    """How many of n crystals a ``drop_last=True`` loader yields: floor(n / batch) · batch."""
    return (n // batch_size) * batch_size


def released_style_mae(train_true: np.ndarray, test_true: np.ndarray, test_predicted: np.ndarray,
                       drop_last: bool = True, batch_size: int = RELEASED_BATCH) -> float:
    """The MAE the released evaluation would report for these predictions (see the module's
    docstring): s · mean |ẑ − z_test| over the test crystals a ``drop_last`` loader yields, with
    ẑ = (ŷ − μ_train) / σ_train, z_test the test targets standardized with their own statistics
    and s = np.std of the standardized training targets. NaN when no test crystal is scored."""
    z_train = standardized(train_true)
    scale = float(np.std(z_train))
    output = (test_predicted - train_true.mean()) / train_true.std(ddof=1)
    z_test = standardized(test_true)
    kept = kept_by_drop_last(len(test_true), batch_size) if drop_last else len(test_true)
    if kept == 0:
        return float("nan")
    return scale * float(np.mean(np.abs(output[:kept] - z_test[:kept])))


def job_rows(results: Path) -> list[dict[str, Any]]:
    """One row per finished model job under ``results`` (the Dummy aside)."""
    rows, tables = [], {}
    for metrics_path in sorted(results.glob("*/runs/*/*/*/*/*/seed*/metrics.json")):
        job = metrics_path.parent
        run = json.loads((job / "run.json").read_text())
        tags = run["tags"]
        if tags["model"] == "dummy":
            continue
        split_dir = results / tags["dataset"] / "splits" / tags["task"] / tags["fold"]
        if tags["dataset"] not in tables:  # each dataset's structures file read once
            tables[tags["dataset"]] = pq.read_table(results / tags["dataset"] / "structures.parquet").to_pandas().set_index("id")
        targets = tables[tags["dataset"]][f"target.{tags['task']}"]
        train_true = targets.loc[read_split(split_dir / "train.txt")].to_numpy(dtype=float)
        predictions = pd.read_parquet(job / "predictions.parquet")
        true, predicted = predictions["true"].to_numpy(float), predictions["predicted"].to_numpy(float)
        ours = float(np.mean(np.abs(predicted - true)))
        released = released_style_mae(train_true, true, predicted)
        no_drop = released_style_mae(train_true, true, predicted, drop_last=False)
        rows.append({"dataset": tags["dataset"], "task": tags["task"], "fold": tags["fold"], "model": tags["model"],
                     "seed": tags.get("seed", "0"), "unit": json.loads(metrics_path.read_text())["unit"],
                     "n_train": len(train_true), "n_test": len(true), "n_test_scored": kept_by_drop_last(len(true)),
                     "train_std": float(train_true.std(ddof=1)), "test_std": float(true.std(ddof=1)),
                     "test_mean_minus_train_mean": float(true.mean() - train_true.mean()),
                     "mae_ours": ours, "mae_released": released, "mae_released_without_drop_last": no_drop,
                     "ratio_released_to_ours": released / ours,
                     "ratio_without_drop_last_to_ours": no_drop / ours})  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (dataset, task): jobs, the mean of each MAE and the median ratio to ours."""
    by_task: dict[str, Any] = {}
    for key in sorted({(r["dataset"], r["task"]) for r in rows}):
        chosen = [r for r in rows if (r["dataset"], r["task"]) == key]
        finite = [r for r in chosen if np.isfinite(r["mae_released"])]
        by_task[f"{key[0]}/{key[1]}"] = {
            "jobs": len(chosen), "unit": chosen[0]["unit"],
            "test_crystals_per_job": statistics.median(r["n_test"] for r in chosen),
            "scored_per_job": statistics.median(r["n_test_scored"] for r in chosen),
            "train_std": statistics.mean(r["train_std"] for r in chosen),
            "mae_ours": statistics.mean(r["mae_ours"] for r in chosen),
            "mae_released": statistics.mean(r["mae_released"] for r in finite) if finite else float("nan"),
            "mae_released_without_drop_last": statistics.mean(r["mae_released_without_drop_last"] for r in chosen),
            "ratio_released_to_ours": statistics.median(r["ratio_released_to_ours"] for r in finite) if finite else float("nan"),
            "ratio_without_drop_last_to_ours": statistics.median(r["ratio_without_drop_last_to_ours"] for r in chosen),
        }  # fmt: skip
    return by_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a results folder of finished jobs")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/released_evaluation.json")
    args = parser.parse_args(argv)
    recording = Recording("released_evaluation", threads=1, results=args.out)
    recording.start()
    rows = job_rows(args.results)
    if not rows:
        sys.exit(f"no finished model job under {args.results}: run `make run CONFIG=config/released_evaluation.yaml`")
    figures = summary(rows)
    path = recording.write(figures, rows, results=str(args.results))
    for key, figure in figures.items():
        print(f"{key}: ours {figure['mae_ours']:.4g} {figure['unit']}, released-style {figure['mae_released']:.4g} "
              f"(× {figure['ratio_released_to_ours']:.3g}), without drop_last {figure['mae_released_without_drop_last']:.4g} "
              f"(× {figure['ratio_without_drop_last_to_ours']:.3g}); {figure['scored_per_job']:.0f} of "
              f"{figure['test_crystals_per_job']:.0f} test crystals scored")  # fmt: skip
    print(f"written {path}")


if __name__ == "__main__":
    main()
