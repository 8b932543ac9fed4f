"""The README's "without make" command runs as written: `.venv/bin/snakemake ...` with the venv
not on PATH (the rules find `prdnet` beside the Python running Snakemake)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_workflow import MP, PROFILES, ROOT, write_tiny_config

pytestmark = pytest.mark.workflow


def test_snakemake_from_the_venv_runs_jobs_without_the_venv_on_path(tmp_path, mp_embedded_path, matminer_data):
    write_tiny_config(tmp_path, mp_embedded_path, matminer_data, datasets=(MP,), tasks=["band_gap"])
    bin_dir = Path(sys.executable).parent
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != bin_dir)
    result = subprocess.run(
        [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--profile", str(PROFILES / "local"), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1",
         f"results/{MP}/summary.json"],
        capture_output=True, text=True, env={**os.environ, "PATH": path}, timeout=900)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (tmp_path / "results" / MP / "summary.json").is_file()
