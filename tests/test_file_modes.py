"""Output files honour the user's umask: 0644 under umask 022, like any file ``open`` creates."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.splits import random_split, write_splits
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import atomic_path, write_json, write_parquet, write_text
from prdnet.report import write_tables
from prdnet.training import TrainingConfig, TrainingJob, run_training

TINY_CGCNN = {"name": "cgcnn", "preset": "small", "diffraction": None}


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Set the process umask to ``request.param`` (default 022) for the test, then restore it."""
    mask = getattr(request, "param", 0o022)
    previous = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], indirect=True)
def test_every_atomic_writer_gives_0666_filtered_by_the_umask(umask, tmp_path):
    write_text(tmp_path / "a.txt", "x\n")
    write_json(tmp_path / "b.json", {"x": 1})
    write_parquet(tmp_path / "c.parquet", pa.table({"x": [1]}))
    with atomic_path(tmp_path / "d.pt") as temporary:
        torch.save({"x": torch.zeros(1)}, temporary)
    expected = 0o666 & ~umask
    assert {path.name: mode(path) for path in tmp_path.iterdir()} == dict.fromkeys(
        ["a.txt", "b.json", "c.parquet", "d.pt"], expected
    )


def test_replacing_a_file_leaves_no_temporary_behind(umask, tmp_path):
    write_text(tmp_path / "a.txt", "old\n")
    write_text(tmp_path / "a.txt", "new\n")
    assert [path.name for path in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "new\n"


def test_shards_checkpoints_and_tables_are_0644_under_umask_022(umask, mp_embedded_path, tmp_path):
    tasks = ["formation_energy"]
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=24), tasks, ValidationRules())
    crystals = entries_to_columns(entries, tasks)
    write_parquet(tmp_path / "structures.parquet", crystals_table(crystals))
    manifest = featurize_dataset(tmp_path / "structures.parquet", tmp_path / "graphs", graph_recipe_for(TINY_CGCNN), n_shards=2)
    write_splits({"formation_energy": {"fold0": random_split(crystals.ids, (0.5, 0.25, 0.25), seed=0)}}, tmp_path / "splits")
    run_dir = tmp_path / "runs" / "job"
    run_training(TrainingJob(
        shard_paths=[tmp_path / "graphs" / name for name in manifest["shards"]],
        split_dir=tmp_path / "splits" / "formation_energy" / "fold0", task="formation_energy",
        task_kind="regression", unit="eV/atom", model_spec=TINY_CGCNN,
        training=TrainingConfig(epochs=1, batch_size=8, seed=0), out_dir=run_dir,
        labels={"dataset": "tiny", "task": "formation_energy", "fold": "fold0", "model": "cgcnn",
                "diffraction": "none", "ablation": "default"},
    ))  # fmt: skip
    write_tables("tiny", [run_dir], None, tmp_path / "tables" / "tiny")
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name.startswith("shard-") for path in files)
    assert {"model.pt", "predictions.parquet", "tiny.md", "tiny.csv", "tiny_runs.csv"} <= {p.name for p in files}
    assert {str(path.relative_to(tmp_path)): oct(mode(path)) for path in files if mode(path) != 0o644} == {}
