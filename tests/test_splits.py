"""Splits: sizes, disjointness, determinism, and MatBench's official folds."""

from __future__ import annotations

import numpy as np
import pytest

from prdnet.data.sources import load_source
from prdnet.data.splits import make_splits, matbench_splits, random_split

IDS = [f"mp-{i}" for i in range(1000)]


def test_random_split_is_80_10_10_disjoint_and_complete():
    split = random_split(IDS, (0.8, 0.1, 0.1), seed=42)
    assert [len(split[p]) for p in ("train", "val", "test")] == [800, 100, 100]
    assert set(split["train"]) | set(split["val"]) | set(split["test"]) == set(IDS)
    assert not set(split["train"]) & set(split["test"])


def test_random_split_depends_only_on_ids_and_seed():
    assert random_split(IDS, (0.8, 0.1, 0.1), 42) == random_split(IDS[::-1], (0.8, 0.1, 0.1), 42)
    assert random_split(IDS, (0.8, 0.1, 0.1), 42) != random_split(IDS, (0.8, 0.1, 0.1), 43)


def test_tasks_split_over_crystals_with_a_finite_target():
    targets = {"a": np.arange(1000.0), "b": np.where(np.arange(1000) % 10 == 0, np.nan, 1.0)}
    splits, summary = make_splits(IDS, targets, {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 1}, {})
    assert sum(summary["b"]["fold0"][p] for p in ("train", "val", "test")) == 900
    assert "mp-0" not in set().union(*splits["b"]["fold0"].values())


@pytest.fixture(scope="module")
def jdft2d(matminer_data):
    source = load_source("matbench", {"matbench_task": "matbench_jdft2d", "matminer_data": str(matminer_data)})
    return [e.id for e in source.entries], source.folds


def test_matbench_test_folds_are_the_official_ones_and_never_in_train_or_val(jdft2d):
    ids, folds = jdft2d
    splits, unusable = matbench_splits(ids, folds, val_fraction=0.1, seed=0)
    assert sorted(folds) == [f"fold{i}" for i in range(5)]
    assert sum(len(f) for f in folds.values()) == len(ids) == 636
    for fold, parts in splits.items():
        assert parts["test"] == folds[fold]
        assert not (set(parts["train"]) | set(parts["val"])) & set(parts["test"])
        assert len(parts["train"]) + len(parts["val"]) + len(parts["test"]) == 636
        assert len(parts["val"]) == round(0.1 * (636 - len(folds[fold])))
        assert unusable[fold] == []


def test_matbench_reports_official_test_ids_that_were_rejected(jdft2d):
    ids, folds = jdft2d
    rejected = folds["fold0"][0]
    splits, unusable = matbench_splits([i for i in ids if i != rejected], folds, 0.1, 0)
    assert unusable["fold0"] == [rejected] and rejected not in splits["fold0"]["test"]
