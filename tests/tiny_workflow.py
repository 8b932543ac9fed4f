"""The tiny end-to-end configuration and the Snakemake call, shared by the workflow tests
(test_workflow.py: local profile; test_slurm.py: SLURM profile; test_mlflow_server.py: MLflow server).

Default: 40 embedded MP crystals and MatBench jdft2d, PRDNet and CGCNN with and without
diffraction, tiny models, one epoch (32 training jobs)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "workflow" / "profiles"
MP = "mp_2018_cgcnn36k"
JDFT2D = "matbench_jdft2d"


def write_tiny_config(
    workdir: Path,
    mp_embedded_path: Path,
    matminer_data: Path,
    *,
    datasets: tuple[str, ...] = (MP, JDFT2D),
    tasks: list[str] | None = None,
    train_resources: dict | None = None,
    mlflow: dict | None = None,
) -> dict:
    """Write ``workdir/config.yaml`` (and the 40-crystal MP file it reads); return the config.

    ``tasks`` limits the experiment to those tasks, ``train_resources`` updates
    ``resources.train`` (e.g. ``{"gpu": 1}``), ``mlflow`` updates the ``mlflow`` block."""
    workdir.mkdir(parents=True, exist_ok=True)
    with gzip.open(mp_embedded_path, "rt") as source, gzip.open(workdir / "mp40.jsonl.gz", "wt") as target:
        for _, line in zip(range(40), source):
            target.write(line)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["results_dir"] = "results"
    config["datasets"] = {name: options for name, options in config["datasets"].items() if name in datasets}
    if MP in config["datasets"]:
        config["datasets"][MP].update(path=str(workdir / "mp40.jsonl.gz"), subset=None)
    if JDFT2D in config["datasets"]:
        config["datasets"][JDFT2D]["matminer_data"] = str(matminer_data)
    config["featurizer"]["n_shards"] = 2
    config["published_scores"] = str(ROOT / "config" / "published_scores.yaml")
    config["atom_features"] = str(Path(matminer_data).parent / "cgcnn" / "atom_init.json")  # the shared data's table
    tiny = {"channels": 8, "layers": 1}
    config["models"] = {
        "prdnet": {"name": "prdnet", "preset": "small", "hyperparameters": {"backbone": {**tiny, "heads": 2, "head_dim": 4}}},
        "cgcnn": {"name": "cgcnn", "preset": "small", "hyperparameters": {"backbone": tiny}},
    }
    for experiment in config["experiments"]:
        experiment["datasets"] = [name for name in experiment["datasets"] if name in datasets]
        if tasks is not None:
            experiment["tasks"] = list(tasks)
    config["training"].update(epochs=1, batch_size=64)
    config["training"].pop("seeds", None)
    config["training"]["seed"] = 0  # one seed: the seed wildcard's plan is tested in test_seeds.py
    config["resources"]["train"].update(train_resources or {})
    config["mlflow"].update(mlflow or {})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def snakemake(
    workdir: Path,
    *extra: str,
    profile: str | Path = "local",
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with ``workdir/config.yaml`` and a profile (a name in
    workflow/profiles, or a folder). ``timeout`` only guards against a hang: under `make test`'s
    parallel workers a run takes several times as long as alone, and CI's machine is slower still."""
    bin_dir = Path(sys.executable).parent
    environment = {**os.environ, **(env or {})}
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment['PATH']}"
    command = [
        str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--profile", str(profile if isinstance(profile, Path) else PROFILES / profile),
        "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
