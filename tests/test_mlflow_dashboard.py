"""The MLflow dashboard as a user meets it: a model-development experiment, runs with the job's
real start and end, the job's data as a dataset input, and artifacts that `mlflow ui` serves from
the results folder (no absolute path of the importing machine in the store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest

from cluster.services import WITHOUT_JOB_EXECUTION, free_port
from prdnet.tracking import default_tracking_uri, import_runs
from test_tracking import write_job

START_MS, WALL_MS = 1_764_000_000_000, 754_321


@pytest.fixture
def imported(tmp_path):
    results = tmp_path / "results"
    folders = []
    for i in range(2):
        folder = write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}")
        info = json.loads((folder / "run.json").read_text())
        info.update(start_time_ms=START_MS + i, end_time_ms=START_MS + i + WALL_MS,
                    inputs={"shard_set": "0123456789abcdef-n4", "split_dir": f"results/tiny/splits/band_gap/fold{i}"})  # fmt: skip
        (folder / "run.json").write_text(json.dumps(info))
        folders.append(folder)
    ledger = import_runs(folders, results, default_tracking_uri(results), "test")
    return results, ledger


def test_the_experiment_is_marked_as_model_development(imported):
    results, _ = imported
    experiment = mlflow.MlflowClient(default_tracking_uri(results)).get_experiment_by_name("test")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location == "mlflow-artifacts:/test"


def test_runs_have_the_jobs_start_and_end_times(imported):
    results, ledger = imported
    client = mlflow.MlflowClient(default_tracking_uri(results))
    for i in range(2):
        run = client.get_run(ledger["runs"][f"tiny/runs/fold{i}"])
        assert (run.info.start_time, run.info.end_time) == (START_MS + i, START_MS + i + WALL_MS)
        assert run.info.status == "FINISHED"


def test_the_jobs_data_is_a_dataset_input(imported):
    results, ledger = imported
    run = mlflow.MlflowClient(default_tracking_uri(results)).get_run(ledger["runs"]["tiny/runs/fold1"])
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest) == ("tiny/band_gap/fold1", "0123456789abcdef-n4")
    profile = json.loads(dataset.profile)
    assert {k: profile[k] for k in ("dataset", "task", "fold", "shard_set")} == {
        "dataset": "tiny", "task": "band_gap", "fold": "fold1", "shard_set": "0123456789abcdef-n4"}
    assert json.loads(dataset.source)["split_dir"] == "results/tiny/splits/band_gap/fold1"
    assert {tag.key: tag.value for tag in dataset_input.tags} == {"mlflow.data.context": "training"}


@pytest.mark.service
def test_mlflow_ui_serves_the_artifacts_from_the_results_folder(imported, tmp_path):
    results, ledger = imported
    moved = tmp_path / "elsewhere"
    results.rename(moved)  # the store holds no absolute path: it still works once moved
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{moved}/mlflow.db",
               "--artifacts-destination", str(moved / "mlflow-artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, **WITHOUT_JOB_EXECUTION})  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(1)
        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        run_id = ledger["runs"]["tiny/runs/fold0"]
        assert {a.path for a in client.list_artifacts(run_id)} == {"metrics.json", "history.csv", "predictions.parquet", "run.json", "plots"}
        assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/parity.png", "plots/learning-curve.png"}
        metrics = json.loads((tmp_path / client.download_artifacts(run_id, "metrics.json", str(tmp_path))).read_text())
        assert metrics["test_mae"] == 0.1
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """Stop the server's process group (mlflow ui and its uvicorn worker): TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=15)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
