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

Out-of-distribution kinds (validation carved from each training part, as for ``matbench``):

- ``leave_cluster_out``: whole clusters of crystals held out, the cluster being the crystal's
  ``chemical_system``, a held-out ``element`` (test: every crystal containing it; train: none
  does), ``crystal_system``, ``spacegroup`` or structure ``prototype`` (columns of
  :mod:`prdnet.data.crystal_groups`). Either ``holdout`` lists the clusters, one fold each, or
  ``folds`` × ``test_fraction`` draws disjoint sets of whole clusters (seeded), each about
  ``test_fraction`` of the crystals: leave-one-cluster-out CV (Meredig et al., Mol. Syst. Des. Eng.
  3, 819 (2018)) and MatFold's cluster holdouts (Witman & Schindler, Digital Discovery (2025)).
- ``target_range``: extrapolation; the ``test_fraction`` of crystals with the highest (``tail:
  upper``) or lowest (``lower``) target is the test set, ties at the threshold kept together.

``leakage: group`` makes ``random`` and the out-of-distribution splits over the duplicate
clusters of :mod:`prdnet.data.crystal_groups`, so a crystal and its duplicates land in one part.

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
OOD_KINDS = ("leave_cluster_out", "target_range")
"""Out-of-distribution split kinds: the workflow makes their folds from the group table or the target."""
GROUPABLE_KINDS = ("random", *OOD_KINDS)
"""Split kinds whose parts ``leakage: group`` can make over duplicate clusters."""
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


