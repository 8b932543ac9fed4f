"""The GPU check (benchmarks/gpu_check.sh): one line and exit 0 without a GPU; on the CPU, the same
parts run end to end (a smoke test of the script the first GPU machine will run)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    finished = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                              env=environment, timeout=120)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [
        "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured"
    ]


@pytest.mark.workflow
def test_on_the_cpu_its_parts_measure_every_model_and_resume_a_stopped_job(tmp_path):
    results = tmp_path / "gpu_check.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--batch-size", "2",
               "--steps", "1", "--parts", "steps", "torchrun", "--results", str(results)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    record = json.loads(results.read_text())
    figures = record["figures"]
    models = {(row["model"], row["preset"]) for row in figures["steps"]}
    assert ("prdnet", "reference") in models and ("matformer", "paper") in models and len(models) == 8
    for row in figures["steps"]:
        assert row["fp32"]["seconds_per_step"]["median"] > 0 and row["bf16_finite"], row["model"]
        # the figure the GPU run reports; on 2 crystals and fresh weights it is no accuracy test
        assert math.isfinite(row["bf16_relative_difference"]), row["model"]
    assert figures["torchrun"]["torchrun_exit_status"] == 0 and figures["torchrun"]["stop_exit_status"] == 75
    assert figures["torchrun"]["resume_max_prediction_difference"] == 0.0  # on the CPU resume is exact
    assert record["load_before"] and record["commit"] and record["cpu"]


@pytest.mark.workflow
@pytest.mark.slow
def test_on_the_cpu_the_end_to_end_part_runs_the_default_workflow_on_jdft2d(tmp_path):
    # slow (about 2 minutes: 25 jobs of the default config through Snakemake), and no cheaper: it is
    # the only run of this part before a GPU machine runs it, in the one call that machine gets
    results = tmp_path / "gpu_check.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--parts", "end_to_end",
               "--results", str(results)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    part = json.loads(results.read_text())["figures"]["end_to_end"]
    assert part["jobs"] == 5 * 2 * 2 + 5 and part["devices"] == ["cpu"]  # 5 folds × 2 models × ±paper, 5 Dummies
