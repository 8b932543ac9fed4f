"""The Dummy baseline reproduces MatBench's Dummy, and a broken model never lands silently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import prdnet.models.registry as registry
from prdnet.data.sources import load_source
from prdnet.data.splits import matbench_splits
from prdnet.guards import NonFiniteError, SanityThresholds, dummy_prediction, sanity_flags
from prdnet.report import write_matbench_results
from prdnet.training import run_dummy, run_training
from tests.test_train import dataset, make_job  # noqa: F401  (the tiny trained dataset fixture)

# --- The Dummy reproduces the MatBench leaderboard's Dummy -----------------------------------


@pytest.mark.parametrize("benchmark_task, published", [("matbench_jdft2d", 67.285), ("matbench_phonons", 323.982)])
def test_dummy_fitted_on_our_splits_reproduces_the_leaderboard_dummy(benchmark_task, published, matminer_data, tmp_path):
    source = load_source("matbench", {"matbench_task": benchmark_task, "matminer_data": str(matminer_data)})
    entries = list(source.entries)
    (task_name,) = source.tasks
    targets = {e.id: e.targets[task_name] for e in entries}
    splits, _ = matbench_splits([e.id for e in entries], source.folds, val_fraction=0.1, seed=42)
    fold_files = {}
    for fold, parts in splits.items():
        value = dummy_prediction(np.array([targets[i] for i in parts["train"] + parts["val"]]), "regression")
        path = tmp_path / f"{fold}.parquet"
        pd.DataFrame({"id": parts["test"], "true": [targets[i] for i in parts["test"]],
                      "predicted": value}).to_parquet(path)  # fmt: skip
        fold_files[fold] = path
    scores = write_matbench_results(benchmark_task, str(matminer_data), fold_files, tmp_path / "r.json.gz", {})
    assert scores["mae"]["mean"] == pytest.approx(published, abs=0.01)


def test_dummy_is_the_mean_or_the_majority_class():
    assert dummy_prediction(np.array([1.0, 2.0, 6.0]), "regression") == 3.0
    assert dummy_prediction(np.array([0, 1, 1, 0, 1]), "classification") == 1.0


def test_dummy_job_writes_a_job_like_any_model(dataset, tmp_path):  # noqa: F811
    job = make_job(dataset, tmp_path, spec={"name": "dummy"})
    metrics = run_dummy(job)
    for name in ("metrics.json", "predictions.parquet", "history.csv", "model.pt", "run.json"):
        assert (tmp_path / name).exists(), name
    _, _, crystals, split = dataset
    fit = [crystals.targets["formation_energy"][crystals.ids.index(i)] for i in split["train"] + split["val"]]
    assert metrics["dummy_prediction"] == pytest.approx(float(np.mean(fit)), rel=1e-6)
    assert metrics["flags"] == [] and metrics["n_parameters"] == 0


# --- Guards on hand-made histories ----------------------------------------------------------


def test_a_sound_job_raises_no_flag():
    true = np.linspace(0, 1, 50)
    flags = sanity_flags("regression", true, true + 0.01, None, 0.01, 0.25, [1.0, 0.5, 0.3], [0.4, 0.2, 0.1])
    assert flags == {}


def test_each_guard_fires_on_its_own_symptom():
    true = np.linspace(0, 1, 50)
    constant = sanity_flags("regression", true, np.full(50, 0.5), None, 0.25, 0.25, [1.0, 0.9], [0.3, 0.3])
    assert set(constant) == {"constant_predictions", "worse_than_dummy"}
    exploded = sanity_flags("regression", true, true, None, 0.0, 0.25, [1.0, 0.2, 0.1], [0.3, 0.2, 5.0])
    assert set(exploded) == {"validation_exploded"}
    classifier = sanity_flags("classification", np.array([0, 1, 1]), np.array([1, 1, 1]), np.array([0.9, 0.9, 0.9]),
                              2 / 3, 2 / 3, [1.0], [0.6])  # fmt: skip
    assert set(classifier) == {"constant_predictions", "worse_than_dummy"}


# --- A deliberately broken model trained end to end ------------------------------------------


class ConstantBackbone(nn.Module):
    """Ignores the crystal: every atom gets the same learned vector (a model blind to its input)."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.out_channels = channels
        self.vector = nn.Parameter(torch.zeros(channels))

    def forward(self, batch) -> torch.Tensor:
        return self.vector.expand(batch.num_nodes, -1) + 0.0 * batch.frac_coords.sum()


class EvalAmplifiedBackbone(nn.Module):
    """Learns in training mode; once it has trained on 3 batches (one epoch of the tiny set), its
    eval-mode features are scaled by 1000: a train/eval mismatch that appears during training."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.out_channels = channels
        self.linear = nn.Linear(3, channels)
        self.training_batches = 0

    def forward(self, batch) -> torch.Tensor:
        h = self.linear(batch.frac_coords.float())
        if self.training:
            self.training_batches += 1
            return h
        return 1000.0 * h if self.training_batches > 3 else h


class NaNBackbone(ConstantBackbone):
    """Outputs NaN."""

    def forward(self, batch) -> torch.Tensor:
        return super().forward(batch) * float("nan")


@pytest.fixture
def broken_models(monkeypatch):
    presets = registry.load_presets()
    for name, backbone in {"constant": ConstantBackbone, "eval_amplified": EvalAmplifiedBackbone, "nan": NaNBackbone}.items():
        monkeypatch.setitem(registry.BACKBONES, name, backbone)
        presets["models"][name] = {"small": {"backbone": {}, "head": {"hidden": 8, "layers": 1, "activation": "silu"},
                                             "diffraction_preset": "small"}}  # fmt: skip
    monkeypatch.setattr(registry, "load_presets", lambda path=None: presets)


def test_a_model_blind_to_its_input_is_flagged_and_keeps_its_files(dataset, tmp_path, broken_models):  # noqa: F811
    metrics = run_training(make_job(dataset, tmp_path, spec={"name": "constant"}, epochs=3))
    assert {"constant_predictions", "worse_than_dummy"} <= set(metrics["flags"])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["flags"] == metrics["flags"] and (tmp_path / "predictions.parquet").exists()
    tags = json.loads((tmp_path / "run.json").read_text())["tags"]
    assert "constant_predictions" in tags["sanity_flags"]


def test_a_train_eval_mismatch_is_flagged(dataset, tmp_path, broken_models):  # noqa: F811
    metrics = run_training(make_job(dataset, tmp_path, spec={"name": "eval_amplified"}, epochs=4))
    assert "validation_exploded" in metrics["flags"], metrics["flag_details"]


def test_a_non_finite_loss_fails_the_job_with_a_clear_message(dataset, tmp_path, broken_models):  # noqa: F811
    with pytest.raises(NonFiniteError, match=r"training loss \(epoch 1, batch 1; crystals \[.*\]; the training targets span \[.*\].*\) is nan"):
        run_training(make_job(dataset, tmp_path, spec={"name": "nan"}))
    assert not (Path(tmp_path) / "metrics.json").exists()


def test_thresholds_come_from_configuration():
    true = np.linspace(0, 1, 50)
    predicted = 0.5 + 0.05 * (true - 0.5)  # spread 5% of the targets'
    assert "constant_predictions" not in sanity_flags("regression", true, predicted, None, 0.1, 0.25, [1.0], [0.1])
    strict = SanityThresholds(constant_fraction=0.1)
    assert "constant_predictions" in sanity_flags("regression", true, predicted, None, 0.1, 0.25, [1.0], [0.1], strict)
