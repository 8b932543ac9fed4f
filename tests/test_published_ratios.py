"""Ours against published: a published score that names our model (`ours:` in the scores file) is
shown beside every variant that ran that model; the ratio of our mean to the published value is
given only where the variant ran the score's protocol (`protocol:`) and changed none of its keys."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prdnet.guards import DUMMY_MODEL
from prdnet.models.registry import available_models
from prdnet.protocols import UNSTATED_PROTOCOL, load_protocols
from prdnet.report import load_published, write_tables

ROOT = Path(__file__).resolve().parent.parent
FOLDS = ["fold0", "fold1", "fold2"]
# variant (config name) → registry model name, preset, test MAE per fold, protocol, its changed keys
VARIANTS = {
    "cgcnn": ("cgcnn", "paper", [40.0, 50.0, 60.0], "cgcnn_matbench_v2019", {}),
    "cgcnn_long": ("cgcnn", "paper", [36.0, 45.0, 54.0], "cgcnn_matbench_v2019", {}),
    "cgcnn_short": ("cgcnn", "paper", [44.0, 55.0, 66.0], "cgcnn_matbench_v2019", {"epochs": [100, 2000]}),
    "cgcnn_own": ("cgcnn", "paper", [48.0, 60.0, 72.0], "preset", {}),
    "schnet_small": ("schnet", "small", [70.0, 80.0, 90.0], "preset", {}),
    "dummy": (DUMMY_MODEL, None, [66.0, 67.0, 68.0], "dummy", {}),
}
SCORES = [
    {"dataset": "tiny", "task": "exfoliation_en", "model": "CGCNN", "ours": "cgcnn", "protocol": "cgcnn_matbench_v2019", "value": 50.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},
    {"dataset": "tiny", "task": "exfoliation_en", "model": "Dummy", "ours": "dummy", "protocol": "dummy", "value": 67.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},
    {"dataset": "tiny", "task": "exfoliation_en", "model": "ALIGNN", "ours": "alignn", "protocol": "alignn_matbench", "value": 43.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},  # no ALIGNN job: no row
    {"dataset": "tiny", "task": "exfoliation_en", "model": "SchNet", "value": 42.0, "metric": "mae",
     "unit": "meV/atom", "source": "leaderboard"},  # names none of ours: no row
    {"dataset": "tiny", "task": "exfoliation_en", "model": "SchNet (eV)", "ours": "schnet", "protocol": "unstated", "value": 0.042, "metric": "mae",
     "unit": "eV/atom", "source": "elsewhere"},  # another unit: no row
]  # fmt: skip


def write_job(folder: Path, variant: str, fold: str, mae: float, flags: list[str] | None = None) -> Path:
    name, preset, _, protocol, changed = VARIANTS[variant]
    folder.mkdir(parents=True)
    params = ({"model.name": name, "protocol.name": protocol, "protocol.deviations": json.dumps(changed)}
              | ({"model.preset": preset} if preset else {}))  # fmt: skip
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
               for variant, (_, _, maes, _, _) in VARIANTS.items() for fold, mae in zip(FOLDS, maes)]  # fmt: skip
    scores = tmp_path / "scores.yaml"
    scores.write_text(yaml.safe_dump({"scores": SCORES}))
    write_tables("tiny", folders, scores, tmp_path / "tables" / "tiny")
    return tmp_path / "tables"


def test_a_variant_of_the_same_protocol_gets_its_ratio_to_the_published_value(tables):
    ratios = pd.read_csv(tables / "tiny_published.csv").set_index("model")
    assert sorted(ratios.index) == ["cgcnn", "cgcnn_long", "cgcnn_own", "cgcnn_short", "dummy"]
    assert ratios.loc["cgcnn", "ratio"] == pytest.approx(1.0)
    assert ratios.loc["cgcnn_long", "ratio"] == pytest.approx(45.0 / 50.0)
    assert ratios.loc["cgcnn_long", "ours_std"] == pytest.approx(pd.Series([36.0, 45.0, 54.0]).std(ddof=0))
    assert ratios.loc["dummy", "published_model"] == "Dummy" and ratios.loc["dummy", "jobs"] == 3
    assert ratios.loc["dummy", "ratio"] == pytest.approx(1.0)
    assert set(ratios["source"]) == {"leaderboard"}
    assert ratios.loc["cgcnn", "flagged_jobs"] == 1 and ratios.loc["cgcnn_long", "flagged_jobs"] == 0


def test_a_variant_of_another_protocol_or_with_changed_keys_gets_no_ratio(tables):
    ratios = pd.read_csv(tables / "tiny_published.csv").set_index("model")
    for variant in ("cgcnn_short", "cgcnn_own"):
        assert not ratios.loc[variant, "same_protocol"] and pd.isna(ratios.loc[variant, "ratio"])
    assert ratios.loc["cgcnn_short", "ratio_other_protocol"] == pytest.approx(55.0 / 50.0)
    assert ratios.loc["cgcnn_own", "ours_protocol"] == "preset"


def test_the_markdown_table_shows_ours_beside_published_and_the_ratio(tables):
    text = (tables / "tiny.md").read_text()
    section = text[text.index("## Ours against published") :].split("\n## ")[0]
    assert ("| exfoliation_en | cgcnn_long | default | paper | 3 | 45 ± 7.3 | CGCNN: 50 | same (cgcnn_matbench_v2019) "
            "| 0.90 |") in section
    assert "| exfoliation_en | cgcnn | default | paper | 3 | 50 ± 8.2 ⚠ | CGCNN: 50 | same (cgcnn_matbench_v2019) | 1.00 |" in section
    assert ("| cgcnn_short | default | paper | 3 | 55 ± 9 | CGCNN: 50 | cgcnn_matbench_v2019 changed: epochs 100 "
            "(protocol: 2000) | — (1.10 under another protocol) |") in section
    assert ("| cgcnn_own | default | paper | 3 | 60 ± 9.8 | CGCNN: 50 | differs: ours the preset's own recipe, "
            "published cgcnn_matbench_v2019 | — (1.20 under another protocol) |") in section
    assert "schnet_small" not in section and "ALIGNN" not in section


def test_every_shipped_published_score_names_a_model_we_have():
    scores = yaml.safe_load((ROOT / "config" / "published_scores.yaml").read_text())["scores"]
    named = {score["ours"] for score in scores if "ours" in score}
    assert named and named <= {*available_models(), DUMMY_MODEL}


def test_every_shipped_score_naming_our_model_names_a_protocol_of_that_model():
    protocols = load_protocols()
    scores = yaml.safe_load((ROOT / "config" / "published_scores.yaml").read_text())["scores"]
    for score in (s for s in scores if "ours" in s):
        name = score.get("protocol")
        assert name, f"{score['dataset']} {score['task']} {score['model']}: no protocol"
        if name != UNSTATED_PROTOCOL:
            assert name in protocols and protocols[name].model == score["ours"], (score, name)


@pytest.mark.parametrize("config_file", ["paper.yaml", "full.yaml", "calibration.yaml"])
def test_each_shipped_configuration_runs_a_model_under_the_protocol_of_its_published_row(config_file):
    """Where a published score names our model and a reconstructible protocol, the configuration
    runs that model on that dataset under the same protocol (calibration.yaml may change its keys,
    which its tables then show)."""
    config = yaml.safe_load((ROOT / "config" / config_file).read_text())
    scores = yaml.safe_load((ROOT / "config" / "published_scores.yaml").read_text())["scores"]
    checked = 0
    for experiment in config["experiments"]:
        for dataset in experiment["datasets"]:
            for variant in experiment["models"]:
                spec = config["models"][variant]
                for score in scores:
                    if (score["dataset"] == dataset and score.get("ours") == spec["name"]
                            and score["protocol"] != UNSTATED_PROTOCOL
                            and spec.get("preset", "small") == load_protocols()[score["protocol"]].preset):  # fmt: skip
                        assert spec.get("protocol") == score["protocol"], (config_file, dataset, variant, score["model"])
                        checked += 1
    assert checked > 0


def test_a_score_naming_our_model_without_a_protocol_stops_the_tables(tmp_path):
    scores = tmp_path / "scores.yaml"
    scores.write_text(yaml.safe_dump({"scores": [{**SCORES[0], "protocol": None}]}))
    with pytest.raises(ValueError, match="no protocol: add `protocol:`"):
        load_published(scores, "tiny")
