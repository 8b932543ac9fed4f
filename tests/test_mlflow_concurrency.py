"""MLflow import, safe with concurrent importers on a SQLite store: one run per job, duplicates
from older versions removed, replaced runs deleted for real (metadata and artifacts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import mlflow
import pytest
from mlflow.entities import RunTag, ViewType

from prdnet.tracking import CONTENT_HASH, RUN_KEY, content_hash, default_tracking_uri, import_runs
from test_tracking import write_job

pytestmark = [pytest.mark.workflow]


def make_jobs(results, n):
    return [write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}") for i in range(n)]


def runs_in_store(results, deleted=False):
    client = mlflow.MlflowClient(default_tracking_uri(results))
    experiment = client.get_experiment_by_name("test")
    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    return client.search_runs([experiment.experiment_id], run_view_type=view, max_results=1000)


def importer(results, folders, out):
    command = [sys.executable, "-m", "prdnet.cli", "mlflow-import", "--metrics", *[str(f / "metrics.json") for f in folders],
               "--results-dir", str(results), "--experiment", "test", "--out", str(out)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def test_two_importers_at_once_on_a_new_store_leave_one_run_per_job(tmp_path):
    results = tmp_path / "results"
    folders = make_jobs(results, 6)
    processes = [importer(results, folders, tmp_path / f"ledger{i}.json") for i in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    keys = Counter(run.data.tags[RUN_KEY] for run in runs_in_store(results))
    assert keys == Counter({f"tiny/runs/fold{i}": 1 for i in range(6)})
    ledgers = [json.loads((tmp_path / f"ledger{i}.json").read_text()) for i in range(2)]
    assert sorted(ledger["imported"] for ledger in ledgers) == [0, 6]  # the second waited for the lock
    assert ledgers[0]["runs"] == ledgers[1]["runs"]


def test_duplicates_left_by_an_older_version_are_removed(tmp_path):
    results = tmp_path / "results"
    folders = make_jobs(results, 2)
    client = mlflow.MlflowClient(default_tracking_uri(results))
    experiment_id = client.create_experiment("test")
    for _ in range(3):  # an older importer without a lock: the same complete run three times
        run = client.create_run(experiment_id, tags={RUN_KEY: "tiny/runs/fold0"})
        client.log_batch(run.info.run_id, tags=[RunTag(CONTENT_HASH, content_hash(folders[0]))])
    ledger = import_runs(folders, results, default_tracking_uri(results), "test")
    assert (ledger["imported"], ledger["skipped"], ledger["duplicates_removed"]) == (1, 1, 2)
    runs = runs_in_store(results)
    assert sorted(run.data.tags[RUN_KEY] for run in runs) == ["tiny/runs/fold0", "tiny/runs/fold1"]
    assert runs_in_store(results, deleted=True) == []  # deleted for real


def test_a_replaced_run_is_deleted_for_real_with_its_artifacts(tmp_path):
    results = tmp_path / "results"
    folders = make_jobs(results, 2)
    first = import_runs(folders, results, default_tracking_uri(results), "test")
    old_run = first["runs"]["tiny/runs/fold0"]
    old_artifacts = results / "mlflow-artifacts" / "test" / old_run
    assert old_artifacts.is_dir()
    (folders[0] / "metrics.json").write_text(json.dumps({"test_mae": 0.05, "best_epoch": 1, "metric": "mae", "unit": "eV"}))
    second = import_runs(folders, results, default_tracking_uri(results), "test")
    assert (second["replaced"], second["purged"]) == (1, 1)
    assert len(runs_in_store(results)) == 2 and runs_in_store(results, deleted=True) == []
    assert not old_artifacts.exists()
    assert sorted(p.name for p in (results / "mlflow-artifacts" / "test").iterdir()) == sorted(second["runs"].values())
