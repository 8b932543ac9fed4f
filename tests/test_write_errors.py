"""A write that fails (a full disk, a file where a folder should be, an unwritable store) names the
file, the cause and the fix, for our own atomic writes, a training checkpoint and the MLflow import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from prdnet.io import WriteError, write_text

FULL_DISK = """
import resource, signal, sys, torch
from prdnet.checkpoint import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)              # as a full disk: the write fails, no signal
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # no file may grow past 64 KiB
try:
    save_checkpoint(sys.argv[1], {"job": 1}, {"model": {"w": torch.zeros(100_000)}})
except OSError as error:
    print(type(error).__name__, error)
"""


def test_a_checkpoint_on_a_full_disk_names_the_file_and_the_fix(tmp_path):
    target = tmp_path / "run" / "checkpoint.pt"
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True, timeout=300)
    assert result.stdout.startswith(f"WriteError cannot write {target}: no space left for it"), result.stdout + result.stderr
    assert "free space there" in result.stdout and "finished work is kept" in result.stdout
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))  # nothing half-written stays


def test_a_file_where_the_results_folder_should_be_is_named(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(WriteError, match=r"cannot write .*results/run/metrics.json: a part of the path .* is a file"):
        write_text(tmp_path / "results" / "run" / "metrics.json", "{}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_an_unwritable_folder_is_named(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    with pytest.raises(WriteError, match="no permission to write in"):
        write_text(folder / "x.json", "{}")


def test_an_mlflow_import_into_a_missing_results_folder_says_so_not_unable_to_open_database(tmp_path, capsys):
    from prdnet.cli import main

    missing = tmp_path / "gone" / "results"
    with pytest.raises(SystemExit) as stop:
        main(["mlflow-import", "--metrics", str(tmp_path / "job" / "metrics.json"), "--results-dir", str(missing), "--experiment", "x",
              "--out", str(tmp_path / "ledger.json")])  # fmt: skip
    message = str(stop.value.code)
    assert f"cannot write the MLflow database {missing.resolve() / 'mlflow.db'}" in message, message
    assert "unable to open database file" not in message + capsys.readouterr().err
