"""The canonical cell of a crystal: one lattice matrix and one set of fractional coordinates
for every way of writing the same crystal down.

A crystal is a lattice (rows a, b, c of ``L``, Å) and atoms at fractional coordinates ``r``
(Cartesian ``x = r L``). The same crystal is also ``(U L, r U⁻¹)`` for any integer matrix ``U``
with det U = ±1 (another basis of the lattice; det −1 is a left-handed basis), and ``(L Rᵀ, r)``
for any proper rotation ``R``. :func:`canonical_cell` maps all of these to one description:

1. **Niggli reduction** (pymatgen's Křivý–Gruber implementation): a basis of the lattice whose
   metric ``G = L Lᵀ`` is the lattice's unique Niggli form, made right-handed (pymatgen negates
   a left-handed result; −I is always a lattice symmetry).
2. **Ties**: the Niggli form fixes the metric, not the basis: every proper lattice automorphism
   ``W`` (integer, det +1, ``W G Wᵀ = G`` within the tolerance) gives another right-handed Niggli
   basis ``W L`` (a = b swapped, signs flipped, the symmetry of a cubic, hexagonal, ... lattice),
   and where a dot product is (nearly) zero, Niggli's sign rule can be met with either sign.
   :func:`equivalent_niggli_transforms` lists all of them; :func:`canonical_cell` keeps the one
   whose atoms, written in it, give the smallest :func:`atom_keys` (sorted (Z, fractional
   coordinates rounded to 1e-6)), then the smallest :func:`metric_key`. The candidate set depends
   on the lattice, not on which of these bases pymatgen returned, so the choice does not depend
   on the input cell.
3. **Orientation**: the lattice matrix is rebuilt from the chosen basis's metric alone
   (:func:`standard_orientation`: a along x, b in the xy plane, c with positive z), so the
   Cartesian frame is canonical too, and a rotated copy gives the same matrix.
4. **Coordinates**: wrapped to [0, 1) (:func:`wrap_unit`); atoms keep their input order.

What is not canonicalized: the origin (an origin-shifted copy keeps its shift) and the
mirror image (a reflected crystal is another crystal; only proper automorphisms are used).
Two descriptions of one crystal agree to float rounding (about 1e-12), except where the crystal
is symmetric only to within the 1e-6 rounding of :func:`atom_keys`.
"""

from __future__ import annotations

import itertools

import numpy as np
from pymatgen.core import Lattice

COEFFICIENT_RANGE = 2
"""Automorphism rows are searched among lattice vectors n·L with integers |n_i| ≤ 2 (a row of an
automorphism of a Niggli-reduced basis has |n_i| ≤ 1; 2 is a margin)."""
KEY_DECIMALS = 6
"""Fractional coordinates are compared to 1e-6 when choosing among equivalent Niggli bases."""
WRAP_EPSILON = 1e-10
"""A fractional coordinate within this of 1 wraps to 0 (so 0.99999999999 and 1e-12 agree)."""
METRIC_EPSILON = 1e-9
"""Relative difference below which two metric entries count as equal (float rounding, not a tie)."""
NIGGLI_TOLERANCE = 1e-5
"""pymatgen's relative tolerance of the Niggli reduction (its default)."""

_COEFFICIENTS = np.array(
    list(itertools.product(range(-COEFFICIENT_RANGE, COEFFICIENT_RANGE + 1), repeat=3)), dtype=np.int64
)
_COEFFICIENTS = _COEFFICIENTS[np.any(_COEFFICIENTS != 0, axis=1)]


def niggli_basis(lattice: np.ndarray) -> np.ndarray:
    """A right-handed Niggli-reduced basis (rows, Å) of the lattice spanned by the rows of ``lattice``.

    Recomputed as ``T L`` from the integer matrix ``T`` (det ±1 → +1 after the sign fix) that
    pymatgen's reduced basis corresponds to, so it is an exact basis of the input lattice.
    """
    lattice = np.asarray(lattice, dtype=float)
    reduced = Lattice(lattice).get_niggli_reduced_lattice(tol=NIGGLI_TOLERANCE).matrix
    transform = np.rint(reduced @ np.linalg.inv(lattice))
    if abs(abs(np.linalg.det(transform)) - 1.0) > 1e-6:
        raise ValueError("Niggli reduction did not return a basis of the input lattice")
    basis = transform @ lattice
    return basis if np.linalg.det(basis) > 0 else -basis


