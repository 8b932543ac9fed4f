"""Every file that changes a result is a declared input or a tracked parameter: editing a data
file, an id-list file, a model preset in config/models.yaml or the published-scores file re-runs
exactly the jobs it affects (shown by a dry run after one finished tiny run).

The workflow runs from a copy of the project (code, workflow, config) so that config/models.yaml
can be edited; jobs import the copy's prdnet through PYTHONPATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_own_data import DATASETS, FIXTURES, own_data_config
from tiny_workflow import ROOT

pytestmark = [pytest.mark.workflow]

COPIED = ["Snakefile", "workflow", "config", "prdnet", "pyproject.toml"]


def run(project: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(project), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = [str(bin_dir / "snakemake"), "--snakefile", str(project / "Snakefile"), "--directory", str(workdir),
               "--profile", str(project / "workflow" / "profiles" / "local"), "--configfile", str(workdir / "config.yaml"),
               "--cores", "2", *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A project copy and a finished run: two datasets (a table; a MatBench-format JSON with an
    id-list split), CGCNN and PRDNet, tiny, one epoch."""
    base = tmp_path_factory.mktemp("tracked")
    project, workdir = base / "project", base / "work"
    project.mkdir()
    for name in COPIED:
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, project / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    workdir.mkdir()
    shutil.copy2(FIXTURES / "poscar_table.csv", workdir / "table.csv")
    shutil.copy2(FIXTURES / "perovskites_mb.json.gz", workdir / "mb.json.gz")
    (workdir / "test_ids.txt").write_text("mb-own-000\nmb-own-001\n")
    (workdir / "scores.yaml").write_text((ROOT / "config" / "published_scores.yaml").read_text())
    config = own_data_config()
    config["datasets"] = {
        "table_a": {**DATASETS["poscar_csv"], "path": "table.csv", "split": {"kind": "random", "fractions": [0.6, 0.2, 0.2], "seed": 0}},
        "listed_b": {**DATASETS["my_matbench"], "path": "mb.json.gz",
                     "split": {"kind": "id_lists", "test": ["test_ids.txt"], "val_fraction": 0.2, "seed": 0}},
    }  # fmt: skip
    config["models"]["prdnet"] = {"name": "prdnet", "preset": "small",
                                  "hyperparameters": {"backbone": {"channels": 8, "layers": 1, "heads": 2, "head_dim": 4}}}  # fmt: skip
    config["experiments"][0].update(datasets=["listed_b", "table_a"], models=["cgcnn", "prdnet"])
    config["published_scores"] = "scores.yaml"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    first = run(project, workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    return project, workdir


def planned(project: Path, workdir: Path) -> dict[str, int]:
    """Jobs per rule that a run would do now."""
    plan = run(project, workdir, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-3000:]
    if "Job stats:" not in plan.stdout:
        return {}
    words = [line.split() for line in plan.stdout.split("Job stats:")[1].splitlines()]
    return {w[0]: int(w[1]) for w in words if len(w) == 2 and w[1].isdigit() and w[0] != "total"}


def edited(path: Path, change):
    """Apply ``change`` to a file's text; return a function restoring its text and time stamps."""
    text, stat = path.read_text(), path.stat()
    path.write_text(change(text))
    os.utime(path, (stat.st_atime, time.time() + 10))  # newer than every output, as a real edit

    def restore():
        path.write_text(text)
        os.utime(path, (stat.st_atime, stat.st_mtime))

    return restore


def test_a_finished_run_plans_nothing(finished):
    assert planned(*finished) == {}


SEEDS = len(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["training"]["seeds"])
# per dataset: one shard set per graph recipe (PRDNet's default, CGCNN's radius graph); CGCNN and
# PRDNet once per seed, and the Dummy once
DOWNSTREAM_OF_ONE_DATASET = {"prepare": 1, "crystal_groups": 1, "split": 1, "featurize": 2, "train": 2 * SEEDS + 1, "aggregate": 1,
                             "mlflow_import": 1, "all": 1}


def test_editing_a_data_file_reruns_its_dataset_only(finished):
    project, workdir = finished
    restore = edited(workdir / "table.csv", lambda text: text.replace("-0.", "-0.1", 1))
    try:
        assert planned(project, workdir) == DOWNSTREAM_OF_ONE_DATASET
    finally:
        restore()
    assert planned(project, workdir) == {}


def test_editing_an_id_list_file_reruns_its_dataset_only(finished):
    project, workdir = finished
    restore = edited(workdir / "test_ids.txt", lambda text: text + "mb-own-002\n")
    try:
        assert planned(project, workdir) == DOWNSTREAM_OF_ONE_DATASET
    finally:
        restore()


def test_editing_a_model_preset_reruns_that_models_jobs_only(finished):
    project, workdir = finished
    presets = project / "config" / "models.yaml"
    data = yaml.safe_load(presets.read_text())
    data["models"]["cgcnn"]["small"]["head"]["hidden"] += 1
    restore = edited(presets, lambda text: yaml.safe_dump(data))
    try:
        assert planned(project, workdir) == {"train": 2 * SEEDS, "aggregate": 2, "mlflow_import": 1, "all": 1}
    finally:
        restore()
    assert planned(project, workdir) == {}


def test_editing_the_published_scores_reruns_the_tables_only(finished):
    project, workdir = finished
    restore = edited(workdir / "scores.yaml", lambda text: text + "\n# edited\n")
    try:
        assert planned(project, workdir) == {"aggregate": 2, "all": 1}
    finally:
        restore()


def test_moving_the_runs_to_a_tracking_server_retrains_no_job(finished):
    """With a server the training jobs log their epochs there (`--live-tracking`), yet where a job
    reports is not what it computes: only the import runs again."""
    project, workdir = finished
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["mlflow"]["use_env_tracking_uri"] = True
    restore = edited(workdir / "config.yaml", lambda text: yaml.safe_dump(config))
    try:
        assert planned(project, workdir) == {"mlflow_import": 1, "all": 1}
    finally:
        restore()
    assert planned(project, workdir) == {}
