"""The README's `prdnet predict` examples run as written: each command line is taken from the
README's fenced block and run by bash in a folder holding what it names (finished tiny jobs at the
README's job paths, the README's structure files), with `.venv/bin/prdnet` the project's, and
each writes the CSV the README describes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from prdnet.data.prepare import prepare_dataset
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset
from prdnet.data.splits import random_split, write_splits
from prdnet.data.validate import ValidationRules
from prdnet.training import TrainingConfig, TrainingJob, run_training
from test_own_data import DATASETS, FIXTURES
from tiny_workflow import ROOT
from training_jobs import TINY_PRDNET

pytestmark = pytest.mark.workflow  # runs real `prdnet predict` processes

VENV = Path(sys.executable).parent.parent


def readme_commands(text: str, program: str) -> list[str]:
    """Every command of ``program`` in the README's ```bash blocks, continuation lines joined and
    comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", "", block)
        lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
        commands += [line for line in lines if program in line and not line.startswith("#")]
    return commands


def finished_jobs(dataset: Path, name: str, options: dict, task: str, folds: list[str]) -> None:
    """Prepare ``options`` into ``dataset`` and train one tiny PRDNet (paper diffraction, 1 epoch)
    per fold at ``runs/<task>/<fold>/prdnet/paper/default/seed0``, the workflow's layout."""
    summary = prepare_dataset(name, options, ValidationRules(), dataset)
    manifest = featurize_dataset(dataset / "structures.parquet", dataset / "graphs", graph_recipe_for(TINY_PRDNET), 1)
    ids = list(pd.read_parquet(dataset / "structures.parquet")["id"])
    write_splits({task: {fold: random_split(ids, (0.6, 0.2, 0.2), seed=i) for i, fold in enumerate(folds)}},
                 dataset / "splits")  # fmt: skip
    for seed, fold in enumerate(folds):
        run_training(TrainingJob(
            shard_paths=[dataset / "graphs" / shard for shard in manifest["shards"]],
            split_dir=dataset / "splits" / task / fold, task=task, task_kind="regression",
            unit=summary["tasks"][task]["unit"], model_spec=TINY_PRDNET,
            training=TrainingConfig(epochs=1, batch_size=16, seed=seed),
            out_dir=dataset / "runs" / task / fold / "prdnet" / "paper" / "default" / "seed0",
        ))  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, matminer_data):
    """A folder as the README's examples expect: `.venv` (the project's), finished jobs of the README's
    own-data example (results/my_perovskites) and of MatBench jdft2d's five folds, `new_cifs/`
    and `candidates.extxyz`."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / ".venv").symlink_to(VENV)
    finished_jobs(folder / "results" / "my_perovskites" / "perovskites", "perovskites", DATASETS["perovskites_cif"],
                  "heat_of_formation", ["fold0"])  # fmt: skip
    jdft2d = {"source": "matbench", "matbench_task": "matbench_jdft2d", "matminer_data": str(matminer_data),
              "tasks": ["exfoliation_en"], "subset": 40, "subset_seed": 0}  # fmt: skip
    finished_jobs(folder / "results" / "matbench_jdft2d", "matbench_jdft2d", jdft2d, "exfoliation_en",
                  [f"fold{i}" for i in range(5)])  # fmt: skip
    shutil.copytree(FIXTURES / "cif_folder", folder / "new_cifs", ignore=shutil.ignore_patterns("*.csv"))
    shutil.copy(FIXTURES / "structures.extxyz", folder / "candidates.extxyz")
    return folder


def run_readme_command(command: str, workdir: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=workdir, env=environment, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


COMMANDS = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"), "prdnet predict")


def test_the_readme_has_both_predict_examples():
    assert len(COMMANDS) == 2, COMMANDS
    assert all(command.startswith(".venv/bin/prdnet predict --job results/") for command in COMMANDS)


def test_the_single_job_example_writes_one_prediction_per_structure(workdir):
    result = run_readme_command(COMMANDS[0], workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    out = workdir / re.search(r"--out (\S+)", COMMANDS[0]).group(1)
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == ["id", "predicted (eV/atom)", "reason"]
    predicted = frame[frame["reason"] == ""]
    assert len(predicted) == 11 and frame["id"].iloc[-1] == "broken-1"  # the rejected structure last, with its reason
    assert frame["reason"].iloc[-1].startswith("malformed structure file")


def test_the_five_fold_example_writes_the_ensemble_mean_and_spread(workdir):
    result = run_readme_command(COMMANDS[1], workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    out = workdir / re.search(r"--out (\S+)", COMMANDS[1]).group(1)
    frame = pd.read_csv(out, keep_default_na=False)
    unit = "meV/atom"
    assert list(frame.columns) == ["id", f"predicted ({unit})", f"predicted_std ({unit})", "n_models", "reason"]
    assert len(frame) == 10 and (frame["n_models"] == 5).all() and (frame["reason"] == "").all()
    assert frame["id"].str.startswith("mp-").all()  # ids from the --id-key material_id of each frame
    assert (frame[f"predicted_std ({unit})"] > 0).all()  # five different models
