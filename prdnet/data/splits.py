"""Train / validation / test splits, written as plain id lists anyone can audit and reuse.

- ``random``: a seeded random split of one dataset by fractions (e.g. 80/10/10), one fold
  ``fold0``. Ids are sorted before shuffling, so the split depends only on the set of ids
  and the seed, not on file order.
- ``matbench``: the official MatBench test folds; the validation set is carved from each
  training fold with a fixed seed, so the test fold never takes part in model selection.
  ``fold_column`` (a column of the user's table names each row's test fold) and ``id_lists``
  (files of test ids, one per fold) work the same way with the user's folds.
- ``matformer``: the recipe of Matformer and its successors (ALIGNN, PotNet, ComFormer, ...) on
  MEGNet's MP-2018.6.1 and JARVIS-DFT 2021: the rows with a target, in source order, are indexed
  0..N-1, ``random.seed(seed); random.shuffle(indices)``, train = first ``n_train``, val =
  ``[-(n_val + n_test):-n_test]``, test = last ``n_test``, with explicit counts per task or
  ``int(fraction · N)``. Rows our validation rejects keep their index (so the other rows land
  where the published recipe puts them) and are reported, never silently dropped.

Splits are made per task over the crystals that have a finite target for that task.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from prdnet.data.ids import normalise_id
from prdnet.io import write_text

SPLIT_NAMES = ("train", "val", "test")
TEST_FOLD_KINDS = ("matbench", "fold_column", "id_lists")
"""Split kinds whose test folds come from the source (MatBench's official folds, a fold column
of the user's table, the user's id-list files); validation is carved from each training fold."""


def random_split(ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Seeded random split of ``ids`` into train/val/test with the given fractions (summing to 1).

    Sizes: n_val = round(f_val·n), n_test = round(f_test·n), the rest train.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    order = sorted(ids)
    permuted = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    n_val = int(round(fractions[1] * len(ids)))
    n_test = int(round(fractions[2] * len(ids)))
    n_train = len(ids) - n_val - n_test
    return {
        "train": permuted[:n_train],
        "val": permuted[n_train : n_train + n_val],
        "test": permuted[n_train + n_val :],
    }


def carve_validation(train_ids: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Split a training fold into train and validation (seeded; val = round(f·n) ids)."""
    order = sorted(train_ids)
    permuted = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    n_val = int(round(val_fraction * len(order)))
    return {"train": permuted[n_val:], "val": permuted[:n_val]}


def matbench_splits(
    ids: list[str], official_test_folds: dict[str, list[str]], val_fraction: float, seed: int
) -> tuple[dict[str, dict[str, list[str]]], dict[str, list[str]]]:
    """Per fold: train/val carved from the official training fold, test = the official test fold.

    ``ids`` are the usable ids (valid, finite target). Returns the splits and, per fold, the
    official test ids that are not usable (they are reported, not silently dropped).
    """
    usable = set(ids)
    splits, unusable = {}, {}
    for fold, test_ids in official_test_folds.items():
        test = set(test_ids)
        train_pool = [i for i in ids if i not in test]
        splits[fold] = {**carve_validation(train_pool, val_fraction, seed), "test": [i for i in test_ids if i in usable]}
        unusable[fold] = [i for i in test_ids if i not in usable]
    return splits, unusable


