"""The MLflow dashboard as a user meets it: `make dashboard` (python -m prdnet.dashboard) prints a
URL that opens, in a new headless Chromium, on the runs table with the test metric, its unit,
model, diffraction and seed; runs with the job's real start and end, the job's data as a dataset
input whose digest is the job's data digest, and artifacts that `mlflow ui` serves from the
results folder (no absolute path of the importing machine in the store).

The browser test needs `chromium` (`apt-get install -y chromium`); skipped elsewhere, a failure in
CI (CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from html.parser import HTMLParser

import mlflow
import pytest
import yaml

from cluster.services import WITHOUT_JOB_EXECUTION, free_port, in_ci
from prdnet.tracking import default_tracking_uri, import_runs
from test_tracking import write_job
from tiny_workflow import ROOT

START_MS, WALL_MS = 1_764_000_000_000, 754_321
DATA_DIGESTS = ["a" * 64, "b" * 64]  # one per fold, as prdnet.training.outputs.data_digest writes them
TEST_MAE = [0.1, 0.3345]
LEAKAGE = {"action": "report", "val": {"size": 5, "duplicate": 0, "polymorph": 1, "prototype": 2},
           "test": {"size": 5, "duplicate": 1, "polymorph": 0, "prototype": 3}}  # run.json's, from splits/leakage.json


@pytest.fixture
def imported(tmp_path):
    results = tmp_path / "results"
    folders = []
    for i in range(2):
        folder = write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}", mae=TEST_MAE[i])
        info = json.loads((folder / "run.json").read_text())
        info["tags"]["seed"] = str(i)
        info.update(start_time_ms=START_MS + i, end_time_ms=START_MS + i + WALL_MS,
                    inputs={"shard_set": "0123456789abcdef-n4", "split_dir": f"results/tiny/splits/band_gap/fold{i}",
                            "data_digest": DATA_DIGESTS[i], "leakage": LEAKAGE})  # fmt: skip
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
    assert (dataset.name, dataset.digest) == ("tiny/band_gap/fold1", "b" * 36)  # the data digest, cut to MLflow's 36
    profile = json.loads(dataset.profile)
    assert {k: profile[k] for k in ("dataset", "task", "fold", "shard_set", "data_digest")} == {
        "dataset": "tiny", "task": "band_gap", "fold": "fold1", "shard_set": "0123456789abcdef-n4", "data_digest": "b" * 64}
    assert json.loads(dataset.source)["split_dir"] == "results/tiny/splits/band_gap/fold1"
    assert {tag.key: tag.value for tag in dataset_input.tags} == {"mlflow.data.context": "training"}


def test_the_dataset_profile_carries_the_folds_leakage_counts(imported):
    results, ledger = imported
    run = mlflow.MlflowClient(default_tracking_uri(results)).get_run(ledger["runs"]["tiny/runs/fold1"])
    profile = json.loads(run.inputs.dataset_inputs[0].dataset.profile)
    assert {k: v for k, v in profile.items() if "_sharing_" in k} == {
        "val_sharing_duplicate": 0, "val_sharing_polymorph": 1, "val_sharing_prototype": 2,
        "test_sharing_duplicate": 1, "test_sharing_polymorph": 0, "test_sharing_prototype": 3}


def test_the_shard_set_is_a_parameter(imported):
    results, ledger = imported
    run = mlflow.MlflowClient(default_tracking_uri(results)).get_run(ledger["runs"]["tiny/runs/fold1"])
    assert run.data.params["data.shard_set"] == "0123456789abcdef-n4"


def test_the_test_metric_has_its_unit(imported):
    results, ledger = imported
    run = mlflow.MlflowClient(default_tracking_uri(results)).get_run(ledger["runs"]["tiny/runs/fold0"])
    assert (run.data.metrics["test_mae"], run.data.tags["test_mae_unit"]) == (0.1, "eV")


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


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1920,1080"]  # fmt: skip


def chromium() -> str:
    """The Chromium executable; the test is skipped without one, and fails in CI (CI=true)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    reason = "needs chromium: apt-get install -y chromium"
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


class GridCells(HTMLParser):
    """The text of every cell of the rendered runs table, by column (the table's cells are the
    elements with role="gridcell", their column in col-id)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.columns: dict[str, list[str]] = {}
        self.open: list[str | None] = []  # per open element: its column if it is a cell
        self.text: list[str] = []  # the page's visible words, for a failure's message
        self.hidden = 0  # inside a script or style element

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.VOID:
            return
        self.hidden += tag in ("script", "style")
        attributes = dict(attrs)
        column = attributes.get("col-id") if attributes.get("role") == "gridcell" else None
        if column is not None:
            self.columns.setdefault(column, []).append("")
        self.open.append(column)

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style")
        if tag not in self.VOID and self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.text.append(data.strip())
        column = next((c for c in reversed(self.open) if c is not None), None)
        if column is not None:
            self.columns[column][-1] += data.strip()


def rendered_table(browser: str, url: str, profile) -> tuple[dict[str, list[str]], str]:
    """(the runs table's cells by column, the page's visible text) as a fresh headless Chromium renders
    ``url`` (the MLflow UI is a script-built page: the DOM after its requests are answered)."""
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--dump-dom", url]
    page = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
    parser = GridCells()
    parser.feed(page)
    return parser.columns, " ".join(parser.text)


def printed_url(process: subprocess.Popen, timeout: float = 180) -> str:
    """The first URL the dashboard prints (after the UI answers)."""
    deadline = time.monotonic() + timeout
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("http"):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # the UI's log: never blocking it
            return line.strip()
        assert time.monotonic() < deadline, "".join(lines)
    raise AssertionError(f"the dashboard printed no URL and ended ({process.wait()}):\n{''.join(lines)[-3000:]}")


@pytest.mark.service
def test_make_dashboard_opens_on_the_runs_table_with_the_test_metric_and_its_unit(imported, tmp_path):
    browser = chromium()
    results, _ = imported
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())  # the default run, on these results
    config["results_dir"], config["mlflow"]["experiment"] = str(results), "test"
    config_file, port = tmp_path / "config.yaml", free_port()
    config_file.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "prdnet.dashboard", "--config", str(config_file), "--port", str(port)]
    dashboard = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                 cwd=ROOT, env={**os.environ, **WITHOUT_JOB_EXECUTION})  # fmt: skip
    try:
        url = printed_url(dashboard)
        cells, text = rendered_table(browser, url, tmp_path / "profile")
        assert "metrics.`test_mae`" in cells, f"no test_mae column in the table at {url}; the page shows: {text[:1500]}"
        assert sorted(cells["metrics.`test_mae`"]) == ["0.1", "0.3345"]
        assert cells["tags.`test_mae_unit`"] == ["eV", "eV"]
        assert set(cells["tags.`model`"]) == {"cgcnn"} and set(cells["tags.`diffraction`"]) == {"none"}
        assert sorted(cells["tags.`seed`"]) == ["0", "1"]
    finally:
        stop(dashboard)


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
