"""A tiny training job run as a real `prdnet train` process, shared by the resume, DDP and
precision tests: 48 embedded MP crystals split 24/12/12, formation energy, a tiny PRDNet with the
paper's diffraction plug-in, batch size 8 (3 batches per epoch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.splits import random_split, write_splits
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import write_json, write_parquet
from prdnet.training.cost import MEASURED_FIELDS

TASK = "formation_energy"
TINY_PRDNET = {"name": "prdnet", "preset": "small", "diffraction": "paper",
               "hyperparameters": {"backbone": {"channels": 16, "layers": 1, "heads": 2, "head_dim": 8}}}  # fmt: skip
RECIPE = {"epochs": 4, "batch_size": 8, "seed": 3, "device": "cpu"}
LABELS = {"dataset": "tiny", "fold": "fold0", "model": "prdnet", "diffraction": "paper", "ablation": "default"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def build_dataset(folder: Path, mp_embedded_path: Path, spec: dict | None = None) -> dict:
    """Shards (by the graph recipe of ``spec``, default the tiny PRDNet's), splits and summary.json
    of 48 embedded crystals in ``folder``."""
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=48), [TASK], ValidationRules())
    crystals = entries_to_columns(entries, [TASK])
    write_parquet(folder / "structures.parquet", crystals_table(crystals))
    manifest = featurize_dataset(folder / "structures.parquet", folder / "graphs", graph_recipe_for(spec or TINY_PRDNET),
                                 n_shards=2)  # fmt: skip
    write_splits({TASK: {"fold0": random_split(crystals.ids, (0.5, 0.25, 0.25), seed=0)}}, folder / "splits")
    write_json(folder / "summary.json", {"tasks": {TASK: {"kind": "regression", "unit": "eV/atom"}}})
    return {"folder": folder, "shards": [folder / "graphs" / name for name in manifest["shards"]]}


def train_arguments(dataset: dict, out: Path, recipe: dict | None = None, spec: dict | None = None) -> list[str]:
    """The arguments of `prdnet train` (after the sub-command) for the tiny job."""
    folder = dataset["folder"]
    return [
        "--shards", *map(str, dataset["shards"]), "--split-dir", str(folder / "splits" / TASK / "fold0"),
        "--dataset-summary", str(folder / "summary.json"), "--task", TASK,
        "--model-spec", json.dumps(spec or TINY_PRDNET), "--training", json.dumps({**RECIPE, **(recipe or {})}),
        "--labels", json.dumps(LABELS), "--structures", str(folder / "structures.parquet"), "--out-dir", str(out),
    ]  # fmt: skip


def train_command(dataset: dict, out: Path, recipe: dict | None = None, spec: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "prdnet.cli", "train", *train_arguments(dataset, out, recipe, spec)]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Start a job with its standard output and error in ``log``."""
    with open(log, "w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=ENV)


def run(command: list[str], log: Path, timeout: float = 240) -> int:
    """Run a job to its end; its exit status."""
    process = start(command, log)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()


def wait_for_line(process: subprocess.Popen, log: Path, text: str, timeout: float = 180) -> None:
    """Wait until ``text`` appears in the job's log (fails if the job ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        if process.poll() is not None:
            raise AssertionError(f"the job ended (status {process.returncode}) before {text!r}:\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()[-3000:]}")


def interrupt_after(command: list[str], log: Path, text: str, how: signal.Signals) -> int:
    """Start a job, send it ``how`` as soon as ``text`` appears in its log, return its status."""
    process = start(command, log)
    try:
        wait_for_line(process, log, text)
        process.send_signal(how)
        return process.wait(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()


def outputs(out: Path) -> tuple[dict, str, pd.DataFrame]:
    """(metrics.json without what measures the run itself: time, memory; history.csv text, predictions) of a finished job."""
    metrics = json.loads((out / "metrics.json").read_text())
    for field in MEASURED_FIELDS:
        metrics.pop(field)
    return metrics, (out / "history.csv").read_text(), pd.read_parquet(out / "predictions.parquet")
