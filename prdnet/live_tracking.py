"""A training job's epochs on an MLflow tracking server while it trains.

When the workflow's MLflow store is a tracking server (``mlflow.use_env_tracking_uri: true`` with
an http(s) ``MLFLOW_TRACKING_URI``, or an http(s) ``mlflow.tracking_uri``), process 0 of every
training job logs each finished epoch's history row (``train_loss``, ``train_<metric>``,
``val_<metric>``, ``learning_rate``; step = epoch) to the job's run. The run is the one with the
job's run key (its folder relative to the results folder, :data:`prdnet.tracking.RUN_KEY`) and the
tag :data:`prdnet.tracking.LIVE`: created when the job starts afresh (replacing the run of an
earlier attempt that never finished), continued when it resumes from its checkpoint, and completed
by the import (:func:`prdnet.tracking.import_runs`), so a job still makes one run.

A SQLite store gets nothing from the jobs: there the import stays the single writer. Live logging
never fails a job: a server that cannot be reached turns it off with one line in the job's log,
and the import at the end logs everything."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
"""MLflow's client retries a failed request for minutes by default; a job retries little and goes
on training (the variables are set for the job's process unless already set)."""


@dataclass(frozen=True)
class LiveTracking:
    """Where a training job logs its epochs: the experiment on the tracking server, the results
    folder its run key is relative to, and the server's URI (None: the environment variable
    ``MLFLOW_TRACKING_URI``, read when the job starts, never stored: it may carry credentials)."""

    experiment: str
    results_dir: Path
    tracking_uri: str | None = None


class LiveRun:
    """The job's MLflow run, logged to after every epoch; off for good after a failed call."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_epoch(self, row: dict[str, float]) -> bool:
        """Log one history row (its ``epoch`` is the step). Returns False, and logs nothing ever
        again, when the server fails to take it."""
        if self.client is None:
            return False
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, int(row["epoch"])) for name, value in row.items() if name != "epoch"]
        try:
            self.client.log_batch(self.run_id, metrics=metrics)
        except Exception as error:  # noqa: BLE001 - any failure of the server: the job goes on
            print(f"MLflow live progress off from epoch {row['epoch']}: {error}"[:500], flush=True)
            self.client = None
            return False
        return True


def start_live_run(
    settings: LiveTracking | None, out_dir: Path, labels: dict[str, str], resumed: bool
) -> LiveRun | None:
    """The run this job logs its epochs to, or None (no settings, the store is not a tracking
    server, or the server cannot be reached: one line says why). A job that resumes from its
    checkpoint continues its newest live run; a job that starts afresh creates one. Either way the
    other live runs of its key, left by attempts that never finished, are deleted."""
    if settings is None:
        return None
    from prdnet.tracking import is_remote, redact_process_output

    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not is_remote(uri):
        print("MLflow live progress off: the store is not a tracking server (the import writes the runs)", flush=True)
        return None
    redact_process_output(uri)
    try:
        return _start(settings, uri, Path(out_dir), labels, resumed)
    except Exception as error:  # noqa: BLE001 - a server down or refusing: the job trains all the same
        print(f"MLflow live progress off: {error}"[:500], flush=True)
        return None


def _start(settings: LiveTracking, uri: str, out_dir: Path, labels: dict[str, str], resumed: bool) -> LiveRun:
    from mlflow.tracking import MlflowClient

    from prdnet.tracking import LIVE, RUN_KEY, _delete, _experiment_id, _runs_of_key, check_server, is_live, run_name

    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    check_server(uri)
    key = out_dir.resolve().relative_to(Path(settings.results_dir).resolve()).as_posix()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, settings.experiment, sqlite_store=False)
    earlier = sorted((run for run in _runs_of_key(client, experiment_id, key) if is_live(run)),
                     key=lambda run: (run.info.start_time or 0, run.info.run_id))  # fmt: skip
    if resumed and earlier:
        run_id = earlier.pop().info.run_id
        print(f"MLflow live progress: continuing run {run_id} ({key})", flush=True)
    else:
        now = int(time.time() * 1000)
        tags = {**{k: str(v) for k, v in labels.items()}, RUN_KEY: key, LIVE: str(now)}
        run_id = client.create_run(experiment_id, start_time=now, run_name=run_name(tags), tags=tags).info.run_id
        print(f"MLflow live progress: run {run_id} ({key})", flush=True)
    for run in earlier:
        _delete(client, run.info.run_id)
    return LiveRun(client, run_id)