def equivalent_niggli_transforms(basis: np.ndarray, length_tolerance: float) -> np.ndarray:
    """Every integer W (det +1) for which ``W · basis`` is as reduced as ``basis``, as [M, 3, 3].

    ``W · basis`` qualifies when its vectors have the lengths of ``basis`` and its dot products
    the magnitudes of those of ``basis`` (so it is Buerger-reduced as well), and it obeys
    Niggli's sign rule: b·c, a·c, a·b all positive (type I), or none positive (type II).
    Values within ``length_tolerance · (|b_i| + |b_j|)`` of each other (Å²) count as equal
    (a length change δ changes |b|² by about 2|b|δ), and dot products within that of 0 as 0.
    This set contains every proper lattice automorphism of a Niggli basis, and also the bases
    that differ from it only in the sign convention where a dot product is (nearly) zero, on
    which the Niggli reduction with a tolerance may land either way. It depends on the lattice,
    not on which of these bases the reduction returned (the identity where none qualifies).
    """
    metric = basis @ basis.T
    lengths = np.sqrt(np.diag(metric))
    slack = length_tolerance * (lengths[:, None] + lengths[None, :])
    vectors = _COEFFICIENTS @ basis
    squared = np.einsum("ij,ij->i", vectors, vectors)
    rows = [_COEFFICIENTS[np.abs(squared - metric[i, i]) <= slack[i, i]] for i in range(3)]
    choice = np.meshgrid(*(np.arange(len(r)) for r in rows), indexing="ij")
    candidates = np.stack([rows[i][choice[i].reshape(-1)] for i in range(3)], axis=1)  # [M, 3, 3]
    images = np.einsum("mij,jk,mlk->mil", candidates, metric, candidates)
    same_form = np.all(np.abs(np.abs(images) - np.abs(metric)) <= slack, axis=(1, 2))
    upper = (np.array([1, 0, 0]), np.array([2, 2, 1]))  # b·c, a·c, a·b
    dots = images[:, upper[0], upper[1]]
    significant = np.abs(dots) > slack[upper]
    type_one = np.all(significant & (dots > 0), axis=1)
    type_two = ~np.any(significant & (dots > 0), axis=1)
    proper = np.rint(np.linalg.det(candidates.astype(float))) == 1
    found = candidates[same_form & (type_one | type_two) & proper]
    return found if len(found) else np.eye(3, dtype=np.int64)[None]


def wrap_unit(frac_coords: np.ndarray) -> np.ndarray:
    """Fractional coordinates brought into [0, 1): r − ⌊r⌋, with values within
    :data:`WRAP_EPSILON` of 1 (or below 0) set to 0."""
    wrapped = frac_coords - np.floor(frac_coords + WRAP_EPSILON)
    return np.where(wrapped < 0.0, 0.0, wrapped)


def atom_keys(atomic_numbers: np.ndarray, frac_coords: np.ndarray) -> np.ndarray:
    """Order-free keys of the atoms of M candidate cells, [M, 2N] int64, from ``frac_coords`` [M, N, 3].

    Each atom is the pair (Z · 10⁶ + q₁, q₂ · 10⁶ + q₃) with q = round(r · 10⁶) mod 10⁶; the
    pairs of a cell are sorted and flattened. Keys compare lexicographically (smaller first).
    """
    scale = 10**KEY_DECIMALS
    quantized = np.mod(np.rint(frac_coords * scale).astype(np.int64), scale)
    numbers = np.broadcast_to(np.asarray(atomic_numbers, dtype=np.int64), quantized.shape[:2])
    first = numbers * scale + quantized[..., 0]
    second = quantized[..., 1] * scale + quantized[..., 2]
    order = np.lexsort((second, first), axis=-1)
    pairs = np.stack([np.take_along_axis(first, order, -1), np.take_along_axis(second, order, -1)], axis=-1)
    return pairs.reshape(len(pairs), -1)


def standard_orientation(basis: np.ndarray) -> np.ndarray:
    """The lattice with the metric of ``basis`` in the standard frame: the lower-triangular L with
    L Lᵀ = basis · basisᵀ and positive diagonal (a = (a, 0, 0), b = (b cos γ, b sin γ, 0),
    c with c_z > 0), i.e. the Cholesky factor of the metric. For a right-handed basis this is
    a proper rotation of it."""
    return np.linalg.cholesky(basis @ basis.T)


def canonical_cell(
    lattice: np.ndarray, frac_coords: np.ndarray, atomic_numbers: np.ndarray, length_tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(canonical lattice [3, 3] Å, canonical fractional coordinates [N, 3] in [0, 1)) of a crystal.

    See the module docstring for the rule. Atoms keep their order; ``length_tolerance`` (Å)
    decides which lattice vectors count as equally long (ties between Niggli bases).
    """
    lattice = np.asarray(lattice, dtype=float)
    cartesian = np.asarray(frac_coords, dtype=float) @ lattice
    basis = niggli_basis(lattice)
    niggli_frac = cartesian @ np.linalg.inv(basis)
    transforms = equivalent_niggli_transforms(basis, length_tolerance)
    inverses = np.rint(np.linalg.inv(transforms.astype(float)))
    fracs = wrap_unit(np.einsum("nj,mjk->mnk", niggli_frac, inverses))  # [M, N, 3]
    keys = atom_keys(atomic_numbers, fracs)
    first = np.lexsort(keys.T[::-1])[0]
    tied = np.flatnonzero(np.all(keys == keys[first], axis=1))
    bases = transforms[tied] @ basis
    chosen = tied[_smallest_metric([metric_key(b) for b in bases])]
    return standard_orientation(transforms[chosen] @ basis), fracs[chosen]


def metric_key(basis: np.ndarray) -> np.ndarray:
    """(a², b², c², b·c, a·c, a·b) of a basis (Å²): the second criterion between bases whose atoms
    give the same :func:`atom_keys` (shorter first, as in Niggli's order)."""
    metric = basis @ basis.T
    return np.array([metric[0, 0], metric[1, 1], metric[2, 2], metric[1, 2], metric[0, 2], metric[0, 1]])


def _smallest_metric(metric_keys: list[np.ndarray]) -> int:
    """Index of the lexicographically smallest metric key, entries closer than
    :data:`METRIC_EPSILON` (relative) counting as equal."""
    best = 0
    for index in range(1, len(metric_keys)):
        mine, theirs = metric_keys[index], metric_keys[best]
        differ = np.flatnonzero(np.abs(mine - theirs) > METRIC_EPSILON * np.abs(theirs).max())
        if differ.size and mine[differ[0]] < theirs[differ[0]]:
            best = index
    return best
