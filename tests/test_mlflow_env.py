"""`mlflow.use_env_tracking_uri`: the import reads MLFLOW_TRACKING_URI when it runs, fails fast and
clearly on a server that is down, and never writes credentials (no services needed)."""

from __future__ import annotations

import json
import time

import pytest

from prdnet.cli import main
from prdnet.tracking import (RedactingStream, TrackingServerError, check_server, default_tracking_uri, redact_uri,
                             uri_secrets)
from test_tracking import write_job
from cluster.services import free_port


def test_a_library_line_carrying_the_credentials_is_written_without_them():
    import io

    uri = "http://alice:s3cret%21x@mlflow.example.org:5000"
    assert uri_secrets(uri) == ["alice:s3cret%21x", "alice:s3cret!x", "s3cret%21x", "s3cret!x"]
    sink = io.StringIO()
    stream = RedactingStream(sink, uri_secrets(uri))
    stream.write(f"🏃 View run cgcnn at: {uri}/#/experiments/1/runs/abc\n")
    stream.write("password s3cret!x in a message\n")
    assert "s3cret" not in sink.getvalue() and "alice" not in sink.getvalue()
    assert "View run cgcnn at: http://***@mlflow.example.org:5000/#/experiments/1/runs/abc" in sink.getvalue()
    assert uri_secrets("http://127.0.0.1:5000") == []


def test_credentials_are_redacted():
    assert redact_uri("https://alice:s3cret@mlflow.example.org:8443/x") == "https://***@mlflow.example.org:8443/x"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redact_uri("sqlite:////tmp/results/mlflow.db") == "sqlite:////tmp/results/mlflow.db"


def test_a_server_that_is_down_fails_fast_with_its_address():
    uri = f"http://user:pw@127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingServerError, match=r"http://\*\*\*@127\.0\.0\.1:\d+ is not reachable") as error:
        check_server(uri)
    assert time.monotonic() - start < 15 and "pw" not in str(error.value)
    check_server("sqlite:////nonexistent/mlflow.db")  # not a server: left to MLflow


def import_args(results, folders, out):
    return ["mlflow-import", "--metrics", *[str(f / "metrics.json") for f in folders], "--results-dir", str(results),
            "--experiment", "test", "--tracking-uri-from-env", "--out", str(out)]  # fmt: skip


def test_the_import_reads_the_uri_from_the_environment(tmp_path, monkeypatch):
    results = tmp_path / "results"
    folders = [write_job(results / "tiny" / "runs" / f"fold{i}", f"fold{i}") for i in range(2)]
    other_store = default_tracking_uri(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other_store)
    assert main(import_args(results, folders, tmp_path / "ledger.json")) == 0
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert ledger["imported"] == 2 and ledger["tracking_uri"] == other_store
    assert (tmp_path / "elsewhere" / "mlflow.db").exists() and not (results / "mlflow.db").exists()


def test_the_import_without_the_variable_says_what_to_set(tmp_path, monkeypatch):
    results = tmp_path / "results"
    folders = [write_job(results / "tiny" / "runs" / "fold0", "fold0")]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit, match="MLFLOW_TRACKING_URI is not set"):
        main(import_args(results, folders, tmp_path / "ledger.json"))


def test_the_import_with_the_server_down_says_nothing_is_lost(tmp_path, monkeypatch):
    results = tmp_path / "results"
    folders = [write_job(results / "tiny" / "runs" / "fold0", "fold0")]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SystemExit, match="is not reachable.*imported when the workflow runs again"):
        main(import_args(results, folders, tmp_path / "ledger.json"))
    assert not (tmp_path / "ledger.json").exists()
