"""Training: repeatable on CPU, standardization from the training split only, every output written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from prdnet.data.graphs import GraphParams
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import featurize_dataset
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.splits import random_split, write_splits
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import write_parquet
from prdnet.training import TrainingConfig, TrainingJob, run_training

TASKS = ["formation_energy", "is_metal"]
TINY_PRDNET = {"name": "prdnet", "preset": "small", "hyperparameters": {"backbone": {"channels": 16, "layers": 1, "heads": 2, "head_dim": 8}}}


@pytest.fixture(scope="module")
def dataset(mp_embedded_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=48), TASKS, ValidationRules())
    crystals = entries_to_columns(entries, TASKS)
    write_parquet(folder / "structures.parquet", crystals_table(crystals))
    manifest = featurize_dataset(folder / "structures.parquet", folder / "graphs", GraphParams(), n_shards=2)
    split = random_split(crystals.ids, (0.5, 0.25, 0.25), seed=0)
    write_splits({task: {"fold0": split} for task in TASKS}, folder / "splits")
    return folder, [folder / "graphs" / name for name in manifest["shards"]], crystals, split


def make_job(dataset, out, task="formation_energy", kind="regression", spec=None, epochs=2):
    folder, shards, _, _ = dataset
    return TrainingJob(
        shard_paths=shards, split_dir=folder / "splits" / task / "fold0", task=task, task_kind=kind,
        unit="eV/atom" if kind == "regression" else "", model_spec=spec or {**TINY_PRDNET, "diffraction": "paper"},
        training=TrainingConfig(epochs=epochs, batch_size=8, seed=3), out_dir=out,
        labels={"dataset": "tiny", "fold": "fold0", "model": "prdnet", "diffraction": "paper", "ablation": "default"},
    )  # fmt: skip


def test_job_writes_every_output_and_metrics_last(dataset, tmp_path):
    metrics = run_training(make_job(dataset, tmp_path))
    for name in ("metrics.json", "predictions.parquet", "history.csv", "model.pt", "run.json"):
        assert (tmp_path / name).exists(), name
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["flags"] == metrics["flags"] and written["flag_details"] == metrics["flag_details"]
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
    assert {k: written[k] for k in scalars} == pytest.approx(scalars)
    assert np.isfinite(metrics["test_mae"]) and 1 <= metrics["best_epoch"] <= 2
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "train_mae", "val_mae", "learning_rate"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["params"]["model.diffraction_mode"] == "paper" and run["params"]["featurizer.k"] == 12
    assert run["tags"]["dataset"] == "tiny"


def test_predictions_cover_the_test_split_exactly_once(dataset, tmp_path):
    _, _, _, split = dataset
    run_training(make_job(dataset, tmp_path))
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert sorted(predictions["id"]) == sorted(split["test"])
    assert list(predictions.columns) == ["id", "true", "predicted"]


def test_targets_are_standardized_with_training_statistics_only(dataset, tmp_path):
    _, _, crystals, split = dataset
    run_training(make_job(dataset, tmp_path))
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    train_values = crystals.targets["formation_energy"][[crystals.ids.index(i) for i in split["train"]]]
    assert checkpoint["target_mean"] == pytest.approx(train_values.mean(), rel=1e-5)
    assert checkpoint["target_std"] == pytest.approx(train_values.std(ddof=1), rel=1e-4)
    assert all(isinstance(v, torch.Tensor) for v in checkpoint["state_dict"].values())


def test_same_seed_repeats_exactly_on_cpu(dataset, tmp_path):
    first = run_training(make_job(dataset, tmp_path / "a"))
    second = run_training(make_job(dataset, tmp_path / "b"))
    assert first["test_mae"] == second["test_mae"]
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()


def test_classification_reports_accuracy_and_roc_auc(dataset, tmp_path):
    spec = {**TINY_PRDNET, "diffraction": None}  # a model on the fixture's default-recipe graphs
    metrics = run_training(make_job(dataset, tmp_path, task="is_metal", kind="classification", spec=spec))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "test_roc_auc" in metrics
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert set(predictions["predicted"]) <= {0.0, 1.0} and predictions["probability"].between(0, 1).all()


def test_two_identical_runs_write_identical_model_bytes(dataset, tmp_path):
    run_training(make_job(dataset, tmp_path / "first"))
    run_training(make_job(dataset, tmp_path / "second"))
    assert (tmp_path / "first" / "model.pt").read_bytes() == (tmp_path / "second" / "model.pt").read_bytes()
    assert not list((tmp_path / "first").glob(".*.tmp"))
