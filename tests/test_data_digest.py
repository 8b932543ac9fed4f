"""A job's data digest (the MLflow dataset's digest) identifies its data: the structures, the
task's targets and the ids of its train, validation and test parts. Another task, fold, target or
structure gives another digest; the same data gives the same digest, whatever the order of the
crystals or of the ids."""

from __future__ import annotations

import numpy as np

from prdnet.data.tables import CrystalColumns
from prdnet.training.outputs import data_digest

IDS = [f"c{i}" for i in range(6)]
FOLD0 = {"train": ["c0", "c1", "c2"], "val": ["c3"], "test": ["c4", "c5"]}
FOLD1 = {"train": ["c2", "c3", "c4"], "val": ["c5"], "test": ["c0", "c1"]}


def crystals(order: list[int] | None = None) -> CrystalColumns:
    """Six one- or two-atom crystals with two tasks (the rows in ``order``)."""
    rng = np.random.default_rng(0)
    counts = np.array([1, 2, 1, 2, 1, 2])
    n_atoms = int(counts.sum())
    table = CrystalColumns(ids=list(IDS), atom_counts=counts, atomic_numbers=rng.integers(1, 90, n_atoms),
                           frac_coords=rng.random((n_atoms, 3)), lattices=rng.random((6, 3, 3)) + 3 * np.eye(3),
                           targets={"band_gap": rng.random(6), "formation_energy": rng.random(6)})  # fmt: skip
    return table if order is None else table.take(np.array(order))


def test_the_same_data_gives_the_same_digest_whatever_the_order():
    shuffled = {name: list(reversed(ids)) for name, ids in FOLD0.items()}
    assert data_digest(crystals(), "band_gap", FOLD0) == data_digest(crystals([5, 3, 1, 0, 2, 4]), "band_gap", shuffled)


def test_another_task_gives_another_digest():
    assert data_digest(crystals(), "band_gap", FOLD0) != data_digest(crystals(), "formation_energy", FOLD0)


def test_another_fold_gives_another_digest():
    assert data_digest(crystals(), "band_gap", FOLD0) != data_digest(crystals(), "band_gap", FOLD1)


def test_moving_one_crystal_between_parts_gives_another_digest():
    moved = {"train": ["c0", "c1"], "val": ["c2", "c3"], "test": ["c4", "c5"]}
    assert data_digest(crystals(), "band_gap", FOLD0) != data_digest(crystals(), "band_gap", moved)


def test_another_target_or_structure_gives_another_digest():
    reference = data_digest(crystals(), "band_gap", FOLD0)
    target = crystals()
    target.targets["band_gap"][4] += 1e-9
    moved_atom = crystals()
    moved_atom.frac_coords[0, 0] += 1e-9
    strained = crystals()
    strained.lattices[5, 2, 2] += 1e-9
    assert len({reference, *(data_digest(c, "band_gap", FOLD0) for c in (target, moved_atom, strained))}) == 4
