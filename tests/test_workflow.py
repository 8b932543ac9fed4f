"""The Snakemake workflow end to end on a tiny configuration (real data, a few dozen crystals)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def snakemake(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = [
        str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--profile", str(ROOT / "workflow" / "profiles" / "local"),
        "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mp_embedded_path, matminer_data):
    """A work folder with a tiny config: 40 embedded MP crystals and MatBench jdft2d, run once."""
    workdir = tmp_path_factory.mktemp("workflow")
    with gzip.open(mp_embedded_path, "rt") as source, gzip.open(workdir / "mp40.jsonl.gz", "wt") as target:
        for _, line in zip(range(40), source):
            target.write(line)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["results_dir"] = "results"
    config["datasets"]["mp_2018_cgcnn36k"].update(path=str(workdir / "mp40.jsonl.gz"), subset=None)
    config["datasets"]["matbench_jdft2d"]["matminer_data"] = str(matminer_data)
    config["featurizer"]["n_shards"] = 2
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    first = snakemake(workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    return workdir, first


def test_workflow_writes_shards_splits_rejects_and_logs(tiny):
    workdir, _ = tiny
    results = workdir / "results"
    for dataset, count in [("mp_2018_cgcnn36k", 40), ("matbench_jdft2d", 636)]:
        (manifest_path,) = (results / dataset / "graphs").glob("*/manifest.json")
        manifest = json.loads(manifest_path.read_text())
        assert manifest["crystals"] == count and manifest["validation"]["accepted"] == count
        assert all((manifest_path.parent / name).exists() for name in manifest["shards"])
        assert (results / dataset / "rejects.csv").read_text().startswith("id,task,reason")
        for rule in ("prepare", "split"):
            assert (workdir / "logs" / rule / f"{dataset}.log").exists()
    assert len((results / "mp_2018_cgcnn36k/splits/band_gap/fold0/test.txt").read_text().split()) == 4
    for fold in range(5):
        assert (results / f"matbench_jdft2d/splits/exfoliation_en/fold{fold}/val.txt").exists()


def test_second_run_does_nothing(tiny):
    workdir, _ = tiny
    again = snakemake(workdir)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_deleted_shard_reruns_only_featurize(tiny):
    workdir, _ = tiny
    (shard,) = (workdir / "results" / "matbench_jdft2d" / "graphs").glob("*/shard-001.parquet")
    shard.unlink()
    plan = snakemake(workdir, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr
    assert "featurize" in plan.stdout and "prepare" not in plan.stdout and "split" not in plan.stdout
    assert snakemake(workdir).returncode == 0 and shard.exists()


def test_wrong_config_key_stops_the_workflow_with_its_name(tiny, tmp_path):
    workdir, _ = tiny
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["featurizer"]["neighbours"] = 12
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    failed = snakemake(tmp_path, "--dry-run")
    assert failed.returncode != 0
    assert "'neighbours' was unexpected" in failed.stdout + failed.stderr
