"""MLflow import: one run per job, nothing imported twice, re-run jobs replaced, killed imports cleaned."""

from __future__ import annotations

import json

import mlflow
import pyarrow as pa
import pytest

from prdnet.io import write_parquet
from prdnet.tracking import CONTENT_HASH, RUN_KEY, default_tracking_uri, import_runs

LABELS = ("dataset", "task", "fold", "model", "diffraction", "ablation")


def write_job(folder, fold, mae=0.1):
    """A finished job's files, in the format prdnet train writes."""
    folder.mkdir(parents=True)
    tags = dict(zip(LABELS, ("tiny", "band_gap", fold, "cgcnn", "none", "default")), git_commit="abc")
    (folder / "run.json").write_text(json.dumps({"params": {"model.name": "cgcnn", "seed": 0, "secret_free": "yes"}, "tags": tags}))
    (folder / "metrics.json").write_text(json.dumps({"test_mae": mae, "best_epoch": 2, "metric": "mae", "unit": "eV"}))
    (folder / "history.csv").write_text("epoch,train_loss,train_mae,val_mae,learning_rate\n1,0.5,0.4,0.3,0.001\n2,0.4,0.3,0.2,0.0005\n")
    write_parquet(folder / "predictions.parquet", pa.table({"id": ["a"], "true": [1.0], "predicted": [1.1]}))
    return folder


@pytest.fixture
def jobs(tmp_path):
    results = tmp_path / "results"
    return results, [write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}") for i in range(3)]


def active_runs(results):
    mlflow.set_tracking_uri(default_tracking_uri(results))
    return mlflow.search_runs(experiment_names=["test"], output_format="pandas")


def test_each_job_becomes_one_run_with_tags_metrics_and_artifacts(jobs):
    results, folders = jobs
    ledger = import_runs(folders, results, default_tracking_uri(results), "test")
    assert ledger["imported"] == 3
    runs = active_runs(results)
    assert len(runs) == 3
    assert set(runs["tags.fold"]) == {"fold0", "fold1", "fold2"} and set(runs["tags.git_commit"]) == {"abc"}
    assert set(runs["metrics.test_mae"]) == {0.1} and set(runs["params.model.name"]) == {"cgcnn"}
    client = mlflow.MlflowClient(default_tracking_uri(results))
    run_id = runs["run_id"].iloc[0]
    assert [m.step for m in client.get_metric_history(run_id, "val_mae")] == [1, 2]
    # proxied location (no absolute path of this machine); the files lie where `mlflow ui
    # --artifacts-destination results/mlflow-artifacts` serves them from
    artifact_uri = client.get_run(run_id).info.artifact_uri
    assert artifact_uri == f"mlflow-artifacts:/test/{run_id}/artifacts"
    folder = results / "mlflow-artifacts" / "test" / run_id / "artifacts"
    assert {p.name for p in folder.iterdir()} == {"metrics.json", "history.csv", "predictions.parquet", "run.json", "plots"}
    assert {p.name for p in (folder / "plots").iterdir()} == {"parity.png", "learning-curve.png"}  # as in the HTML report


def test_importing_again_adds_nothing(jobs):
    results, folders = jobs
    import_runs(folders, results, default_tracking_uri(results), "test")
    again = import_runs(folders, results, default_tracking_uri(results), "test")
    assert again["imported"] == 0 and again["skipped"] == 3
    assert len(active_runs(results)) == 3


def test_a_rerun_job_replaces_its_run(jobs):
    results, folders = jobs
    import_runs(folders, results, default_tracking_uri(results), "test")
    (folders[0] / "metrics.json").write_text(json.dumps({"test_mae": 0.05, "best_epoch": 1, "metric": "mae", "unit": "eV"}))
    ledger = import_runs(folders, results, default_tracking_uri(results), "test")
    assert (ledger["imported"], ledger["replaced"], ledger["skipped"]) == (1, 1, 2)
    runs = active_runs(results)
    assert len(runs) == 3 and sorted(runs["metrics.test_mae"]) == [0.05, 0.1, 0.1]


def test_a_half_imported_run_from_a_killed_import_is_removed(jobs):
    results, folders = jobs
    import_runs(folders[:1], results, default_tracking_uri(results), "test")
    client = mlflow.MlflowClient(default_tracking_uri(results))
    experiment = client.get_experiment_by_name("test")
    client.create_run(experiment.experiment_id, tags={RUN_KEY: "tiny/runs/fold1"})  # no content hash: killed mid-way
    import_runs(folders, results, default_tracking_uri(results), "test")
    runs = active_runs(results)
    assert len(runs) == 3 and runs[f"tags.{CONTENT_HASH}"].notna().all()
