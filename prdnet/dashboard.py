"""`make dashboard`: the MLflow UI on the workflow's runs, and the URL that opens on them.

With the SQLite store (the default), starts ``mlflow ui`` on ``<results_dir>/mlflow.db`` with the
artifacts the import wrote under ``<results_dir>/mlflow-artifacts``, waits until it answers, and
prints the URL of the experiment's runs table in its saved view (:func:`prdnet.tracking.dashboard_url`):
the URL matters, since the MLflow UI opens an experiment on its GenAI overview in a new browser
whatever the experiment's tags say. Runs until Ctrl-C. With a tracking server
(``mlflow.use_env_tracking_uri`` or an http(s) ``mlflow.tracking_uri``) nothing is started: it
prints the URL of the runs table on that server.

    python -m prdnet.dashboard --config config/config.yaml [--port 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from prdnet.config import load_config
from prdnet.tracking import (EXPERIMENT_KIND, SAVED_VIEW_PREFIX, RUNS_VIEW, _experiment_id, dashboard_url,
                             default_tracking_uri, is_remote, sqlite_path, store_lock)  # fmt: skip

UI_START_TIMEOUT_S = 180


class DashboardError(RuntimeError):
    """No runs to show yet, or the UI did not start; the message says what to do."""


def store_uri(config: dict, environ: dict[str, str] | None = None) -> str:
    """The MLflow store the workflow imports into: MLFLOW_TRACKING_URI when ``use_env_tracking_uri``,
    else ``tracking_uri``, else SQLite ``<results_dir>/mlflow.db``."""
    environ = os.environ if environ is None else environ
    block = config["mlflow"]
    if block.get("use_env_tracking_uri"):
        uri = environ.get("MLFLOW_TRACKING_URI", "").strip()
        if not uri:
            raise DashboardError("mlflow.use_env_tracking_uri is true but MLFLOW_TRACKING_URI is not set")
        return uri
    return block.get("tracking_uri") or default_tracking_uri(config["results_dir"])


def browser_base(uri: str) -> str:
    """A tracking server's address as a browser opens it: without user name and password."""
    parts = urlsplit(uri)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def experiment_id(uri: str, experiment: str) -> str:
    """The experiment's id in the store, its saved view added if an older import did not write it
    (under the SQLite store's import lock)."""
    from mlflow.tracking import MlflowClient

    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        raise DashboardError(f"no MLflow store at {database} yet: run `make run` first (its mlflow_import writes it)")
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise DashboardError(f"no experiment {experiment!r} in the MLflow store yet: run `make run` first")
    marked = all(found.tags.get(key) == value for key, value in EXPERIMENT_KIND.items())
    if not marked or SAVED_VIEW_PREFIX + RUNS_VIEW not in found.tags:
        with store_lock(uri):
            return _experiment_id(client, experiment, sqlite_store=database is not None)
    return found.experiment_id


def start_ui(uri: str, artifacts: Path, host: str, port: int) -> subprocess.Popen:
    """``mlflow ui`` on the SQLite store, serving the artifacts folder, once it answers /health.
    Raises :class:`DashboardError` with its output's tail if it ends or does not answer in time."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--artifacts-destination", str(artifacts),
               "--host", host, "--port", str(port), "--workers", "1"]  # fmt: skip
    # MLflow 3 also starts GenAI job runners (scorers, trace roll-ups) that a runs table does not need
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + UI_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DashboardError(f"mlflow ui exited with status {process.returncode}:\n{process.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise DashboardError(f"mlflow ui did not answer on http://{host}:{port} within {UI_START_TIMEOUT_S} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prdnet.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml", help="the workflow's configuration")
    parser.add_argument("--host", default="127.0.0.1", help="the address mlflow ui listens on")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    experiment = config["mlflow"]["experiment"]
    try:
        uri = store_uri(config)
        if is_remote(uri):
            print(dashboard_url(browser_base(uri), experiment_id(uri, experiment)), flush=True)
            return 0
        found = experiment_id(uri, experiment)
        artifacts = Path(config["results_dir"]).resolve() / "mlflow-artifacts"
        process = start_ui(uri, artifacts, args.host, args.port)
    except DashboardError as error:
        print(f"prdnet dashboard: {error}", file=sys.stderr)
        return 1
    url = dashboard_url(f"http://{args.host}:{args.port}", found)
    print(f"MLflow UI on {uri} (Ctrl-C stops it). Open the runs table:\n{url}", flush=True)
    try:
        for line in process.stdout:  # the UI's own log, after the URL
            sys.stdout.write(line)
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


if __name__ == "__main__":
    sys.exit(main())
