"""Seeds: `training.seeds` is a wildcard (one job per seed, run folder .../seed<N>/), tables show
mean ± std over folds and seeds, and MLflow run names and keys carry the seed."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prdnet.config import ConfigError, load_config, training_for_seed, training_seeds, validate_config
from prdnet.report import write_tables
from prdnet.tracking import run_name
from tiny_workflow import JDFT2D, MP, ROOT, write_tiny_config


def test_seeds_or_the_single_seed_name_the_jobs_seeds():
    assert training_seeds({"seeds": [0, 1, 2]}) == [0, 1, 2]
    assert training_seeds({"seed": 7}) == [7]
    assert training_for_seed({"epochs": 3, "seeds": [0, 1]}, 1) == {"epochs": 3, "seed": 1}


def test_a_config_gives_exactly_one_of_seed_and_seeds():
    config = load_config(ROOT / "config" / "config.yaml")
    both = copy.deepcopy(config)
    both["training"].update(seed=0, seeds=[0, 1])
    with pytest.raises(ConfigError, match="training"):
        validate_config(both)
    neither = copy.deepcopy(config)
    neither["training"].pop("seed", None), neither["training"].pop("seeds", None)
    assert training_seeds(validate_config(neither)["training"]) == [0]  # a recipe's own default seed
    empty = copy.deepcopy(config)
    empty["training"].pop("seed", None)
    empty["training"]["seeds"] = []
    with pytest.raises(ConfigError, match="seeds"):
        validate_config(empty)


@pytest.mark.workflow
def test_the_plan_has_one_training_job_per_seed(tmp_path, mp_embedded_path, matminer_data):
    config = write_tiny_config(tmp_path, mp_embedded_path, matminer_data, datasets=(MP, JDFT2D), tasks=None)
    config["training"].pop("seed")
    config["training"]["seeds"] = [0, 1, 2]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
               "--profile", str(ROOT / "workflow" / "profiles" / "local"), "--configfile", str(tmp_path / "config.yaml"),
               "--dry-run", "--cores", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = set(re.findall(r"results/(\S+/runs/\S+/seed\d)/metrics\.json", result.stdout))
    # seeds × (MP 3 tasks × 4 variants + jdft2d 5 folds × 4), and one Dummy per task and fold (seed 0)
    assert len(folders) == 3 * (3 * 1 * 4 + 1 * 5 * 4) + (3 + 5)
    assert {folder.rsplit("/", 1)[1] for folder in folders} == {"seed0", "seed1", "seed2"}
    # the MatBench leaderboard file records one prediction per fold: the first seed's
    assert re.search(r"matbench_record.*\n(?:.*\n)*?.*input: .*fold0/cgcnn/none/default/seed0/predictions", result.stdout)


def write_job(folder: Path, fold: str, seed: int, mae: float) -> Path:
    folder.mkdir(parents=True)
    tags = {"dataset": "tiny", "task": "band_gap", "fold": fold, "model": "cgcnn", "diffraction": "none",
            "ablation": "default", "seed": str(seed)}  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"params": {"seed": seed}, "tags": tags}))
    (folder / "metrics.json").write_text(json.dumps({"test_mae": mae, "metric": "mae", "unit": "eV"}))
    return folder


def test_tables_average_over_folds_and_seeds(tmp_path):
    values = {("fold0", 0): 1.0, ("fold0", 1): 2.0, ("fold1", 0): 3.0, ("fold1", 1): 6.0}
    folders = [write_job(tmp_path / "runs" / fold / f"seed{seed}", fold, seed, mae) for (fold, seed), mae in values.items()]
    table = write_tables("tiny", folders, None, tmp_path / "tables" / "tiny")
    expected_std = pd.Series(list(values.values())).std(ddof=0)
    assert table.iloc[0]["band_gap (MAE eV) without diffraction"] == f"{3.0:.4g} ± {expected_std:.2g} ★"  # the only variant: the best
    markdown = (tmp_path / "tables" / "tiny.md").read_text()
    assert "2 seed(s): 0, 1 (mean ± std over folds and seeds)" in markdown
    runs = pd.read_csv(tmp_path / "tables" / "tiny_runs.csv")
    assert sorted(zip(runs["fold"], runs["seed"])) == sorted(values)


def test_mlflow_run_names_carry_the_seed():
    tags = {"dataset": "d", "task": "t", "fold": "fold0", "model": "m", "diffraction": "none", "ablation": "default"}
    assert run_name({**tags, "seed": "2"}) == "d/t/fold0/m/none/default/2"
    assert run_name(tags) == "d/t/fold0/m/none/default"
