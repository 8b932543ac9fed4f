"""The Snakemake workflow end to end on a tiny configuration: 40 embedded MP crystals and MatBench
jdft2d, PRDNet and CGCNN with and without diffraction, tiny models, one epoch."""

from __future__ import annotations

import json

import pytest
import yaml

from tiny_workflow import snakemake, write_tiny_config

# slow: the first test pays the tiny workflow's one run (40 training jobs: 3 MP tasks and the 5
# official jdft2d folds, 4 variants each, and the Dummy), which every test here reads or edits. It
# cannot be cheaper without losing a promise: the MatBench file needs all 5 folds, the tables every
# variant; each job is one process that imports torch and torch_geometric (seconds each).
pytestmark = [pytest.mark.slow, pytest.mark.workflow]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mp_embedded_path, matminer_data):
    """A work folder with a tiny config: 40 embedded MP crystals and MatBench jdft2d, run once."""
    workdir = tmp_path_factory.mktemp("workflow")
    write_tiny_config(workdir, mp_embedded_path, matminer_data)
    first = snakemake(workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    return workdir, first


def test_workflow_writes_shards_splits_rejects_and_logs(tiny):
    workdir, _ = tiny
    results = workdir / "results"
    for dataset, count in [("mp_2018_cgcnn36k", 40), ("matbench_jdft2d", 636)]:
        manifests = sorted((results / dataset / "graphs").glob("*/manifest.json"))
        assert len(manifests) == 2  # one shard set per graph recipe: PRDNet's default, CGCNN's radius graph
        for manifest_path in manifests:
            manifest = json.loads(manifest_path.read_text())
            assert manifest["crystals"] == count and manifest["validation"]["accepted"] == count
            assert all((manifest_path.parent / name).exists() for name in manifest["shards"])
        assert (results / dataset / "rejects.csv").read_text().startswith("id,task,reason")
        for rule in ("prepare", "crystal_groups", "split"):
            assert (results / "logs" / rule / f"{dataset}.log").exists()  # logs live under results_dir
        leakage = json.loads((results / dataset / "splits" / "leakage.json").read_text())
        for folds in leakage["splits"].values():  # every task and fold: counts of each kind per audited part
            for parts in folds.values():
                assert set(parts) == {"val", "test"}
                assert all(set(c) == {"size", "duplicate", "polymorph", "prototype"} for c in parts.values())
    assert len((results / "mp_2018_cgcnn36k/splits/band_gap/fold0/test.txt").read_text().split()) == 4
    for fold in range(5):
        assert (results / f"matbench_jdft2d/splits/exfoliation_en/fold{fold}/val.txt").exists()


JOBS = 3 * 1 * 5 + 1 * 5 * 5  # MP: 3 tasks × 1 fold × (4 variants + Dummy); jdft2d: 1 task × 5 folds × (4 + Dummy)


def mlflow_runs(workdir):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["prdnet-bench"], output_format="pandas")


def test_every_job_has_finite_metrics_and_a_weights_only_checkpoint(tiny):
    import torch

    workdir, _ = tiny
    metrics_files = sorted((workdir / "results").glob("*/runs/*/*/*/*/*/*/metrics.json"))
    assert len(metrics_files) == JOBS
    for path in metrics_files:
        metrics = json.loads(path.read_text())
        value = metrics[f"test_{metrics['metric']}"]
        assert value == value and abs(value) < float("inf"), path
        torch.load(path.parent / "model.pt", weights_only=True)


def test_tables_have_a_row_per_variant_and_a_column_per_task(tiny):
    import pandas as pd

    workdir, _ = tiny
    mp = pd.read_csv(workdir / "results" / "tables" / "mp_2018_cgcnn36k.csv")
    assert list(mp["model"]) == ["cgcnn", "dummy", "prdnet"]
    # per task: without, +paper, Δ paper
    assert len(mp.columns) == 2 + 3 * 3
    jdft2d = pd.read_csv(workdir / "results" / "tables" / "matbench_jdft2d.csv")
    assert list(jdft2d["model"])[:3] == ["cgcnn", "dummy", "prdnet"]
    assert {"CGCNN (published)", "ALIGNN (published)", "Dummy (published)"} <= set(jdft2d["model"])
    assert "±" in jdft2d.iloc[0, 2]
    markdown = (workdir / "results" / "tables" / "matbench_jdft2d.md").read_text()
    assert "CGCNN (published)" in markdown and "MatBench v0.1 leaderboard" in markdown


def test_matbench_files_load_back_through_matbench(tiny):
    from matbench.bench import MatbenchBenchmark

    workdir, _ = tiny
    files = sorted((workdir / "results" / "matbench_jdft2d" / "matbench").glob("*/*/*/results.json.gz"))
    assert len(files) == 5  # 4 model variants and the Dummy
    for path in files:
        benchmark = MatbenchBenchmark.from_file(str(path))
        task = benchmark.tasks_map["matbench_jdft2d"]
        assert task.all_folds_recorded
        mae = task.scores["mae"]["mean"]
        assert 0 < mae < 1e4


def test_mlflow_has_one_run_per_job_with_its_tags(tiny):
    workdir, _ = tiny
    runs = mlflow_runs(workdir)
    assert len(runs) == JOBS
    for tag in ("dataset", "task", "fold", "model", "diffraction", "ablation", "git_commit"):
        assert runs[f"tags.{tag}"].notna().all(), tag
    assert set(runs["tags.diffraction"]) == {"none", "paper"}
    assert runs["params.featurizer.featurizer_version"].notna().all()


def dry_run(workdir) -> str:
    """What a run would do: Snakemake's job stats of a dry run."""
    plan = snakemake(workdir, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr
    return plan.stdout


def test_second_run_does_nothing_and_adds_no_mlflow_runs(tiny):
    workdir, _ = tiny
    again = snakemake(workdir)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    assert len(mlflow_runs(workdir)) == JOBS


def test_deleted_job_reruns_only_that_job_and_the_reports(tiny):
    workdir, _ = tiny
    (metrics,) = (workdir / "results" / "matbench_jdft2d" / "runs").glob("*/fold2/cgcnn/paper/default/seed0/metrics.json")
    metrics.unlink()
    plan = dry_run(workdir)
    stats = [line.split() for line in plan.split("Job stats:")[1].splitlines()]
    counts = {words[0]: words[1] for words in stats if len(words) == 2 and words[1].isdigit()}
    assert counts == {"train": "1", "aggregate": "1", "matbench_record": "1", "mlflow_import": "1", "all": "1", "total": "5"}
    assert snakemake(workdir).returncode == 0
    assert len(mlflow_runs(workdir)) == JOBS


def test_deleted_shard_reruns_only_featurize(tiny):
    workdir, _ = tiny
    shard = sorted((workdir / "results" / "matbench_jdft2d" / "graphs").glob("*/shard-001.parquet"))[0]
    shard.unlink()
    plan = dry_run(workdir)
    assert "featurize" in plan and "prepare" not in plan and "split " not in plan
    assert snakemake(workdir, "--until", "featurize").returncode == 0 and shard.exists()


def test_wrong_config_key_stops_the_workflow_with_its_name(tiny, tmp_path):
    workdir, _ = tiny
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["featurizer"]["neighbours"] = 12
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    failed = snakemake(tmp_path, "--dry-run")
    assert failed.returncode != 0
    assert "'neighbours' was unexpected" in failed.stdout + failed.stderr