def grouped_random_split(ids: list[str], cluster_of: dict[str, str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:  # fmt: skip
    """Seeded random split by whole clusters: the clusters (sorted, then permuted by ``seed``) fill
    the test part, then validation, until each holds at least round(f·n) ids; the rest train."""
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    members: dict[str, list[str]] = {}
    for i in sorted(ids):
        members.setdefault(cluster_of[i], []).append(i)
    clusters = sorted(members)
    permuted = [clusters[i] for i in np.random.default_rng(seed).permutation(len(clusters))]
    wanted = {"test": int(round(fractions[2] * len(ids))), "val": int(round(fractions[1] * len(ids)))}
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for cluster in permuted:
        part = next((p for p in ("test", "val") if len(parts[p]) < wanted[p]), "train")
        parts[part] += members[cluster]
    return parts


def carve_validation(train_ids: list[str], val_fraction: float, seed: int, cluster_of: dict[str, str] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Split a training fold into train and validation (seeded; val = round(f·n) ids), by whole
    clusters when ``cluster_of`` is given."""
    if cluster_of is not None:
        parts = grouped_random_split(train_ids, cluster_of, (1.0 - val_fraction, val_fraction, 0.0), seed)
        return {"train": parts["train"], "val": parts["val"]}
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


class EmptyFoldError(ValueError):
    """A cluster rule that leaves a fold's test or training part without crystals."""


def _cluster_labels(row: dict[str, Any], by: str) -> list[str]:
    """The clusters a crystal belongs to: its elements for ``element``, else its one label."""
    return list(row["elements"]) if by == "element" else [str(row[by])]


def cluster_holdout_folds(usable: list[str], groups: dict[str, dict[str, Any]], split_options: dict[str, Any]) -> list[tuple[list[str], list[str], list[str]]]:  # fmt: skip
    """Per fold of a ``leave_cluster_out`` split: (held-out clusters, test ids, training-pool ids).

    ``holdout``: fold i holds out ``holdout[i]`` (a crystal with that label, or for ``element``
    containing that element, is in test; the training pool has none). ``folds`` ×
    ``test_fraction``: the sorted cluster labels, permuted by ``seed``, fill fold 0's test part
    until it holds at least round(test_fraction·n) crystals, then fold 1's, ...; folds are disjoint."""
    by = split_options["by"]
    labels = {i: _cluster_labels(groups[i], by) for i in usable}
    if "holdout" in split_options:
        chosen = [[str(label)] for label in split_options["holdout"]]
    else:
        members: dict[str, int] = {}
        for i in usable:
            members[labels[i][0]] = members.get(labels[i][0], 0) + 1
        clusters = sorted(members)
        permuted = [clusters[k] for k in np.random.default_rng(split_options["seed"]).permutation(len(clusters))]
        wanted = int(round(split_options["test_fraction"] * len(usable)))
        chosen, current, size = [], [], 0
        for cluster in permuted:
            if len(chosen) == split_options["folds"]:
                break
            current.append(cluster)
            size += members[cluster]
            if size >= wanted:
                chosen.append(current)
                current, size = [], 0
    folds = []
    for index, held_out in enumerate(chosen):
        held = set(held_out)
        test = [i for i in usable if held.intersection(labels[i])]
        pool = [i for i in usable if not held.intersection(labels[i])]
        if not test or not pool:
            where = f"holdout[{index}] = {held_out[0]!r}" if "holdout" in split_options else f"fold{index}"
            raise EmptyFoldError(f"split.{where}: leave_cluster_out by {by} leaves fold{index}'s "
                                 f"{'test' if not test else 'training'} part empty ({len(usable)} crystals with a target); "
                                 f"choose clusters the dataset has, or fewer folds / a smaller test_fraction")  # fmt: skip
        folds.append((held_out, test, pool))
    if len(folds) < split_options.get("folds", len(folds)):
        raise EmptyFoldError(f"split.folds: leave_cluster_out by {by} runs out of clusters after {len(folds)} of "
                             f"{split_options['folds']} folds of test_fraction {split_options['test_fraction']}; "
                             f"use fewer folds or a smaller test_fraction")  # fmt: skip
    return folds


def target_range_fold(usable: list[str], values: dict[str, float], split_options: dict[str, Any]) -> tuple[str, list[str], list[str]]:  # fmt: skip
    """(description, test ids, training-pool ids) of a ``target_range`` split: the test part is the
    ``test_fraction`` of crystals at the ``tail`` of the target, every crystal tied with the
    threshold value included."""
    upper = split_options.get("tail", "upper") == "upper"
    ordered = sorted(usable, key=lambda i: values[i], reverse=upper)
    n_test = max(1, int(round(split_options["test_fraction"] * len(usable))))
    threshold = values[ordered[n_test - 1]]
    test = [i for i in usable if (values[i] >= threshold if upper else values[i] <= threshold)]
    held = set(test)
    pool = [i for i in usable if i not in held]
    if not pool:
        raise EmptyFoldError(f"split.test_fraction: target_range puts every crystal in the test part (the target is "
                             f"{threshold} for at least {len(test)} of {len(usable)}); use the other tail or another task")  # fmt: skip
    return f"target {'>=' if upper else '<='} {threshold:.6g}", test, pool


def make_splits(
    ids: list[str], targets: dict[str, np.ndarray], split_options: dict[str, Any], official_folds: dict[str, list[str]],
    candidates: dict[str, Any] | None = None, groups: dict[str, dict[str, Any]] | None = None, leakage: str = "report",
) -> tuple[dict[str, dict[str, dict[str, list[str]]]], dict[str, Any]]:  # fmt: skip
    """Splits for every task: ``{task: {fold: {train|val|test: ids}}}`` and a summary of counts
    (and, for out-of-distribution kinds, each fold's held-out ``cluster``).

    ``candidates`` (``summary['split_candidates']`` of the prepare step) is used by the
    ``matformer`` kind only; ``groups`` (id → row of the crystal group table) by the
    out-of-distribution kinds and by ``leakage: group``."""
    kind = split_options["kind"]
    if (kind == "leave_cluster_out" or leakage == "group") and groups is None:
        raise ValueError(f"split kind {kind!r} with leakage {leakage!r} needs the crystal group table")
    cluster_of = {i: row["duplicate_cluster"] for i, row in groups.items()} if leakage == "group" else None
    if cluster_of is not None and kind not in GROUPABLE_KINDS:
        raise ValueError(f"leakage: group needs a split the workflow makes ({', '.join(GROUPABLE_KINDS)}), not {kind!r}")
    splits, summary = {}, {}
    for task, values in targets.items():
        usable = [i for i, v in zip(ids, values) if np.isfinite(v)]
        clusters: dict[str, Any] = {}
        if kind in OOD_KINDS:
            if kind == "leave_cluster_out":
                folds = [(", ".join(held), test, pool) for held, test, pool in cluster_holdout_folds(usable, groups, split_options)]
            else:
                folds = [target_range_fold(usable, dict(zip(ids, values)), split_options)]
            splits[task] = {}
            for index, (described, test, pool) in enumerate(folds):
                splits[task][f"fold{index}"] = {**carve_validation(pool, split_options["val_fraction"], split_options["seed"],
                                                                   cluster_of), "test": test}  # fmt: skip
                clusters[f"fold{index}"] = described
            unusable = {}
        elif kind == "matformer":
            split, unusable_test = matformer_split(usable, split_options, task, (candidates or {}).get(task))
            splits[task] = {"fold0": split}
            unusable = {"fold0": unusable_test}
        elif kind == "random":
            fractions = tuple(split_options["fractions"])
            split = (random_split(usable, fractions, split_options["seed"]) if cluster_of is None
                     else grouped_random_split(usable, cluster_of, fractions, split_options["seed"]))  # fmt: skip
            splits[task] = {"fold0": split}
            unusable = {}
        elif kind in TEST_FOLD_KINDS:
            if not official_folds:
                raise ValueError(f"split kind {split_options['kind']!r} needs test folds from the source; it gave none")
            splits[task], unusable = matbench_splits(usable, official_folds, split_options["val_fraction"], split_options["seed"])
        else:
            raise ValueError(f"unknown split kind {split_options['kind']!r}")
        summary[task] = {
            fold: {**{name: len(part) for name, part in parts.items()}, "unusable_test_ids": unusable.get(fold, []),
                   **({"cluster": clusters[fold]} if fold in clusters else {})}
            for fold, parts in splits[task].items()
        }  # fmt: skip
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