def matformer_counts(total: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Split sizes from fractions as the Matformer / ALIGNN code computes them: ``int(f · N)`` each."""
    return tuple(int(f * total) for f in fractions)  # type: ignore[return-value]


def matformer_indices(total: int, counts: tuple[int, int, int], seed: int) -> dict[str, list[int]]:
    """Row indices (0..total-1) of train/val/test by the Matformer recipe.

    ``ids = list(range(N)); random.seed(seed); random.shuffle(ids)``; train = ``ids[:n_train]``,
    val = ``ids[-(n_val + n_test):-n_test]``, test = ``ids[-n_test:]``. A private
    ``random.Random(seed)`` gives the same permutation as the global ``random.seed``.
    """
    n_train, n_val, n_test = counts
    if min(counts) < 0 or n_test == 0 or n_train + n_val + n_test > total:
        raise ValueError(f"matformer split: counts {list(counts)} do not fit {total} rows (need n_test > 0, sum <= N)")
    order = list(range(total))
    random.Random(seed).shuffle(order)
    return {"train": order[:n_train], "val": order[-(n_val + n_test) : -n_test], "test": order[-n_test:]}


def candidate_rows(usable: list[str], rejected: list[tuple[int, str]] | None, total: int | None) -> tuple[list[str], set[int]]:
    """The source's rows with a target, in order: usable ids with the validation rejects put back
    at their recorded row index. Returns the rows and the indices of the rejected ones."""
    if not rejected or total is None or total != len(usable) + len(rejected):
        return list(usable), set()
    rows: list[str | None] = [None] * total
    for index, entry_id in rejected:
        rows[index] = entry_id
    remaining = iter(usable)
    filled = [row if row is not None else next(remaining) for row in rows]
    return filled, {index for index, _ in rejected}


def matformer_split(
    usable: list[str], split_options: dict[str, Any], task: str, candidates: dict[str, Any] | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """The Matformer split of one task. ``usable`` are the ids with a finite target in source order;
    ``candidates`` (from the prepare summary) holds the row count and the rows validation rejected.
    Returns the split and the test ids that cannot be used."""
    candidates = candidates or {}
    rows, rejected = candidate_rows(usable, [tuple(r) for r in candidates.get("rejected", [])], candidates.get("count"))
    counts = (split_options.get("counts") or {}).get(task)
    if counts is None:
        if "fractions" not in split_options:
            raise ValueError(f"matformer split: no counts for task {task!r} and no fractions")
        counts = matformer_counts(len(rows), tuple(split_options["fractions"]))
    indices = matformer_indices(len(rows), tuple(counts), split_options["seed"])
    split = {name: [rows[i] for i in part if i not in rejected] for name, part in indices.items()}
    return split, [rows[i] for i in indices["test"] if i in rejected]


def make_splits(
    ids: list[str], targets: dict[str, np.ndarray], split_options: dict[str, Any], official_folds: dict[str, list[str]],
    candidates: dict[str, Any] | None = None,
) -> tuple[dict[str, dict[str, dict[str, list[str]]]], dict[str, Any]]:  # fmt: skip
    """Splits for every task: ``{task: {fold: {train|val|test: ids}}}`` and a summary of counts.

    ``candidates`` (``summary['split_candidates']`` of the prepare step) is used by the
    ``matformer`` kind only."""
    splits, summary = {}, {}
    for task, values in targets.items():
        usable = [i for i, v in zip(ids, values) if np.isfinite(v)]
        if split_options["kind"] == "matformer":
            split, unusable_test = matformer_split(usable, split_options, task, (candidates or {}).get(task))
            splits[task] = {"fold0": split}
            unusable = {"fold0": unusable_test}
        elif split_options["kind"] == "random":
            fractions = tuple(split_options["fractions"])
            splits[task] = {"fold0": random_split(usable, fractions, split_options["seed"])}
            unusable = {}
        elif split_options["kind"] in TEST_FOLD_KINDS:
            if not official_folds:
                raise ValueError(f"split kind {split_options['kind']!r} needs test folds from the source; it gave none")
            splits[task], unusable = matbench_splits(usable, official_folds, split_options["val_fraction"], split_options["seed"])
        else:
            raise ValueError(f"unknown split kind {split_options['kind']!r}")
        summary[task] = {
            fold: {**{name: len(part) for name, part in parts.items()}, "unusable_test_ids": unusable.get(fold, [])}
            for fold, parts in splits[task].items()
        }
    return splits, summary


def write_splits(splits: dict[str, dict[str, dict[str, list[str]]]], out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/<task>/<fold>/<train|val|test>.txt`` (one id a line); return the paths."""
    written = []
    for task, folds in splits.items():
        for fold, parts in folds.items():
            for name in SPLIT_NAMES:
                path = Path(out_dir) / task / fold / f"{name}.txt"
                write_text(path, "".join(f"{i}\n" for i in parts[name]))
                written.append(path)
    return written


def read_split(path: str | Path) -> list[str]:
    """The ids of one split file, normalised as ``prepare`` stores them (:func:`prdnet.data.ids.normalise_id`)."""
    ids = (normalise_id(line) for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [i for i in ids if i]

