"""Import finished training jobs into MLflow, safe with several importers at once.

Jobs leave ``run.json``, ``metrics.json``, ``history.csv`` and ``predictions.parquet`` on disk,
and this importer turns each job folder into one MLflow run. Each run carries the tag
``prdnet.run_key`` (the job's folder relative to the results root: the same key on every machine)
and, as its very last write, ``prdnet.content_hash`` (SHA-256 of its metrics and history), which
marks it complete. Importing again skips runs whose key and hash are already there, replaces a run
whose job was re-run, and deletes half-imported runs (no hash tag) left by a killed import, so
nothing is duplicated.

On a tracking server a training job may also log its epochs while it trains
(:mod:`prdnet.live_tracking`): its run carries the run key and the tag ``prdnet.live`` and no hash
until the import completes that same run (parameters, final metrics, the epochs it missed,
dataset, artifacts, then the hash), so a job still makes exactly one run. A SQLite store is
written by the import alone.

Concurrent importers (two teammates, or a re-run while another import runs):

- SQLite store: the whole import holds an exclusive lock on ``<db>.lock`` beside the database
  (``fcntl.flock``), so importers run one after the other, including the schema creation of a
  new database.
- Server store (http/https; no lock is possible through the REST API): the importer searches for
  the run key right before it creates a run, and ends with a de-duplication pass that keeps, for
  every key, one complete run chosen by a rule every importer agrees on (content hash of the job
  on disk, then the latest job start, then the smallest run id) and deletes the others. A run
  being imported by someone else (no hash yet) is left alone unless its import started more than
  ``stale_after_s`` ago (a killed import). Duplicates left by older versions go the same way.

Deleted runs are deleted for real (metadata and artifacts), so the store does not grow on
re-runs: in a SQLite store by the importer, under its lock, with the same store call that
``mlflow gc`` makes; on a server only a process with access to its database can do it, so the
importer runs ``mlflow gc`` when ``MLFLOW_BACKEND_STORE_URI`` names that database, and otherwise
reports the ids and the command for the server's administrator.

Artifact locations: a server gives ``mlflow-artifacts:/...`` (proxied by the server). A new
SQLite store also records ``mlflow-artifacts:/<experiment>/<run id>/artifacts``, never an absolute
path of the importing machine; the importer writes the files to
``<results>/mlflow-artifacts/<experiment>/<run id>/artifacts/``, which
``mlflow ui --backend-store-uri sqlite:///results/mlflow.db --artifacts-destination results/mlflow-artifacts``
serves from wherever the results folder was moved or mounted.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

RUN_KEY = "prdnet.run_key"
CONTENT_HASH = "prdnet.content_hash"
IMPORT_STARTED = "prdnet.import_started_ms"
LIVE = "prdnet.live"
"""Tag of a run a training job logs its epochs to while it trains (value: the job's start, ms)."""
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # model training (MLflow 3.17's UI opens on
# the workflow type of the URL or the browser, not on this tag: dashboard_url)
RUNS_VIEW = "prdnet-runs"
"""Key of the experiment's saved view of the runs table (``?viewStateShareKey=``, :func:`dashboard_url`)."""
RUNS_VIEW_NAME = "prdnet: test metric, model, diffraction, seed, cost"
RUNS_VIEW_COLUMNS = (
    "metrics.`test_mae`", "tags.`test_mae_unit`", "metrics.`test_accuracy`",
    "tags.`model`", "tags.`diffraction`", "tags.`seed`",
    "metrics.`n_parameters`", "metrics.`seconds_per_epoch`", "metrics.`device_hours`", "tags.`device_name`",
    "metrics.`peak_rss_mb`", "metrics.`wall_time_s`", "attributes.`Dataset`",
)  # fmt: skip
"""The columns the saved view shows, in this order after the run's name and start (the UI's column
keys; a metric no run has shows no column). The Dataset column shows dataset/task/fold and the
data digest."""
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."  # the experiment tags the UI keeps its saved views in
PROXIED_SCHEME = "mlflow-artifacts:"
DATASET_DIGEST_LENGTH = 36  # MLflow's datasets.digest column
STALE_AFTER_S = 3600.0
MAX_PARAM_LENGTH = 6000
ARTIFACTS = ("metrics.json", "history.csv", "predictions.parquet", "run.json")
PLOTS_FOLDER = "plots"  # parity.png and learning-curve.png (prdnet.plots.job_plots)


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


def uri_secrets(uri: str) -> list[str]:
    """The strings of a URI that must reach no log: its password and its user:password pair,
    as written and percent-decoded (longest first, so a pair is hidden before its parts)."""
    from urllib.parse import unquote, urlsplit

    netloc = urlsplit(uri).netloc
    if "@" not in netloc:
        return []
    userinfo = netloc.rsplit("@", 1)[0]
    user, _, password = userinfo.partition(":")
    found = {userinfo, unquote(userinfo)} | ({password, unquote(password)} if password else set())
    return sorted((text for text in found if text), key=len, reverse=True)


class RedactingStream:
    """A text stream that writes through to ``stream`` with every secret replaced by ``***``
    (for the output of libraries we cannot tell to redact, e.g. MLflow's "View run ... at: <uri>")."""

    def __init__(self, stream: Any, secrets: list[str]) -> None:
        self.stream, self.secrets = stream, secrets

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def write(self, text: str) -> int:
        self.stream.write(self.redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def redact_process_output(uri: str) -> None:
    """From now on, hide the URI's credentials in everything this process writes to standard
    output and error (our messages, libraries' prints and log records, warnings, a traceback)."""
    secrets = uri_secrets(uri)
    if secrets:
        sys.stdout = RedactingStream(sys.stdout, secrets)
        sys.stderr = RedactingStream(sys.stderr, secrets)


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


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.lower().startswith(prefix) else None


@contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` beside a SQLite store (waiting for another importer);
    no lock for other stores."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another MLflow import to release {database}.lock", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def runs_view() -> dict[str, Any]:
    """The state of the runs table the saved view :data:`RUNS_VIEW` restores: the columns of
    :data:`RUNS_VIEW_COLUMNS` in their order, newest run first."""
    return {"selectedColumns": list(RUNS_VIEW_COLUMNS), "columnOrder": ["attributes.`Run Name`", *RUNS_VIEW_COLUMNS],
            "orderByKey": "attributes.start_time", "orderByAsc": False}  # fmt: skip


def runs_view_tag(now_ms: int) -> str:
    """The experiment tag value of the saved view, in the envelope the MLflow UI reads its saved
    views from (name, creation and update times, the view's state as JSON text)."""
    state = json.dumps(runs_view(), sort_keys=True)
    return json.dumps({"name": RUNS_VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms, "state": state})


def _saved_view_state(tag_value: str | None) -> dict[str, Any] | None:
    try:
        return json.loads(json.loads(tag_value)["state"])
    except (TypeError, ValueError, KeyError):
        return None


def dashboard_url(base_url: str, experiment_id: str) -> str:
    """The URL of the experiment's runs table in the saved view. The MLflow UI (3.x) opens an
    experiment on the workflow type of the URL's ``workflowType`` or, without it, of the browser's
    last choice (GenAI in a new browser), whatever the experiment's tags say; the saved view
    (``viewStateShareKey``) shows the test metric, model, diffraction, seed and cost columns."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW}")  # fmt: skip


def _experiment_id(client: Any, name: str, sqlite_store: bool) -> str:
    """The experiment's id, created if new (marked as model development, with the saved view of
    its runs table). A new experiment in a SQLite store gets the proxied location
    ``mlflow-artifacts:/<name>``; on a server, the server's own (its --artifacts-destination). An
    older experiment keeps its location."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = f"{PROXIED_SCHEME}/{quote(name, safe='')}" if sqlite_store else None
        try:
            client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException:  # created meanwhile by a concurrent importer (server store)
            pass
        experiment = client.get_experiment_by_name(name)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    view = SAVED_VIEW_PREFIX + RUNS_VIEW
    if _saved_view_state(experiment.tags.get(view)) != runs_view():
        client.set_experiment_tag(experiment.experiment_id, view, runs_view_tag(int(time.time() * 1000)))
    return experiment.experiment_id


def job_times(run_dir: Path, info: dict[str, Any], metrics: dict[str, Any]) -> tuple[int, int]:
    """The job's start and end (ms since the epoch) from run.json; for jobs written before these
    were recorded, the end is metrics.json's modification time and the start wall_time_s earlier."""
    if "start_time_ms" in info and "end_time_ms" in info:
        return int(info["start_time_ms"]), int(info["end_time_ms"])
    end = int((run_dir / "metrics.json").stat().st_mtime * 1000)
    return end - int(float(metrics.get("wall_time_s", 0.0)) * 1000), end


def dataset_input(info: dict[str, Any], metrics: dict[str, Any]) -> Any:
    """The job's data as an MLflow dataset input: name ``dataset/task/fold``, digest the job's data
    digest (its crystals' structures and targets and the ids of its train, validation and test
    parts, :func:`prdnet.training.outputs.data_digest`; the shard set's name for jobs written
    before it was recorded), profile with the split sizes, the shard set and the leakage audit's
    counts of the job's fold (``test_sharing_duplicate``, ``..._polymorph``, ``..._prototype``,
    and the same for ``val``: crystals sharing a structure, a formula or a prototype with training)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from prdnet.data.leakage import LEAKAGE_KINDS

    tags = info["tags"]
    inputs = info.get("inputs", {})
    shard_set = inputs.get("shard_set", "unknown")
    digest = inputs.get("data_digest", shard_set)
    profile = {"dataset": tags.get("dataset"), "task": tags.get("task"), "fold": tags.get("fold"),
               "shard_set": shard_set, "data_digest": digest,
               **{k: metrics[k] for k in ("n_train", "n_val", "n_test") if k in metrics},
               **{f"{part}_sharing_{kind}": counts[kind] for part, counts in inputs.get("leakage", {}).items()
                  if isinstance(counts, dict) for kind in LEAKAGE_KINDS}}  # fmt: skip
    source = {"shard_set": shard_set, "split_dir": inputs.get("split_dir")}
    dataset = Dataset(
        name="/".join(str(tags.get(k, "")) for k in ("dataset", "task", "fold")),
        digest=digest[:DATASET_DIGEST_LENGTH], source_type="local", source=json.dumps(source, sort_keys=True),
        profile=json.dumps(profile, sort_keys=True),
    )  # fmt: skip
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def run_params(info: dict[str, Any]) -> dict[str, str]:
    """The run's parameters: run.json's, and the graph shard set the job read (``data.shard_set``)."""
    params = {k: str(v)[:MAX_PARAM_LENGTH] for k, v in info["params"].items()}
    if "shard_set" in info.get("inputs", {}):
        params["data.shard_set"] = info["inputs"]["shard_set"]
    return params


def run_tags(info: dict[str, Any], metrics: dict[str, Any]) -> dict[str, str]:
    """The run's tags: run.json's, the unit of the test metric (``test_mae_unit: eV``) when it has one,
    and the device the job ran on (``device_name``, metrics.json)."""
    tags = {k: str(v) for k, v in info["tags"].items()}
    if metrics.get("unit") and metrics.get("metric"):
        tags[f"test_{metrics['metric']}_unit"] = str(metrics["unit"])
    if metrics.get("device_name"):
        tags["device_name"] = str(metrics["device_name"])
    return tags


def run_name(tags: dict[str, str]) -> str:
    """``dataset/task/fold/model/diffraction/ablation`` (``/seed`` appended when the job has one)."""
    keys = ("dataset", "task", "fold", "model", "diffraction", "ablation") + (("seed",) if "seed" in tags else ())
    return "/".join(tags.get(k, "") for k in keys)


def proxied_artifact_dir(artifact_uri: str, artifacts_root: Path) -> Path:
    """Where ``mlflow ui --artifacts-destination <artifacts_root>`` serves a proxied run location from."""
    from urllib.parse import unquote

    return artifacts_root / unquote(artifact_uri[len(PROXIED_SCHEME) :].lstrip("/"))


def _log_artifacts(client: Any, run: Any, files: list[Path], artifacts_root: Path | None, subfolder: str | None = None) -> None:
    if artifacts_root is not None and run.info.artifact_uri.startswith(PROXIED_SCHEME):
        folder = proxied_artifact_dir(run.info.artifact_uri, artifacts_root)  # SQLite store: written here
        folder = folder / subfolder if subfolder else folder
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, folder / path.name)
        return
    for path in files:
        client.log_artifact(run.info.run_id, str(path), artifact_path=subfolder)


def _log_plots(client: Any, run: Any, run_dir: Path, artifacts_root: Path | None) -> None:
    """The job's parity plot and learning curve (the HTML report's pictures) under ``plots/``."""
    import tempfile

    from prdnet.plots import job_plots

    with tempfile.TemporaryDirectory() as folder:
        files = []
        for kind, _, png in job_plots(run_dir):
            path = Path(folder) / f"{kind}.png"
            path.write_bytes(png)
            files.append(path)
        _log_artifacts(client, run, files, artifacts_root, subfolder=PLOTS_FOLDER)


def _logged_steps(client: Any, run_id: str, names: set[str]) -> set[tuple[str, int]]:
    """The (metric, step) pairs a run already has, of the metrics ``names``."""
    return {(name, metric.step) for name in names for metric in client.get_metric_history(run_id, name)}


def _log_run(client: Any, experiment_id: str, run_dir: Path, key: str, digest: str, artifacts_root: Path | None,
             live_run: Any = None) -> str:  # fmt: skip
    """Log a job folder as a run: a new one, or ``live_run``, the run the job logged its epochs to
    while it trained, completed with what it lacks (epochs it missed, parameters, final metrics,
    dataset, artifacts, end). The content hash tag is the last write."""
    from mlflow.entities import Metric, Param, RunTag

    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tags = run_tags(info, metrics)
    start_ms, end_ms = job_times(run_dir, info, metrics)
    history = _history_metrics(run_dir)
    started = {RUN_KEY: key, IMPORT_STARTED: str(int(time.time() * 1000))}
    if live_run is None:
        run = client.create_run(experiment_id, start_time=start_ms, run_name=run_name(tags), tags={**tags, **started})
        logged: set[tuple[str, int]] = set()
    else:
        run = live_run
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in {**tags, **started}.items()])
        logged = _logged_steps(client, run.info.run_id, {name for name, _, _ in history})
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in sorted(run_params(info).items())]
    series = [Metric(n, v, end_ms, step) for n, v, step in history if (n, step) not in logged]
    finals = [Metric(n, float(v), end_ms, 0) for n, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for chunk in _chunks(params, 100):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(series + finals, 1000):
        client.log_batch(run_id, metrics=chunk)
    _log_dataset(client, run_id, dataset_input(info, metrics))
    _log_artifacts(client, run, [run_dir / name for name in ARTIFACTS], artifacts_root)
    _log_plots(client, run, run_dir, artifacts_root)
    client.set_terminated(run_id, "FINISHED", end_time=end_ms)
    client.log_batch(run_id, tags=[RunTag(CONTENT_HASH, digest)])  # last: marks the run complete
    return run_id


def _log_dataset(client: Any, run_id: str, dataset: Any, attempts: int = 3) -> None:
    """Log the dataset input. A server creates the experiment's dataset row on first use, so two
    importers logging the same dataset at once can collide on its key; the retry finds it there."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=[dataset])
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def _search(client: Any, experiment_id: str, filter_string: str = "", deleted: bool = False) -> list[Any]:
    """Every run of the experiment matching the filter (all pages)."""
    from mlflow.entities import ViewType

    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, run_view_type=view, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _runs_of_key(client: Any, experiment_id: str, key: str) -> list[Any]:
    escaped = key.replace("'", "\\'")
    return _search(client, experiment_id, f"tags.`{RUN_KEY}` = '{escaped}'")


def _group_by_key(runs: Iterable[Any]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for run in runs:
        key = run.data.tags.get(RUN_KEY)
        if key is not None:
            groups.setdefault(key, []).append(run)
    return groups


def is_live(run: Any) -> bool:
    """Whether a run is one a training job logs (or logged) its epochs to, not yet completed by an import."""
    return LIVE in run.data.tags and CONTENT_HASH not in run.data.tags


def _is_stale(run: Any, now_ms: int, stale_after_s: float) -> bool:
    """A half-imported run whose import started more than ``stale_after_s`` ago (a killed import)."""
    started = int(run.data.tags.get(IMPORT_STARTED, run.info.start_time or 0))
    return now_ms - started > stale_after_s * 1000


def keeper(runs: list[Any], disk_hash: str | None) -> Any:
    """The one complete run of a key every importer keeps: content hash equal to the job on disk
    first, then the latest job start, then the smallest run id."""
    return min(runs, key=lambda r: (r.data.tags.get(CONTENT_HASH) != disk_hash, -(r.info.start_time or 0), r.info.run_id))


def _delete(client: Any, run_id: str) -> bool:
    """Soft-delete a run; False when it is already gone (deleted by a concurrent importer)."""
    from mlflow.exceptions import MlflowException

    try:
        client.delete_run(run_id)
    except MlflowException:
        return False
    return True


def _purge_sqlite(client: Any, experiment_id: str, tracking_uri: str, artifacts_root: Path) -> int:
    """Delete every soft-deleted run of the experiment for real: metadata through the store's
    ``_hard_delete_run`` (what ``mlflow gc`` calls) and the run's artifact folder."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store(tracking_uri)
    runs = _search(client, experiment_id, deleted=True)
    for run in runs:
        uri = run.info.artifact_uri
        if uri.startswith(PROXIED_SCHEME):
            folder = proxied_artifact_dir(uri, artifacts_root)  # <experiment>/<run id>/artifacts
            shutil.rmtree(folder.parent if folder.name == "artifacts" else folder, ignore_errors=True)
        elif uri.startswith("file:") or uri.startswith("/"):
            get_artifact_repository(uri).delete_artifacts()
        store._hard_delete_run(run.info.run_id)
    return len(runs)


def _purge_server(client: Any, experiment_id: str, tracking_uri: str) -> dict[str, Any]:
    """On a server store, ``mlflow gc`` the experiment's soft-deleted runs when MLFLOW_BACKEND_STORE_URI
    names the server's database; otherwise report them and the command to run."""
    deleted = [run.info.run_id for run in _search(client, experiment_id, deleted=True)]
    backend = os.environ.get("MLFLOW_BACKEND_STORE_URI", "").strip()
    if not deleted:
        return {"purged": 0}
    if not backend:
        return {"purged": 0, "soft_deleted": deleted, "to_purge": "on a machine with access to the server's database: "
                "MLFLOW_TRACKING_URI=<server> mlflow gc --backend-store-uri <database URI>"}  # fmt: skip
    for _ in range(3):  # a concurrent importer may purge some of them first: retry with what is left
        command = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", backend, "--run-ids", ",".join(deleted)]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri})
        if result.returncode == 0:
            return {"purged": len(deleted)}
        still = {run.info.run_id for run in _search(client, experiment_id, deleted=True)}
        deleted = [run_id for run_id in deleted if run_id in still]
        if not deleted:
            return {"purged": 0}
    raise RuntimeError(f"mlflow gc failed: {result.stderr.strip()[-2000:]}")


def import_runs(
    run_dirs: list[Path], results_dir: Path, tracking_uri: str, experiment: str, stale_after_s: float = STALE_AFTER_S,
) -> dict[str, Any]:  # fmt: skip
    """Import job folders into MLflow; returns ``{run_key: run_id}`` and counts of what was done."""
    with store_lock(tracking_uri):
        return _import_runs(run_dirs, results_dir, tracking_uri, experiment, stale_after_s)


def _import_runs(run_dirs: list[Path], results_dir: Path, tracking_uri: str, experiment: str, stale_after_s: float) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    sqlite_store = sqlite_path(tracking_uri) is not None
    artifacts_root = results_dir.resolve() / "mlflow-artifacts" if sqlite_store else None
    experiment_id = _experiment_id(client, experiment, sqlite_store)
    now_ms = int(time.time() * 1000)
    stale_after_s = 0.0 if sqlite_store else stale_after_s  # under the lock nobody else is importing
    existing: dict[str, list[Any]] = {}
    live: dict[str, list[Any]] = {}
    removed_half = 0
    for key, runs in _group_by_key(_search(client, experiment_id)).items():
        for run in runs:
            if CONTENT_HASH in run.data.tags:
                existing.setdefault(key, []).append(run)
            elif is_live(run):
                live.setdefault(key, []).append(run)  # its job logs to it (or has): completed below
            elif _is_stale(run, now_ms, stale_after_s):
                removed_half += _delete(client, run.info.run_id)  # half-imported by a killed import
    jobs = {run_dir.resolve().relative_to(results_dir.resolve()).as_posix(): run_dir for run_dir in sorted(run_dirs)}
    disk_hashes = {key: content_hash(run_dir) for key, run_dir in jobs.items()}
    imported, skipped, replaced, ledger = 0, 0, 0, {}
    for key, run_dir in jobs.items():
        digest = disk_hashes[key]
        runs, live_runs = existing.get(key, []), live.get(key, [])
        if not sqlite_store and (live_runs or not any(r.data.tags[CONTENT_HASH] == digest for r in runs)):
            found = _runs_of_key(client, experiment_id, key)  # search before create
            runs = [r for r in found if CONTENT_HASH in r.data.tags]
            live_runs = [r for r in found if CONTENT_HASH not in r.data.tags and is_live(r)]
        current = [r for r in runs if r.data.tags[CONTENT_HASH] == digest]
        if current and not live_runs:
            ledger[key] = keeper(current, digest).info.run_id
            skipped += 1
            continue
        # the run the job logged to while it trained is the job's run: complete it, drop the others
        live_run = max(live_runs, key=lambda r: (r.info.start_time or 0, r.info.run_id), default=None)
        outdated = [_delete(client, r.info.run_id) for r in runs + live_runs if r is not live_run]
        replaced += any(outdated)
        ledger[key] = _log_run(client, experiment_id, run_dir, key, digest, artifacts_root, live_run)
        imported += 1
    # final de-duplication: one complete run per key, chosen by the rule every importer applies
    duplicates = 0
    for key, runs in _group_by_key(_search(client, experiment_id)).items():
        complete = [r for r in runs if CONTENT_HASH in r.data.tags]
        if len(complete) < 2:
            continue
        kept = keeper(complete, disk_hashes.get(key))
        duplicates += sum(_delete(client, r.info.run_id) for r in complete if r is not kept)
        if key in ledger:
            ledger[key] = kept.info.run_id
    if sqlite_store:
        purge = {"purged": _purge_sqlite(client, experiment_id, tracking_uri, artifacts_root)}
    else:
        purge = _purge_server(client, experiment_id, tracking_uri)
    return {"tracking_uri": redact_uri(tracking_uri), "experiment": experiment, "imported": imported,
            "skipped": skipped, "replaced": replaced, "duplicates_removed": duplicates,
            "half_imported_removed": removed_half, **purge, "runs": ledger}  # fmt: skip
