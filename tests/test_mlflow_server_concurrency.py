"""Two importers at once against an MLflow server (PostgreSQL backend store, as in
tests/test_mlflow_server.py): exactly one run per job, duplicates removed, and with the server's
database at hand (MLFLOW_BACKEND_STORE_URI) the deleted runs purged by `mlflow gc`.

Needs root and `apt-get install postgresql`; skipped elsewhere, a failure in CI (CI=true)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from cluster.services import running_mlflow_server
from prdnet.tracking import CONTENT_HASH, RUN_KEY, content_hash
from test_tracking import write_job

pytestmark = [pytest.mark.service, pytest.mark.workflow]


@pytest.fixture(scope="module")
def server():
    with running_mlflow_server("prdnet-mlflow-concurrency-") as service:
        yield service


def backend_uri(server):
    return f"postgresql://postgres@127.0.0.1:{server.pg_port}/mlflow"


def importer(server, results, folders, experiment, out):
    command = [sys.executable, "-m", "prdnet.cli", "mlflow-import", "--metrics", *[str(f / "metrics.json") for f in folders],
               "--results-dir", str(results), "--experiment", experiment, "--tracking-uri-from-env", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri, "MLFLOW_BACKEND_STORE_URI": backend_uri(server)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def runs(server, experiment, deleted=False):
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(server.uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    return client.search_runs([experiment_id], run_view_type=view, max_results=1000)


def test_two_importers_at_once_leave_one_run_per_job(server, tmp_path):
    results = tmp_path / "results"
    folders = [write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}") for i in range(4)]
    processes = [importer(server, results, folders, "concurrent", tmp_path / f"ledger{i}.json") for i in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    active = runs(server, "concurrent")
    assert Counter(run.data.tags[RUN_KEY] for run in active) == Counter({f"tiny/runs/fold{i}": 1 for i in range(4)})
    assert all(CONTENT_HASH in run.data.tags for run in active)
    assert runs(server, "concurrent", deleted=True) == []  # duplicates purged, not only soft-deleted
    # importing again finds every job and adds nothing
    again = importer(server, results, folders, "concurrent", tmp_path / "again.json")
    assert again.wait(timeout=300) == 0, again.stdout.read()[-3000:]
    assert json.loads((tmp_path / "again.json").read_text())["skipped"] == 4
    assert len(runs(server, "concurrent")) == 4


def test_duplicates_from_an_older_version_are_removed_and_purged(server, tmp_path):
    import mlflow
    from mlflow.entities import RunTag

    results = tmp_path / "results"
    folders = [write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}") for i in range(2)]
    client = mlflow.MlflowClient(server.uri)
    experiment_id = client.create_experiment("older")
    for _ in range(2):
        run = client.create_run(experiment_id, tags={RUN_KEY: "tiny/runs/fold0"})
        client.log_batch(run.info.run_id, tags=[RunTag(CONTENT_HASH, content_hash(folders[0]))])
    client.delete_run(client.create_run(experiment_id).info.run_id)  # soft-deleted and left by an older version
    process = importer(server, results, folders, "older", tmp_path / "ledger.json")
    assert process.wait(timeout=300) == 0, process.stdout.read()[-3000:]
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert (ledger["imported"], ledger["skipped"], ledger["duplicates_removed"]) == (1, 1, 1)
    assert sorted(run.data.tags[RUN_KEY] for run in runs(server, "older")) == ["tiny/runs/fold0", "tiny/runs/fold1"]
    assert runs(server, "older", deleted=True) == []
