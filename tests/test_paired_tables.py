"""The tables' paired statistics: every with-vs-without and model-vs-model cell pairs jobs by fold
and seed and shows the mean difference, its 95% interval, the paired t-test's p and a marker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prdnet.report import write_tables
from prdnet.stats import METHOD_NOTE, format_comparison, paired_t

FOLDS, SEEDS = ["fold0", "fold1", "fold2"], [0, 1]
RNG = np.random.default_rng(0)
BASE = {(fold, seed): 1.0 + RNG.normal(0, 0.2) for fold in FOLDS for seed in SEEDS}
# cgcnn+paper is better than cgcnn on every pair by 0.1 ± small noise; prdnet equals cgcnn ± noise
VALUES = {
    ("cgcnn", "none"): BASE,
    ("cgcnn", "paper"): {k: v - 0.1 + RNG.normal(0, 0.01) for k, v in BASE.items()},
    ("prdnet", "none"): {k: v + RNG.normal(0, 0.05) for k, v in BASE.items()},
    ("prdnet", "paper"): {k: v + RNG.normal(0, 0.05) for k, v in BASE.items()},
}


def write_job(folder: Path, model: str, diffraction: str, fold: str, seed: int, mae: float) -> Path:
    folder.mkdir(parents=True)
    tags = {"dataset": "tiny", "task": "band_gap", "fold": fold, "model": model, "diffraction": diffraction,
            "ablation": "default", "seed": str(seed)}  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"params": {}, "tags": tags}))
    (folder / "metrics.json").write_text(json.dumps({"test_mae": mae, "metric": "mae", "unit": "eV"}))
    return folder


@pytest.fixture
def tables(tmp_path):
    folders = [
        write_job(tmp_path / "runs" / model / diffraction / fold / f"seed{seed}", model, diffraction, fold, seed, mae)
        for (model, diffraction), values in VALUES.items() for (fold, seed), mae in values.items()
    ]  # fmt: skip
    table = write_tables("tiny", folders, None, tmp_path / "tables" / "tiny")
    return tmp_path / "tables", table


def expected(first, second):
    keys = sorted(BASE)
    return paired_t([VALUES[first][k] for k in keys], [VALUES[second][k] for k in keys])


def test_with_vs_without_cells_are_paired_t_tests_over_folds_and_seeds(tables):
    _, table = tables
    row = table.set_index("model").loc["cgcnn"]
    result = expected(("cgcnn", "paper"), ("cgcnn", "none"))
    assert result.n_pairs == 6 and result.excludes_zero
    assert row["band_gap Δ paper"] == format_comparison(result) and row["band_gap Δ paper"].endswith(" *")
    noise = table.set_index("model").loc["prdnet", "band_gap Δ paper"]
    assert noise == format_comparison(expected(("prdnet", "paper"), ("prdnet", "none")))


def test_model_vs_model_cells_and_the_method_are_written_under_the_tables(tables):
    folder, _ = tables
    markdown = (folder / "tiny.md").read_text()
    assert markdown.count(METHOD_NOTE) == 2  # under the main table and under the model table
    assert "## Model against model (paired by fold and seed)" in markdown
    for mode in ("none", "paper"):
        cell = format_comparison(expected(("cgcnn", mode), ("prdnet", mode)))
        assert f"| band_gap | {mode} | default | cgcnn − prdnet | 6 | {cell} |" in markdown


def test_every_comparison_is_in_the_paired_csv(tables):
    folder, _ = tables
    paired = pd.read_csv(folder / "tiny_paired.csv")
    assert sorted(paired["kind"]) == ["diffraction", "diffraction", "model", "model"]
    row = paired[(paired["kind"] == "diffraction") & (paired["first"] == "cgcnn/default/paper")].iloc[0]
    result = expected(("cgcnn", "paper"), ("cgcnn", "none"))
    assert (row["n_pairs"], row["p_value"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (6, result.p_value, result.ci_low, result.ci_high))
    assert bool(row["excludes_zero"])


def test_only_shared_fold_and_seed_pairs_are_compared(tmp_path):
    folders = [write_job(tmp_path / "a" / f"s{seed}", "cgcnn", "none", "fold0", seed, 1.0 + seed) for seed in (0, 1, 2)]
    folders += [write_job(tmp_path / "b" / f"s{seed}", "cgcnn", "paper", "fold0", seed, 0.5 + 2 * seed) for seed in (0, 1)]
    table = write_tables("tiny", folders, None, tmp_path / "tables" / "tiny")
    assert table.iloc[0]["band_gap Δ paper"] == format_comparison(paired_t([0.5, 2.5], [1.0, 2.0]))
