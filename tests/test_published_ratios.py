"""Ours against published: a published score that names our model (`ours:` in the scores file) is
shown beside every variant that ran that model, with the ratio of our mean to the published value."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prdnet.guards import DUMMY_MODEL
from prdnet.models.registry import available_models
from prdnet.report import write_tables

ROOT = Path(__file__).resolve().parent.parent
FOLDS = ["fold0", "fold1", "fold2"]
# variant (config name) → registry model name, preset and test MAE per fold
VARIANTS = {
    "cgcnn": ("cgcnn", "paper", [40.0, 50.0, 60.0]),
    "cgcnn_long": ("cgcnn", "paper", [36.0, 45.0, 54.0]),
    "schnet_small": ("schnet", "small", [70.0, 80.0, 90.0]),
    "dummy": (DUMMY_MODEL, None, [66.0, 67.0, 68.0]),
}
SCORES = [
    {"dataset": "tiny", "task": "exfoliation_en", "model": "CGCNN", "ours": "cgcnn", "value": 50.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},
    {"dataset": "tiny", "task": "exfoliation_en", "model": "Dummy", "ours": "dummy", "value": 67.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},
    {"dataset": "tiny", "task": "exfoliation_en", "model": "ALIGNN", "ours": "alignn", "value": 43.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},  # no ALIGNN job: no row
    {"dataset": "tiny", "task": "exfoliation_en", "model": "SchNet", "value": 42.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},  # names none of ours: no row
    {"dataset": "tiny", "task": "exfoliation_en", "model": "SchNet (eV)", "ours": "schnet", "value": 0.042, "metric": "mae",
     "unit": "eV/atom", "source": "elsewhere"},  # another unit: no row
]  # fmt: skip


def write_job(folder: Path, variant: str, fold: str, mae: float, flags: list[str] | None = None) -> Path:
    name, preset, _ = VARIANTS[variant]
    folder.mkdir(parents=True)
    params = {"model.name": name} | ({"model.preset": preset} if preset else {})
    tags = {"dataset": "tiny", "task": "exfoliation_en", "fold": fold, "model": variant, "diffraction": "none",
            "ablation": "default", "seed": "0"}  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"params": params, "tags": tags}))
    metrics = {"test_mae": mae, "metric": "mae", "unit": "meV/atom", "flags": flags or []}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def tables(tmp_path):
    folders = [write_job(tmp_path / "runs" / variant / fold, variant, fold, mae,
                         ["worse_than_dummy"] if (variant, fold) == ("cgcnn", "fold2") else None)
               for variant, (_, _, maes) in VARIANTS.items() for fold, mae in zip(FOLDS, maes)]  # fmt: skip
    scores = tmp_path / "scores.yaml"
    scores.write_text(yaml.safe_dump({"scores": SCORES}))
    write_tables("tiny", folders, scores, tmp_path / "tables" / "tiny")
    return tmp_path / "tables"


def test_each_variant_of_a_named_model_gets_its_ratio_to_the_published_value(tables):
    ratios = pd.read_csv(tables / "tiny_published.csv").set_index("model")
    assert sorted(ratios.index) == ["cgcnn", "cgcnn_long", "dummy"]
    assert ratios.loc["cgcnn", "ratio"] == pytest.approx(1.0)
    assert ratios.loc["cgcnn_long", "ratio"] == pytest.approx(45.0 / 50.0)
    assert ratios.loc["cgcnn_long", "ours_std"] == pytest.approx(pd.Series([36.0, 45.0, 54.0]).std(ddof=0))
    assert ratios.loc["dummy", "published_model"] == "Dummy" and ratios.loc["dummy", "jobs"] == 3
    assert set(ratios["source"]) == {"leaderboard"}
    assert ratios.loc["cgcnn", "flagged_jobs"] == 1 and ratios.loc["cgcnn_long", "flagged_jobs"] == 0


def test_the_markdown_table_shows_ours_beside_published_and_the_ratio(tables):
    text = (tables / "tiny.md").read_text()
    section = text[text.index("## Ours against published") :].split("\n## ")[0]
    assert "| exfoliation_en | cgcnn_long | default | paper | 3 | 45 ± 7.3 | CGCNN: 50 | 0.90 |" in section
    assert "| exfoliation_en | cgcnn | default | paper | 3 | 50 ± 8.2 ⚠ | CGCNN: 50 | 1.00 |" in section
    assert "schnet_small" not in section and "ALIGNN" not in section


def test_every_shipped_published_score_names_a_model_we_have():
    scores = yaml.safe_load((ROOT / "config" / "published_scores.yaml").read_text())["scores"]
    named = {score["ours"] for score in scores if "ours" in score}
    assert named and named <= {*available_models(), DUMMY_MODEL}
