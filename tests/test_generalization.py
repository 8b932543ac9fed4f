"""The in-distribution vs out-of-distribution table (issue 22): each variant's OOD / random error
ratio and the diffraction plug-in's gain on each split, with paired bootstrap intervals; and its
place in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prdnet.generalization import generalization_table, job_errors, write_generalization

RNG = np.random.default_rng(0)
IDS = {"random": [f"r{i:03d}" for i in range(200)], "ood": [f"o{i:03d}" for i in range(200)]}
# absolute errors: OOD twice the random split's for "none"; "paper" is 0.8 of "none" OOD and equal to it at random
SCALE = {("random", "none"): 0.1, ("random", "paper"): 0.1, ("ood", "none"): 0.2, ("ood", "paper"): 0.16}


def write_job(root: Path, dataset: str, diffraction: str, fold: str, seed: int) -> Path:
    folder = root / dataset / fold / diffraction / f"seed{seed}"
    folder.mkdir(parents=True)
    tags = {"dataset": dataset, "task": "e", "fold": fold, "model": "cgcnn", "diffraction": diffraction,
            "ablation": "default", "seed": str(seed)}  # fmt: skip
    errors = SCALE[(dataset, diffraction)] * (1 + 0.05 * RNG.standard_normal(200))
    true = RNG.normal(size=200)
    (folder / "run.json").write_text(json.dumps({"params": {}, "tags": tags}))
    (folder / "metrics.json").write_text(json.dumps({"test_mae": float(np.abs(errors).mean()), "metric": "mae", "unit": "eV/atom"}))
    pd.DataFrame({"id": IDS[dataset], "true": true, "predicted": true + errors}).to_parquet(folder / "predictions.parquet")
    return folder


@pytest.fixture
def jobs(tmp_path):
    return [write_job(tmp_path / "runs", dataset, diffraction, fold, seed)
            for dataset, folds in (("random", ["fold0"]), ("ood", ["fold0", "fold1"]))
            for fold in folds for diffraction in ("none", "paper") for seed in (0, 1)]  # fmt: skip


def test_the_ood_over_random_ratio_and_its_interval_recover_the_planted_factor(jobs):
    table = generalization_table(job_errors(jobs), {"ood": "random"}).set_index("diffraction")
    none = table.loc["none"]
    assert none["ood_over_random"] == pytest.approx(2.0, rel=0.03)
    assert none["ood_over_random_low"] < 2.0 < none["ood_over_random_high"] and none["ood_over_random_high"] - none["ood_over_random_low"] < 0.2
    assert (none["jobs_random"], none["jobs_ood"]) == (2, 4)


def test_the_diffraction_gain_is_given_on_each_split_paired_by_fold_and_seed(jobs):
    paper = generalization_table(job_errors(jobs), {"ood": "random"}).set_index("diffraction").loc["paper"]
    assert paper["diffraction_over_none_ood"] == pytest.approx(0.8, rel=0.03)
    assert paper["diffraction_over_none_random"] == pytest.approx(1.0, rel=0.03)
    assert paper["diffraction_over_none_ood_high"] < 1.0 < paper["diffraction_over_none_random_high"]


def test_the_markdown_and_csv_name_the_datasets_and_show_the_intervals(jobs, tmp_path):
    write_generalization(jobs, {"ood": "random"}, tmp_path / "tables" / "generalization")
    text = (tmp_path / "tables" / "generalization.md").read_text()
    assert "## ood / e (against random)" in text and "OOD / random" in text
    row = next(line for line in text.splitlines() if line.startswith("| cgcnn | paper |"))
    assert row.count("[") == 3  # OOD / random, gain at random, gain OOD: each with its interval
    assert len(pd.read_csv(tmp_path / "tables" / "generalization.csv")) == 2


def test_the_report_shows_the_generalization_table_and_plot(jobs, tmp_path):
    from prdnet.html_report import generalization_section

    write_generalization(jobs, {"ood": "random"}, tmp_path / "tables" / "generalization")
    section = generalization_section(tmp_path)
    assert '<section id="generalization">' in section and "OOD / random" in section
    assert section.count('data-kind="generalization"') == 1  # one plot: one OOD dataset, one task
