"""Long jobs can be watched: history.csv holds every finished epoch while the job runs, and with a
tracking server each job logs its epochs to its MLflow run while it trains; the import at the end
completes that same run (one run per job, each epoch once). A SQLite store gets nothing from the
jobs: its import stays the single writer.

Jobs are real `prdnet train` processes on the tiny data of tests/training_jobs.py; the server is
`mlflow server` on 127.0.0.1 with a SQLite backend of its own (a tracking server like any other to
its clients)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import mlflow
import pandas as pd
import pytest

from cluster.services import WITHOUT_JOB_EXECUTION, free_port
from prdnet.live_tracking import LiveTracking, start_live_run
from prdnet.preemption import RESUMABLE_EXIT_STATUS
from prdnet.tracking import CONTENT_HASH, LIVE, RUN_KEY, import_runs
from test_mlflow_dashboard import stop
from training_jobs import ENV, build_dataset, interrupt_after, train_command, wait_for_line

EPOCHS = 6
EXPERIMENT = "live"
HISTORY = ["train_loss", "train_mae", "val_mae", "learning_rate"]
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def dataset(mp_embedded_path, tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("live"), mp_embedded_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a SQLite store of its own, serving artifacts; its URI."""
    folder = tmp_path_factory.mktemp("live-server")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--serve-artifacts",
               "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]  # fmt: skip
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **WITHOUT_JOB_EXECUTION})  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                started = process.poll() is None and time.monotonic() < deadline
                assert started, (folder / "server.log").read_text()[-3000:]
                time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def live_command(dataset, results, key: str) -> list[str]:
    """`prdnet train` of the tiny job in ``results/<key>``, logging its epochs to the server
    named by MLFLOW_TRACKING_URI (as the workflow runs it with use_env_tracking_uri)."""
    live = {"experiment": EXPERIMENT, "results_dir": str(results), "tracking_uri": None}
    return [*train_command(dataset, results / key, {"epochs": EPOCHS}), "--live-tracking", json.dumps(live)]


def runs_of_key(uri: str, key: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], f"tags.`{RUN_KEY}` = '{key}'")


def steps(uri: str, run_id: str, name: str) -> list[int]:
    return sorted(metric.step for metric in mlflow.MlflowClient(uri).get_metric_history(run_id, name))


def finished_epochs(log: str) -> int:
    """The epochs a job stopped by a signal had finished, from its stop line."""
    stop_line = re.search(r"stopped by SIGTERM (?:after epoch (\d+)|in epoch (\d+) after batch)", log)
    assert stop_line, log[-3000:]
    return int(stop_line[1]) if stop_line[1] else int(stop_line[2]) - 1


@pytest.mark.workflow
def test_history_csv_holds_every_finished_epoch_while_the_job_runs(dataset, tmp_path):
    out = tmp_path / "job"
    status = interrupt_after(train_command(dataset, out, {"epochs": EPOCHS}), tmp_path / "job.log",
                             "checkpoint (after epoch 2)", signal.SIGTERM)  # fmt: skip
    log = (tmp_path / "job.log").read_text()
    assert status == RESUMABLE_EXIT_STATUS, log[-3000:]
    finished = finished_epochs(log)
    assert 2 <= finished < EPOCHS and not (out / "metrics.json").exists()  # the job has not ended
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(range(1, finished + 1))
    assert list(history.columns) == ["epoch", *HISTORY] and history[HISTORY].notna().all().all()


@pytest.mark.service
@pytest.mark.workflow
def test_a_job_logs_its_epochs_to_its_run_while_it_trains_and_the_import_completes_that_run(dataset, server, tmp_path):
    results = tmp_path / "results"
    key = "tiny/runs/formation_energy/fold0/prdnet/paper/default/seed3"
    log = tmp_path / "job.log"
    with_password = server.replace("://", f"://prdnet-user:{PASSWORD}@", 1)
    job = subprocess.Popen(live_command(dataset, results, key), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                           env={**ENV, "MLFLOW_TRACKING_URI": with_password})  # fmt: skip
    try:
        wait_for_line(job, log, "checkpoint (after epoch 2)")
        job.send_signal(signal.SIGSTOP)  # hold the job in its third epoch while we look at the server
        (run,) = runs_of_key(server, key)
        assert steps(server, run.info.run_id, "val_mae") in ([1], [1, 2])  # epoch 2's may still be on its way
        assert run.info.status == "RUNNING" and LIVE in run.data.tags and CONTENT_HASH not in run.data.tags
        assert not (results / key / "metrics.json").exists()  # the job has not ended
        job.send_signal(signal.SIGCONT)
        assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        job.send_signal(signal.SIGCONT)
        if job.poll() is None:
            job.kill()
    assert PASSWORD not in log.read_text()

    ledger = import_runs([results / key], results, server, EXPERIMENT)
    (done,) = runs_of_key(server, key)
    assert (ledger["imported"], ledger["runs"][key], done.info.run_id) == (1, run.info.run_id, run.info.run_id)
    assert done.info.status == "FINISHED" and CONTENT_HASH in done.data.tags and "test_mae" in done.data.metrics
    for name in HISTORY:  # every epoch once: those logged live and those the import added
        assert steps(server, done.info.run_id, name) == list(range(1, EPOCHS + 1)), name
    again = import_runs([results / key], results, server, EXPERIMENT)
    assert (again["imported"], again["skipped"], [r.info.run_id for r in runs_of_key(server, key)]) == (0, 1, [run.info.run_id])


@pytest.mark.service
@pytest.mark.workflow
def test_a_resumed_job_goes_on_logging_to_the_same_run(dataset, server, tmp_path):
    results = tmp_path / "results"
    key = "tiny/runs/formation_energy/fold0/prdnet/paper/default/seed4"
    env_job = {**ENV, "MLFLOW_TRACKING_URI": server}
    command = live_command(dataset, results, key)
    first = subprocess.Popen(command, stdout=open(tmp_path / "first.log", "w"), stderr=subprocess.STDOUT, env=env_job)
    try:
        wait_for_line(first, tmp_path / "first.log", "checkpoint (after epoch 2)")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=180) == RESUMABLE_EXIT_STATUS
    finally:
        if first.poll() is None:
            first.kill()
    (stopped,) = runs_of_key(server, key)
    finished = finished_epochs((tmp_path / "first.log").read_text())
    assert steps(server, stopped.info.run_id, "val_mae") == list(range(1, finished + 1))

    resumed = subprocess.run(command, stdout=open(tmp_path / "resumed.log", "w"), stderr=subprocess.STDOUT, env=env_job,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert f"continuing run {stopped.info.run_id}" in (tmp_path / "resumed.log").read_text()
    import_runs([results / key], results, server, EXPERIMENT)
    (done,) = runs_of_key(server, key)
    assert done.info.run_id == stopped.info.run_id and done.info.status == "FINISHED"
    assert steps(server, done.info.run_id, "val_mae") == list(range(1, EPOCHS + 1))


def test_a_sqlite_store_gets_nothing_from_the_jobs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    live = start_live_run(LiveTracking(EXPERIMENT, tmp_path), tmp_path / "job", {"model": "cgcnn"}, resumed=False)
    assert live is None and not (tmp_path / "mlflow.db").exists()
    assert "the store is not a tracking server" in capsys.readouterr().out
