"""MLflow on a tracking server: a real PostgreSQL (initdb into a private folder, 127.0.0.1) as the
backend store of `mlflow server` with proxied local artifacts, on 127.0.0.1. The tiny config
(40 MP crystals, band gap: 4 jobs) with `mlflow.use_env_tracking_uri: true` imports into the server
named by MLFLOW_TRACKING_URI; runs, tags and artifacts are checked through mlflow.search_runs.
Re-running adds no run; with the server down only mlflow_import fails, clearly, and the finished
jobs import on the next run.

Needs root and `apt-get install postgresql`; skipped elsewhere, a failure in CI (CI=true)."""

from __future__ import annotations

import json
import os

import pytest

from cluster.services import running_mlflow_server
from tiny_workflow import MP, snakemake, write_tiny_config

pytestmark = [pytest.mark.service, pytest.mark.workflow]

JOBS = 5  # band_gap × fold0 × {prdnet, cgcnn} × {none, paper}, and the Dummy
TAGS = ("dataset", "task", "fold", "model", "diffraction", "ablation", "git_commit", "prdnet.run_key", "prdnet.content_hash")
ARTIFACTS = {"metrics.json", "history.csv", "predictions.parquet", "run.json"}


@pytest.fixture(scope="module")
def server():
    with running_mlflow_server("prdnet-mlflow-") as service:
        yield service


@pytest.fixture(scope="module")
def workdir(server, tmp_path_factory, mp_embedded_path, matminer_data):
    workdir = tmp_path_factory.mktemp("mlflow-server")
    write_tiny_config(workdir, mp_embedded_path, matminer_data, datasets=(MP,), tasks=["band_gap"],
                      mlflow={"use_env_tracking_uri": True})  # fmt: skip
    return workdir


def run(workdir, server, *extra):
    result = snakemake(workdir, *extra, env={"MLFLOW_TRACKING_URI": server.uri}, timeout=900)
    return result, result.stdout + result.stderr


def server_runs(server):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.uri)
    try:
        return mlflow.search_runs(experiment_names=["prdnet-bench"], output_format="pandas")
    finally:
        mlflow.set_tracking_uri(previous)


def ledger(workdir):
    return json.loads((workdir / "results" / "mlflow_import.json").read_text())


def test_runs_tags_and_artifacts_reach_the_server(server, workdir):
    import mlflow

    result, output = run(workdir, server)
    assert result.returncode == 0, output[-4000:]
    # the URI comes from the environment at import time: not in the command line, not in a SQLite file
    (command,) = [line for line in output.splitlines() if "prdnet mlflow-import" in line]
    assert "--tracking-uri-from-env" in command and str(server.port) not in command
    assert not (workdir / "results" / "mlflow.db").exists()
    assert ledger(workdir)["imported"] == JOBS and ledger(workdir)["tracking_uri"] == server.uri

    runs = server_runs(server)
    assert len(runs) == JOBS
    for tag in TAGS:
        assert runs[f"tags.{tag}"].notna().all(), tag
    assert set(runs["tags.diffraction"]) == {"none", "paper"} and set(runs["tags.model"]) == {"prdnet", "cgcnn", "dummy"}
    assert runs["metrics.test_mae"].notna().all() and runs["params.featurizer.featurizer_version"].notna().all()
    client = mlflow.MlflowClient(server.uri)
    for run_id, artifact_uri in zip(runs["run_id"], runs["artifact_uri"]):
        assert artifact_uri.startswith("mlflow-artifacts:"), artifact_uri  # proxied by the server
        assert {a.path for a in client.list_artifacts(run_id)} == ARTIFACTS | {"plots"}
        assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/parity.png", "plots/learning-curve.png"}
    stored = {path.name for path in server.artifacts.rglob("*") if path.is_file()}
    assert ARTIFACTS <= stored  # on the server's artifact destination, not in the results folder
    assert not (workdir / "results" / "mlflow-artifacts").exists()


def test_importing_again_adds_no_run(server, workdir):
    result, output = run(workdir, server, "--forcerun", "mlflow_import")
    assert result.returncode == 0, output[-4000:]
    assert (ledger(workdir)["imported"], ledger(workdir)["skipped"]) == (0, JOBS)
    assert len(server_runs(server)) == JOBS


def test_a_password_in_the_tracking_uri_reaches_no_file_under_the_results(server, workdir):
    """The import as the workflow runs it (URI from the environment, output to its log), into a
    new experiment so that MLflow prints its "View run ... at: <uri>" line for every run."""
    import subprocess
    import sys
    from pathlib import Path

    password = "s3cret-Pa55word"
    uri = server.uri.replace("://", f"://prdnet-user:{password}@", 1)
    metrics = sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob("metrics.json"))
    log = workdir / "results" / "logs" / "mlflow_import_password.log"
    with open(log, "w") as handle:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "prdnet"), "mlflow-import", "--metrics", *metrics, "--results-dir", "results",
             "--experiment", "prdnet-bench-password", "--tracking-uri-from-env", "--out", "results/mlflow_import_password.json"],
            cwd=workdir, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, stdout=handle, stderr=subprocess.STDOUT,
            timeout=600)  # fmt: skip
    text = log.read_text()
    assert result.returncode == 0, text[-4000:]
    assert "View run" in text and "http://***@127.0.0.1" in text  # MLflow's own lines, redacted
    leaking = [str(path) for path in (workdir / "results").rglob("*") if path.is_file() and password.encode() in path.read_bytes()]
    assert leaking == []


def test_a_server_that_is_down_fails_only_the_import_and_loses_nothing(server, workdir):
    (metrics,) = (workdir / "results" / MP / "runs").glob("band_gap/fold0/cgcnn/paper/default/seed0/metrics.json")
    metrics.unlink()
    server.stop_server()
    try:
        result, output = run(workdir, server)
        assert result.returncode != 0
        assert "Error in rule mlflow_import" in output and "Error in rule train" not in output
        assert f"MLflow tracking server {server.uri} is not reachable" in output
        assert "stay under results/ and are imported when the workflow runs again" in output
        assert metrics.exists()  # the re-run job finished and kept its results
        assert not (workdir / "results" / "mlflow_import.json").exists()
    finally:
        server.start_server()
    result, output = run(workdir, server)
    assert result.returncode == 0, output[-4000:]
    done = ledger(workdir)
    assert done["imported"] + done["skipped"] == JOBS and done["imported"] == done["replaced"]
    runs = server_runs(server)
    assert len(runs) == JOBS and runs["tags.prdnet.run_key"].is_unique
