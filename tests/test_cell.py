"""The canonical cell (prdnet/data/cell.py) on pseudo-symmetric lattices: one crystal written in
any basis, orientation, handedness, origin or atom order gives one canonical lattice and one set of
atoms (up to the origin shift), where two or three cell lengths tie to 1e-8 Å and pymatgen's Niggli
reduction returns the axes in an input-dependent order. The scan over real crystals is
benchmarks/scan_canonical_cell.py (its figures: benchmarks/results/canonical_cell_scan.json)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from prdnet.audit import read_embedded_ids
from prdnet.data.cell import (
    canonical_cell,
    equivalent_niggli_transforms,
    niggli_basis,
    niggli_epsilon,
    niggli_test,
    origin_free_atom_keys,
    smallest_keys,
    standard_orientation,
)
from prdnet.data.graphs import GraphParams

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scan_canonical_cell import TRANSFORMS, random_unimodular, same_atoms, scan  # noqa: E402

TIE = GraphParams().tie_tolerance
"""The recipes' tie tolerance (Å), canonical_cell's length_tolerance."""
PSEUDO_SYMMETRIC_ID = "mp-676154"
"""Yb(DyS2)2: a = b = c within 2e-8 Å, angles 109.41/109.41/109.60° (a body-centred cell's primitive one)."""
LATTICE_TOLERANCE = 1e-6
"""Å, largest change of the canonical lattice counted as the same."""
COPIES = 12
"""Random copies per kind of description."""

Crystal = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def yb_dy_s(mp_embedded_path) -> Crystal:
    ((material_id, structure, _),) = read_embedded_ids(mp_embedded_path, [PSEUDO_SYMMETRIC_ID])
    assert material_id == PSEUDO_SYMMETRIC_ID
    return structure.lattice.matrix, structure.frac_coords, np.array(structure.atomic_numbers)


def hand_built() -> Crystal:
    """A pseudo-symmetric cell built by hand: a, b, c = 5, 5 + 1e-8, 5 − 1e-8 Å at 109.41/109.41/109.60°,
    two elements at generic positions (no symmetry the atoms could settle)."""
    lattice = Lattice.from_parameters(5.0, 5.0 + 1e-8, 5.0 - 1e-8, 109.41, 109.41, 109.60).matrix
    frac = np.random.default_rng(1).random((5, 3))
    return lattice, frac, np.array([8, 8, 8, 26, 26])


def lattice_only(lattice: np.ndarray) -> Crystal:
    """A one-atom crystal on ``lattice``, to transform a lattice alone."""
    return lattice, np.zeros((1, 3)), np.array([1])


def combined(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    """Every description change at once: basis, handedness, rotation, origin and order."""
    for name in ("basis change", "left-handed", "rotation", "origin shift", "permutation"):
        crystal = TRANSFORMS[name](crystal, rng)
    return crystal


DESCRIPTIONS = {**TRANSFORMS, "all at once": combined}


def assert_one_canonical_cell(crystal: Crystal, label: str) -> None:
    """Every description in :data:`DESCRIPTIONS` (:data:`COPIES` random ones each) gives the canonical
    lattice of the stored one to 1e-6 Å, and its atoms (fractional coordinates mod 1, as a set; after an
    origin shift, up to one common translation)."""
    lattice, frac, numbers = crystal
    reference = canonical_cell(lattice, frac, numbers, TIE)
    for offset, (name, transform) in enumerate(DESCRIPTIONS.items()):
        for seed in range(COPIES):
            copy_lattice, copy_frac, copy_numbers = transform(crystal, np.random.default_rng([seed, offset]))
            other = canonical_cell(copy_lattice, copy_frac, copy_numbers, TIE)
            deviation = np.abs(other[0] - reference[0]).max()
            assert deviation <= LATTICE_TOLERANCE, f"{label}, {name} {seed}: lattice moved {deviation:.2e} Å"
            shifted = name in ("origin shift", "all at once")
            assert same_atoms(numbers, reference[1], copy_numbers, other[1], 1e-6, common_shift=shifted), (
                f"{label}, {name} {seed}: other atoms")


def test_the_pseudo_symmetric_crystals_have_tied_lengths_that_the_niggli_reduction_orders_by_input(yb_dy_s):
    """What makes the cases hard: lengths tied to 1e-6 Å or closer, and pymatgen's reduced basis of a rotated or
    left-handed copy is another metric (the axes in another order), not only a rotated one."""
    for lattice, _, _ in (yb_dy_s, hand_built()):
        lengths = np.linalg.norm(lattice, axis=1)
        assert np.ptp(lengths) < 1e-6
        metrics = set()
        for seed in range(COPIES):
            for name in ("rotation", "left-handed"):
                copy_lattice = TRANSFORMS[name](lattice_only(lattice), np.random.default_rng(seed))[0]
                basis = niggli_basis(copy_lattice)
                metrics.add(tuple(np.round((basis @ basis.T)[[1, 0, 0], [2, 2, 1]], 3)))
        assert len(metrics) > 1, "the reduction returned one metric for every copy: the test would not bite"


def test_mp_676154_gives_one_canonical_cell_in_every_description(yb_dy_s):
    assert_one_canonical_cell(yb_dy_s, PSEUDO_SYMMETRIC_ID)


def test_a_hand_built_pseudo_symmetric_cell_gives_one_canonical_cell_in_every_description():
    assert_one_canonical_cell(hand_built(), "hand-built")


def test_the_canonical_cell_of_a_pseudo_symmetric_crystal_is_niggli_reduced_in_standard_orientation(yb_dy_s):
    for lattice, frac, numbers in (yb_dy_s, hand_built()):
        canonical, canonical_frac = canonical_cell(lattice, frac, numbers, TIE)
        assert canonical[0, 1] == canonical[0, 2] == canonical[1, 2] == 0.0 and np.all(np.diag(canonical) > 0)
        assert niggli_test((canonical @ canonical.T)[None], niggli_epsilon(canonical))[0]
        np.testing.assert_allclose(abs(np.linalg.det(canonical)), abs(np.linalg.det(lattice)), rtol=1e-12)
        species = list(numbers)
        assert Structure(canonical, species, canonical_frac).matches(Structure(lattice, species, frac), scale=False)


def test_the_candidates_are_the_same_set_of_bases_whatever_basis_the_reduction_returned(yb_dy_s):
    """Axis permutations among the tied lengths are candidates: from two inputs whose reduced bases
    differ, the candidate bases (as metrics in the standard frame) are the same."""
    lattice = yb_dy_s[0]
    metrics = []
    for seed in range(COPIES):
        copy_lattice = TRANSFORMS["left-handed"](lattice_only(lattice), np.random.default_rng(seed))[0]
        basis = niggli_basis(copy_lattice)
        bases = equivalent_niggli_transforms(basis, TIE) @ basis
        metrics.append(sorted(tuple(np.round((b @ b.T)[np.triu_indices(3)], 5)) for b in bases))
    assert len(metrics[0]) > 1
    assert all(m == metrics[0] for m in metrics)


def test_the_niggli_test_keeps_the_rhombohedral_cell_of_fcc_not_another_with_its_lengths():
    """fcc: both the 60/60/60° cell and a 90/120/120° one have the same three lengths; only the
    first is Niggli-reduced (Niggli's special condition η = −A ⇒ ζ = 0 rejects the second)."""
    half = 2.0
    fcc = np.array([[0, half, half], [half, 0, half], [half, half, 0]])
    other = np.array([[half, half, 0], [half, -half, 0], [-half, 0, -half]])
    assert np.allclose(np.linalg.norm(fcc, axis=1), np.linalg.norm(other, axis=1))
    metrics = np.stack([fcc @ fcc.T, other @ other.T])
    assert list(niggli_test(metrics, 1e-5)) == [True, False]
    canonical = canonical_cell(other, np.zeros((1, 3)), np.array([29]), TIE)[0]
    np.testing.assert_allclose(canonical @ canonical.T, fcc @ fcc.T, atol=1e-12)


def test_smallest_keys_does_not_depend_on_the_order_of_the_candidates():
    keys = np.array([[1.0, 5.0], [1.0 + 4e-10, 3.0], [1.0 - 4e-10, 4.0], [2.0, 0.0]])
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        kept = np.array(order)[smallest_keys(keys[order], 5e-10)]
        assert set(kept) == {2}  # within 5e-10 of the smallest first entry: rows 0 and 2 (row 1: 8e-10 away)
    assert set(smallest_keys(keys, 1e-9)) == {1}


def test_origin_free_atom_keys_do_not_change_under_an_origin_shift():
    lattice, frac, numbers = hand_built()
    shifted = np.mod(frac + [0.3, 0.71, 0.05], 1.0)
    keys = origin_free_atom_keys(numbers, np.stack([frac, shifted]))
    np.testing.assert_array_equal(keys[0], keys[1])


def test_the_canonical_lattice_is_the_standard_orientation_of_the_chosen_metric(yb_dy_s):
    lattice = canonical_cell(*yb_dy_s, TIE)[0]
    np.testing.assert_allclose(standard_orientation(lattice), lattice, atol=1e-12)


def test_random_unimodular_matrices_are_bases_changes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        matrix = random_unimodular(rng)
        assert matrix.dtype.kind == "i" and round(np.linalg.det(matrix)) == 1


# slow: the 2,000-crystal scan of benchmarks/scan_canonical_cell.py (12,000 canonical cells: 16 s on
# a quiet 2-core machine, 40 s on a busy one): it holds the pseudo-symmetric crystals the old rule
# got wrong (mp-1019715, mp-1019719, mp-10412, mp-1167 under a rotation or a left-handed basis; 674
# crystals under an origin shift); fewer crystals would no longer hold them all.
@pytest.mark.slow
def test_no_crystal_of_the_first_2000_changes_its_canonical_cell_in_another_description(mp_embedded_path):
    figures, failures = scan(mp_embedded_path, limit=2000, tolerance=LATTICE_TOLERANCE, atom_tolerance=1e-6,
                             seed=0, tie_tolerance=TIE)
    assert figures["crystals"] >= 1990
    assert figures["failing"] == {name: 0 for name in TRANSFORMS}, failures
    assert all(worst["lattice_A"] <= 1e-9 for worst in figures["worst_deviation"].values())
