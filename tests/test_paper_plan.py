"""config/paper.yaml: the whole reproduction plans offline, with the expected jobs per rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prdnet.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "config" / "paper.yaml"

# 12 datasets: mp_live, mp_2018, jarvis_dft_3d_2021 and the nine MatBench structure tasks
TRAIN = (
    (6 + 4)  # 1. MP table: PRDNet (+paper) on the 6 live-MP tasks and the 4 MP-2018.6.1 tasks
    + 7  # 2. JARVIS-DFT: 7 tasks
    + 9 * 5  # 3. MatBench: 9 tasks × 5 official folds
    + 4 * 7 * 2 - 4  # 4. plug-in: 4 MP-2018 tasks × 7 models × {none, paper}, minus PRDNet +paper (table 1)
    + 4 * 5 - 4  # 5. ablation: 4 live-MP tasks × 5 ablations, minus default (table 1)
)
def featurize_jobs() -> int:
    """One featurize job per dataset and distinct graph recipe of the models its experiments run."""
    from prdnet.data.recipes import graph_recipe_for
    from prdnet.models.registry import load_presets

    config, presets = yaml.safe_load(PAPER.read_text()), load_presets()
    recipes: dict[str, set] = {}
    for experiment in config["experiments"]:
        for dataset in experiment["datasets"]:
            for model in experiment["models"]:
                recipes.setdefault(dataset, set()).add(graph_recipe_for(config["models"][model], presets))
    assert len(recipes) == 12
    return sum(len(found) for found in recipes.values())

DUMMY = 6 + 4 + 7 + 9 * 5  # one Dummy job per dataset, task and fold: live MP, MP-2018, JARVIS, MatBench

EXPECTED = {
    "download_mp_live": 1,
    "download_jarvis": 2,  # MEGNet MP-2018.6.1 and JARVIS dft_3d_2021
    "download_matbench": 7,  # jdft2d and phonons are on disk already
    # one each per dataset. (config/config.yaml is not merged in: the workflow has no default
    # configfile, the local profile names config/config.yaml, and --configfile replaces it; so the
    # plan is the paper's alone, from the project root as from this empty work folder.)
    "prepare": 12,
    "crystal_groups": 12,
    "split": 12,
    "featurize": featurize_jobs(),  # 12 datasets, the plug-in table's MP-2018.6.1 once per recipe
    "train": TRAIN + DUMMY,
    "aggregate": 12,
    "matbench_record": 9 + 9,  # PRDNet's and the Dummy's leaderboard file per MatBench task
    "mlflow_import": 1,
    "all": 1,
}


def dry_run(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--profile", str(ROOT / "workflow" / "profiles" / "local"), "--configfile", str(PAPER),
        "--dry-run", "--quiet", "rules", "--cores", "1",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def offline_env(**extra: str) -> dict[str, str]:
    """The environment with every proxy pointing at a closed port: any network use would fail."""
    env = {k: v for k, v in os.environ.items() if k != "MP_API_KEY"}
    dead = "http://127.0.0.1:9"
    env.update(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY="")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env


def job_counts(stdout: str) -> dict[str, int]:
    stats = stdout.split("Job stats:")[1].splitlines()
    counts = {}
    for line in stats:
        words = line.split()
        if len(words) == 2 and words[1].isdigit():
            counts[words[0]] = int(words[1])
    return counts


@pytest.mark.workflow
def test_paper_plan_has_every_tables_jobs_offline(tmp_path):
    plan = dry_run(tmp_path, offline_env(MP_API_KEY="dummy-key-for-planning"))
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert counts == {**EXPECTED, "total": sum(EXPECTED.values())}
    assert "dummy-key-for-planning" not in plan.stdout + plan.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_paper_plan_without_mp_api_key_stops_before_any_job(tmp_path):
    plan = dry_run(tmp_path, offline_env())
    assert plan.returncode != 0
    assert "MP_API_KEY" in plan.stdout + plan.stderr and "mp_live" in plan.stdout + plan.stderr


def test_paper_config_is_valid_and_matformer_split_is_checked():
    config = yaml.safe_load(PAPER.read_text())
    validate_config(config)
    assert config["results_dir"] == "results/paper"
    broken = yaml.safe_load(PAPER.read_text())
    broken["datasets"]["mp_2018"]["split"] = {"kind": "matformer", "seed": 123}  # neither counts nor fractions
    with pytest.raises(ConfigError, match="mp_2018.split"):
        validate_config(broken)
    broken = yaml.safe_load(PAPER.read_text())
    broken["datasets"]["mp_live"].pop("criteria")  # an unfiltered query would fetch the whole database
    with pytest.raises(ConfigError, match="mp_live"):
        validate_config(broken)


@pytest.mark.workflow
def test_the_key_is_in_no_rule_params_or_shell_command(tmp_path):
    bin_dir = Path(sys.executable).parent
    key = "secret-key-must-not-leak-42"
    command = [
        str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
        "--profile", str(ROOT / "workflow" / "profiles" / "local"), "--configfile", str(PAPER),
        "--dry-run", "--printshellcmds", "--cores", "1", "resources/mp_live/mp_live.json.gz",
    ]  # fmt: skip
    plan = subprocess.run(command, capture_output=True, text=True, env=offline_env(MP_API_KEY=key), timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    output = plan.stdout + plan.stderr
    assert "rule download_mp_live" in output and "prdnet download --dataset mp_live" in output
    assert key not in output
