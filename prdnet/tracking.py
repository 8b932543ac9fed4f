"""Import finished training jobs into MLflow, from one process (the single writer).

Jobs never talk to MLflow: they leave ``run.json``, ``metrics.json``, ``history.csv`` and
``predictions.parquet`` on disk, and this importer turns each job folder into one MLflow run.
Each run carries the tag ``prdnet.run_key`` (the job's folder relative to the results root) and,
once complete, ``prdnet.content_hash`` (SHA-256 of its metrics and history). Importing again
skips runs whose key and hash are already there, replaces a run whose job was re-run, and
deletes half-imported runs (no hash tag) left by a killed import, so nothing is duplicated.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RUN_KEY = "prdnet.run_key"
CONTENT_HASH = "prdnet.content_hash"
MAX_PARAM_LENGTH = 6000
ARTIFACTS = ("metrics.json", "history.csv", "predictions.parquet", "run.json")


def default_tracking_uri(results_dir: str | Path) -> str:
    """SQLite store ``results/mlflow.db`` (absolute path)."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


class TrackingServerError(RuntimeError):
    """The MLflow tracking server does not answer."""


def redact_uri(uri: str) -> str:
    """The URI without a user name or password (safe to log and to write to disk)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.split(":", 1)[0].lower() in {"http", "https"}


def check_server(tracking_uri: str, timeout: float = 10) -> None:
    """For an http(s) tracking URI, fail fast and clearly when the server is down (MLflow's own
    client would retry for minutes); other stores are left to MLflow."""
    if not is_remote(tracking_uri):
        return
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(tracking_uri)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")  # credentials are not needed for /health
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(64)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingServerError(f"MLflow tracking server {redact_uri(tracking_uri)} is not reachable ({reason})") from None


def content_hash(run_dir: Path) -> str:
    """SHA-256 of the job's metrics and history: changes exactly when the job was re-run."""
    digest = hashlib.sha256()
    for name in ("metrics.json", "history.csv"):
        digest.update((run_dir / name).read_bytes())
    return digest.hexdigest()


def _history_metrics(run_dir: Path) -> list[tuple[str, float, int]]:
    rows = []
    with open(run_dir / "history.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row.pop("epoch"))
            rows.extend((name, float(value), epoch) for name, value in row.items())
    return rows


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _experiment_id(client: Any, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, created if new: artifacts under artifact_root, or where the server
    puts them (its --artifacts-destination) when artifact_root is None."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None if artifact_root is None else artifact_root.resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _log_run(client: Any, experiment_id: str, run_dir: Path, key: str, digest: str) -> str:
    from mlflow.entities import Metric, Param, RunTag

    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tags = {k: str(v) for k, v in info["tags"].items()}
    name = "/".join(tags.get(k, "") for k in ("dataset", "task", "fold", "model", "diffraction", "ablation"))
    run = client.create_run(experiment_id, tags={**tags, RUN_KEY: key, "mlflow.runName": name})
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(info["params"].items())]
    series = [Metric(n, v, now, step) for n, v, step in _history_metrics(run_dir)]
    finals = [Metric(n, float(v), now, 0) for n, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for chunk in _chunks(params, 100):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(series + finals, 1000):
        client.log_batch(run_id, metrics=chunk)
    for artifact in ARTIFACTS:
        client.log_artifact(run_id, str(run_dir / artifact))
    client.log_batch(run_id, tags=[RunTag(CONTENT_HASH, digest)])  # last: marks the run complete
    client.set_terminated(run_id, "FINISHED")
    return run_id


def import_runs(run_dirs: list[Path], results_dir: Path, tracking_uri: str, experiment: str) -> dict[str, Any]:
    """Import job folders into MLflow; returns ``{run_key: run_id}`` and counts of what was done."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    artifact_root = None if is_remote(tracking_uri) else results_dir / "mlflow-artifacts"
    experiment_id = _experiment_id(client, experiment, artifact_root)
    existing = {}
    for run in client.search_runs([experiment_id], max_results=50000):
        key = run.data.tags.get(RUN_KEY)
        if key is None:
            continue
        if CONTENT_HASH not in run.data.tags:
            client.delete_run(run.info.run_id)  # half-imported by a killed import
            continue
        existing[key] = run
    imported, skipped, replaced, ledger = 0, 0, 0, {}
    for run_dir in sorted(run_dirs):
        key = run_dir.resolve().relative_to(results_dir.resolve()).as_posix()
        digest = content_hash(run_dir)
        old = existing.get(key)
        if old is not None and old.data.tags[CONTENT_HASH] == digest:
            ledger[key] = old.info.run_id
            skipped += 1
            continue
        if old is not None:
            client.delete_run(old.info.run_id)
            replaced += 1
        ledger[key] = _log_run(client, experiment_id, run_dir, key, digest)
        imported += 1
    return {"tracking_uri": redact_uri(tracking_uri), "experiment": experiment, "imported": imported,
            "skipped": skipped, "replaced": replaced, "runs": ledger}  # fmt: skip
