"""Protocols (config/protocols.yaml): how a published number was made, run as data. A job trains on
the fold's parts its recipe names (the split's, the whole training fold, or a fraction carved anew),
on standardized or raw targets, and records its protocol and what it changed of it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import dataset, make_job  # noqa: F401  (the module's tiny dataset fixture)

from prdnet.protocols import DEFAULT_PROTOCOLS, Protocol, ProtocolError, load_protocols
from prdnet.training import TrainingConfig, resolve_training, run_training
from prdnet.training.loop import fold_parts
from prdnet.training.recipe import protocol_deviations

SPLITS = {"train": ["c", "a", "e", "g"], "val": ["b", "f"], "test": ["d", "h"]}


def test_split_validation_keeps_the_split_as_it_is():
    assert fold_parts(SPLITS, "split") == SPLITS


def test_no_validation_trains_on_the_whole_training_fold_and_keeps_the_test_part():
    parts = fold_parts(SPLITS, "none")
    assert parts == {"train": ["c", "a", "e", "g", "b", "f"], "val": [], "test": ["d", "h"]}


def test_a_validation_fraction_is_carved_anew_from_the_whole_training_fold_the_same_way_each_time():
    splits = {"train": [f"t{i:03d}" for i in range(90)], "val": [f"v{i:03d}" for i in range(10)], "test": ["x"]}
    parts = fold_parts(splits, 0.25)
    assert len(parts["val"]) == 25 and len(parts["train"]) == 75 and parts["test"] == ["x"]
    assert sorted(parts["train"] + parts["val"]) == sorted(splits["train"] + splits["val"])
    assert fold_parts(splits, 0.25) == parts
    assert parts["val"] != sorted(splits["val"])  # not the split's own validation part


@pytest.mark.parametrize("recipe, message", [
    ({"validation": "none"}, "select: last"),
    ({"validation": "none", "select": "last", "patience": 5}, "patience: null"),
    ({"validation": 1.5}, "fraction in (0, 1)"),
    ({"validation": "holdout"}, "training.validation"),
    ({"standardize_targets": "no"}, "standardize_targets"),
])  # fmt: skip
def test_a_recipe_that_cannot_run_its_validation_choice_is_refused(recipe, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainingConfig(**recipe)


def test_a_job_without_validation_trains_on_the_whole_fold_and_tests_its_last_weights(dataset, tmp_path):  # noqa: F811
    _, _, _, split = dataset
    job = make_job(dataset, tmp_path)
    job.training = dataclasses.replace(job.training, validation="none", select="last")
    metrics = run_training(job)
    assert metrics["n_train"] == len(split["train"]) + len(split["val"]) and metrics["n_val"] == 0
    assert metrics["best_epoch"] == 2 and metrics["best_val_mae"] is None
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["val_mae"].isna().all() and np.isfinite(history["train_mae"]).all()


def test_raw_targets_train_unstandardized(dataset, tmp_path):  # noqa: F811
    job = make_job(dataset, tmp_path)
    job.training = dataclasses.replace(job.training, standardize_targets=False)
    run_training(job)
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["target_mean"] == 0.0 and checkpoint["target_std"] == 1.0


PROTOCOLS = {"cgcnn_board": Protocol(name="cgcnn_board", model="cgcnn", preset="paper", source="a file, L1",
                                     training={"batch_size": 128, "validation": 0.25, "patience": 500})}


def test_a_protocol_goes_over_the_preset_recipe_and_under_the_workflow_and_spec_keys():
    spec = {"name": "cgcnn", "preset": "paper", "protocol": "cgcnn_board", "training": {"epochs": 7}}
    config = resolve_training(spec, {"seed": 4, "batch_size": 64}, PROTOCOLS)
    assert (config.validation, config.patience, config.epochs, config.seed) == (0.25, 500, 7, 4)
    assert config.optimizer == "sgd" and config.learning_rate == 0.01  # the preset's (main.py defaults)
    assert config.batch_size == 64
    assert protocol_deviations(spec, config, PROTOCOLS) == {"batch_size": [64, 128], "epochs": [7, 30]}


def test_a_protocol_run_as_published_has_no_deviations():
    spec = {"name": "cgcnn", "preset": "paper", "protocol": "cgcnn_board"}
    assert protocol_deviations(spec, resolve_training(spec, {"seed": 1, "device": "cpu"}, PROTOCOLS), PROTOCOLS) == {}


@pytest.mark.parametrize("spec, message", [
    ({"name": "cgcnn", "preset": "paper", "protocol": "nope"}, "unknown protocol 'nope'"),
    ({"name": "schnet", "preset": "paper", "protocol": "cgcnn_board"}, "is for model 'cgcnn' preset 'paper'"),
    ({"name": "cgcnn", "preset": "small", "protocol": "cgcnn_board"}, "is for model 'cgcnn' preset 'paper'"),
])  # fmt: skip
def test_a_protocol_of_another_model_or_preset_or_an_unknown_one_is_refused(spec, message):
    with pytest.raises(ProtocolError, match=message):
        resolve_training(spec, {}, PROTOCOLS)


def test_every_shipped_protocol_resolves_to_a_valid_recipe_with_its_source():
    protocols = load_protocols(DEFAULT_PROTOCOLS)
    assert protocols
    for protocol in protocols.values():
        assert protocol.source
        if protocol.model == "dummy":
            continue
        config = resolve_training({"name": protocol.model, "preset": protocol.preset, "protocol": protocol.name}, {},
                                  protocols)  # fmt: skip
        assert all(getattr(config, key) == value for key, value in protocol.training.items()), protocol.name


def test_a_job_records_its_protocol_and_what_it_changed(dataset, tmp_path):  # noqa: F811
    spec = {"name": "cgcnn", "preset": "paper", "protocol": "cgcnn_matbench_v2019",
            "hyperparameters": {"graph": "default"}}  # the tiny dataset's graphs
    job = make_job(dataset, tmp_path, spec=spec)
    job.training = resolve_training(spec, {"epochs": 2, "batch_size": 8, "validation": "split", "patience": None})
    run_training(job)
    params = json.loads((tmp_path / "run.json").read_text())["params"]
    assert params["protocol.name"] == "cgcnn_matbench_v2019"
    assert json.loads(params["protocol.deviations"]) == {"epochs": [2, 2000], "batch_size": [8, 128],
                                                         "validation": ["split", 0.25], "patience": [None, 500]}
