"""The report's bar charts carry the statistics (issue 23): each bar's own job count, a `*` where the
paired Δ against no diffraction excludes zero, the best bar, the published value naming a model;
and the sizes beside each dataset's tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prdnet.html_report as html_report
from prdnet.report import collect_runs

RNG = np.random.default_rng(1)
BASE = {(fold, seed): 1.0 + RNG.normal(0, 0.2) for fold in ("fold0", "fold1", "fold2") for seed in (0, 1)}
VALUES = {  # cgcnn+paper better on every pair by 0.1; prdnet+paper equal to prdnet ± noise; dummy on seed 0 only
    ("cgcnn", "none"): BASE,
    ("cgcnn", "paper"): {k: v - 0.1 + RNG.normal(0, 0.01) for k, v in BASE.items()},
    ("prdnet", "none"): {k: v + 0.3 + RNG.normal(0, 0.05) for k, v in BASE.items()},
    ("prdnet", "paper"): {k: v + 0.3 + RNG.normal(0, 0.05) for k, v in BASE.items()},
    ("dummy", "none"): {k: 2.0 for k in BASE if k[1] == 0},
}


def write_job(folder: Path, model: str, diffraction: str, fold: str, seed: int, mae: float) -> Path:
    folder.mkdir(parents=True)
    tags = {"dataset": "tiny", "task": "band_gap", "fold": fold, "model": model, "diffraction": diffraction,
            "ablation": "default", "seed": str(seed)}  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"params": {"model.name": model}, "tags": tags}))
    (folder / "metrics.json").write_text(json.dumps({"test_mae": mae, "metric": "mae", "unit": "eV"}))
    return folder


@pytest.fixture
def runs(tmp_path):
    folders = [write_job(tmp_path / model / diffraction / fold / f"seed{seed}", model, diffraction, fold, seed, mae)
               for (model, diffraction), values in VALUES.items() for (fold, seed), mae in values.items()]  # fmt: skip
    return collect_runs(folders)


@pytest.fixture
def drawn(monkeypatch):
    """What task_bar_chart hands to the plotting function."""
    seen = {}
    original = html_report.bar_chart_png

    def capture(summary, title, ylabel):
        seen["summary"], seen["title"] = summary, title
        return original(summary, title, ylabel)

    monkeypatch.setattr(html_report, "bar_chart_png", capture)
    return seen


def by_bar(summary):
    return summary.set_index(["model", "diffraction"])


def test_each_bar_has_its_own_job_count_and_the_title_claims_no_single_count(runs, drawn):
    html_report.task_bar_chart(runs, "tiny", "band_gap")
    bars = by_bar(drawn["summary"])
    assert bars.loc[("cgcnn", "none"), "n"] == 6 and bars.loc[("dummy", "none"), "n"] == 3
    assert "each bar's n jobs" in drawn["title"]


def test_a_significant_diffraction_effect_is_marked_and_an_insignificant_one_is_not(runs, drawn):
    html_report.task_bar_chart(runs, "tiny", "band_gap")
    bars = by_bar(drawn["summary"])
    assert bool(bars.loc[("cgcnn", "paper"), "significant"]) and not bool(bars.loc[("prdnet", "paper"), "significant"])
    assert not bool(bars.loc[("cgcnn", "none"), "significant"])  # the reference bar carries no mark


def test_the_best_bar_is_the_lowest_error(runs, drawn):
    html_report.task_bar_chart(runs, "tiny", "band_gap")
    bars = by_bar(drawn["summary"])
    assert bars.index[bars["best"].to_numpy(bool)].tolist() == [("cgcnn", "paper")]


def red_pixels(png: bytes) -> int:
    """Pixels of the published line's red (#c0392b, antialiased): red well above green and blue, green ≈ blue
    (the bars are blue and orange; orange has green far above blue)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r - g > 60) & (r - b > 60) & (np.abs(g - b) < 30)).sum())


def test_the_published_value_naming_a_model_is_drawn_as_a_line(runs, drawn):
    published = [{"task": "band_gap", "model": "CGCNN", "ours": "cgcnn", "value": 0.9, "metric": "mae", "unit": "eV"}]
    with_line = html_report.task_bar_chart(runs, "tiny", "band_gap", published)
    assert by_bar(drawn["summary"]).loc[("cgcnn", "none"), "published"] == 0.9
    assert np.isnan(by_bar(drawn["summary"]).loc[("prdnet", "none"), "published"])
    without = html_report.task_bar_chart(runs, "tiny", "band_gap")
    assert red_pixels(with_line) > 50 and red_pixels(without) == 0  # the line is on the picture, in its colour


def test_the_validation_table_says_when_the_run_used_a_subset(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"read": 36738, "accepted": 36738, "rejected": 0,
                                                       "subset": {"size": 400, "seed": 0, "kept": 400}}))  # fmt: skip
    section = html_report.rejects_section(tmp_path)
    assert "used: a seeded subset (seed 0) of the accepted</td><td>400" in section
