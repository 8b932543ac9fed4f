"""The canonical cell of a crystal: one lattice matrix and one set of fractional coordinates
for every way of writing the same crystal down.

A crystal is a lattice (rows a, b, c of ``L``, Å) and atoms at fractional coordinates ``r``
(Cartesian ``x = r L``). The same crystal is also ``(U L, r U⁻¹)`` for any integer matrix ``U``
with det U = ±1 (another basis of the lattice; det −1 is a left-handed basis), ``(L Rᵀ, r)``
for any proper rotation ``R``, ``(L, r + t)`` for any origin shift ``t``, and its atoms listed in
any order. :func:`canonical_cell` maps all of these to one lattice, and to one set of atoms up
to the origin shift:

1. **Candidates** (:func:`equivalent_niggli_transforms`): every right-handed basis of the lattice
   that is Niggli-reduced within pymatgen's tolerance. pymatgen's reduction (Křivý–Gruber with a
   tolerance, :func:`niggli_basis`) gives one, ``B``, but on a pseudo-symmetric lattice (two or
   three lengths equal to 1e-7 Å, a dot product on the edge of a Niggli condition) which one
   depends on the input cell: the axes in another order, or a third vector as long as another.
   So the candidates are all the bases ``W B`` (integer W, det +1) whose vectors are as long as
   those of ``B`` (:func:`same_length_transforms`: axis permutations among tied lengths, sign
   changes, other vectors of a tied length) and that pass the reduction's own stopping test
   (:func:`niggli_test`: Niggli's ordering, sign rule and special conditions, within
   ``e = NIGGLI_TOLERANCE · V^(1/3)``). This set depends on the lattice, not on which of its
   members the reduction returned. It holds every proper lattice automorphism of the Niggli
   basis (a = b swapped, signs flipped, the symmetry of a cubic, hexagonal, ... lattice) and the
   sign conventions where a dot product is (nearly) zero.
2. **Choice**, by keys that depend only on the metric and the atoms (invariant under rotation,
   basis change, handedness, atom order and origin shift): (a) the smallest :func:`metric_key`
   (a², b², c², then b·c, a·c, a·b; :func:`smallest_keys`, entries within
   :func:`metric_tolerances` equal), so the lattice is fixed by the metric wherever the metric can
   tell the candidates apart, to about 1e-10; then, among candidates with one metric (lattice
   automorphisms), (b) the smallest :func:`origin_free_atom_keys` (the atoms seen from each atom
   of the rarest element, the smallest view: the same for an origin-shifted copy), then (c) the
   smallest :func:`atom_keys` (the atoms as written: among bases that differ only by where the
   origin sits, the one the input's origin gives; equal keys are the same atoms).
3. **Orientation**: the lattice matrix is rebuilt from the chosen basis's metric alone
   (:func:`standard_orientation`: a along x, b in the xy plane, c with positive z), so the
   Cartesian frame is canonical too, and a rotated copy gives the same matrix.
4. **Coordinates**: wrapped to [0, 1) (:func:`wrap_unit`); atoms keep their input order.

What is not canonicalized: the origin (an origin-shifted copy gets the same lattice and the
same atoms shifted by one common vector) and the mirror image (a reflected crystal is another
crystal; only proper automorphisms are used). Two descriptions of one crystal agree to float
rounding (about 1e-12), except where the crystal is symmetric only to within the 1e-6 rounding
of :func:`atom_keys`, or two candidate metrics differ by about :data:`METRIC_EPSILON`, or a
metric sits within float rounding of an edge of :func:`niggli_test`.
"""

from __future__ import annotations

import itertools

import numpy as np
from pymatgen.core import Lattice

COEFFICIENT_RANGE = 2
"""Basis rows are searched among lattice vectors n·B with integers |n_i| ≤ 2 of a reduced basis B
(a row of an automorphism of a Niggli-reduced basis has |n_i| ≤ 1; 2 is a margin)."""
KEY_DECIMALS = 6
"""Fractional coordinates are compared to 1e-6 when choosing among equivalent Niggli bases."""
WRAP_EPSILON = 1e-10
"""A fractional coordinate within this of 1 wraps to 0 (so 0.99999999999 and 1e-12 agree)."""
METRIC_EPSILON = 1e-10
"""Relative difference below which two metric entries count as equal (:func:`metric_tolerances`):
float rounding moves them by about 1e-15; the 6-decimal data, by 1e-7 and more."""
NIGGLI_TOLERANCE = 1e-5
"""pymatgen's relative tolerance of the Niggli reduction (its default): ``e = NIGGLI_TOLERANCE ·
V^(1/3)`` (Å²) in its comparisons of metric entries, and as a relative length tolerance in the
last step (matching the reduced lengths, and angles to 1°, onto lattice vectors)."""
NIGGLI_SLACK = 4.0
"""Candidate lengths are admitted at least within this many times pymatgen's tolerance (squared
lengths within ``NIGGLI_SLACK · e · (1 + |b_i|²)`` Å²) even where the tie tolerance is smaller, so
every basis the reduction may return for another description of the lattice is a candidate."""

_COEFFICIENTS = np.array(
    list(itertools.product(range(-COEFFICIENT_RANGE, COEFFICIENT_RANGE + 1), repeat=3)), dtype=np.int64
)
_COEFFICIENTS = _COEFFICIENTS[np.any(_COEFFICIENTS != 0, axis=1)]


def niggli_basis(lattice: np.ndarray) -> np.ndarray:
    """A right-handed Niggli-reduced basis (rows, Å) of the lattice spanned by the rows of ``lattice``,
    as pymatgen's reduction returns it for this input (which of the equivalent bases, on a
    pseudo-symmetric lattice, depends on the input; :func:`equivalent_niggli_transforms` lists them).

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


def niggli_epsilon(basis: np.ndarray) -> float:
    """pymatgen's tolerance of the Niggli reduction for this lattice, ``NIGGLI_TOLERANCE · V^(1/3)``
    (Å² where it compares metric entries). Depends on the volume only, so on the lattice."""
    return NIGGLI_TOLERANCE * abs(np.linalg.det(basis)) ** (1 / 3)


def same_length_transforms(basis: np.ndarray, length_tolerance: float) -> np.ndarray:
    """Every integer W (det +1) whose rows are short lattice vectors n·basis (|n_i| ≤
    :data:`COEFFICIENT_RANGE`) as long as the rows of ``basis``, row by row, as [M, 3, 3] int64.

    "As long": squared lengths within ``max(2 · length_tolerance · |b_i|, NIGGLI_SLACK · e ·
    (1 + |b_i|²))`` Å² (a length change δ changes |b|² by about 2|b|δ; e: :func:`niggli_epsilon`).
    For a reduced ``basis`` these are all the right-handed bases with its lengths: the axis
    permutations among tied lengths, every sign change that keeps det +1, and other vectors of a
    tied length (the identity is always one).
    """
    lengths = np.linalg.norm(basis, axis=1)
    slack = np.maximum(2 * length_tolerance * lengths, NIGGLI_SLACK * niggli_epsilon(basis) * (1 + lengths**2))
    vectors = _COEFFICIENTS @ basis
    squared = np.einsum("ij,ij->i", vectors, vectors)
    rows = [_COEFFICIENTS[np.abs(squared - lengths[i] ** 2) <= slack[i]] for i in range(3)]
    choice = np.meshgrid(*(np.arange(len(r)) for r in rows), indexing="ij")
    candidates = np.stack([rows[i][choice[i].reshape(-1)] for i in range(3)], axis=1)  # [M, 3, 3]
    return candidates[np.rint(np.linalg.det(candidates.astype(float))) == 1]


def niggli_sign_rule(metrics: np.ndarray, epsilon: float) -> np.ndarray:
    """Whether each metric [M, 3, 3] obeys Niggli's sign rule, [M] bool: b·c, a·c, a·b all positive
    (type I) or none positive (type II), a value within ``epsilon`` (Å², on 2 b·c etc.) of 0 counting
    as 0 (pymatgen's steps A3/A4 leave such a metric as it is)."""
    doubled = 2 * metrics[:, [1, 0, 0], [2, 2, 1]]
    positive = doubled >= epsilon
    return positive.all(axis=1) | ~positive.any(axis=1)


def niggli_test(metrics: np.ndarray, epsilon: float) -> np.ndarray:
    """Whether each metric [M, 3, 3] is Niggli-reduced within ``epsilon`` (Å²), [M] bool: the state
    in which pymatgen's reduction (Grosse-Kunstleve, Sauter & Adams 2004, steps A1–A8) stops.

    With A, B, C = a², b², c² and ξ, η, ζ = 2 b·c, 2 a·c, 2 a·b (a value within ε of another counts
    as equal, within ε of 0 as 0):
    A1 A ≤ B, and A = B ⇒ |ξ| ≤ |η|; A2 B ≤ C, and B = C ⇒ |η| ≤ |ζ|;
    A3/A4 :func:`niggli_sign_rule`;
    A5 |ξ| ≤ B, ξ = B ⇒ ζ ≤ 2η, ξ = −B ⇒ ζ ≥ 0; A6 |η| ≤ A, η = A ⇒ ζ ≤ 2ξ, η = −A ⇒ ζ ≥ 0;
    A7 |ζ| ≤ A, ζ = A ⇒ η ≤ 2ξ, ζ = −A ⇒ η ≥ 0;
    A8 ξ + η + ζ + A + B ≥ 0, and = 0 ⇒ 2(A + η) + ζ ≤ 0.
    """
    e = epsilon
    a, b, c = metrics[:, 0, 0], metrics[:, 1, 1], metrics[:, 2, 2]
    xi, eta, zeta = 2 * metrics[:, 1, 2], 2 * metrics[:, 0, 2], 2 * metrics[:, 0, 1]
    a1 = (b + e < a) | ((np.abs(a - b) < e) & (np.abs(xi) > np.abs(eta) + e))
    a2 = (c + e < b) | ((np.abs(b - c) < e) & (np.abs(eta) > np.abs(zeta) + e))
    a5 = (np.abs(xi) > b + e) | ((np.abs(xi - b) < e) & (zeta - e > 2 * eta)) | ((np.abs(xi + b) < e) & (-e > zeta))
    a6 = (np.abs(eta) > a + e) | ((np.abs(a - eta) < e) & (zeta - e > 2 * xi)) | ((np.abs(a + eta) < e) & (-e > zeta))
    a7 = (np.abs(zeta) > a + e) | ((np.abs(a - zeta) < e) & (eta - e > 2 * xi)) | ((np.abs(a + zeta) < e) & (-e > eta))
    total = xi + eta + zeta + a + b
    a8 = (-e > total) | ((np.abs(total) < e) & (e < zeta + 2 * (a + eta)))
    return ~(a1 | a2 | a5 | a6 | a7 | a8) & niggli_sign_rule(metrics, e)


def equivalent_niggli_transforms(basis: np.ndarray, length_tolerance: float) -> np.ndarray:
    """Every integer W (det +1) for which ``W · basis`` is a Niggli basis of the lattice within
    pymatgen's tolerance, as [M, 3, 3] int64: the :func:`same_length_transforms` of ``basis`` whose
    metric passes :func:`niggli_test` (ε = :func:`niggli_epsilon`).

    For a (nearly) Niggli-reduced ``basis`` this holds every proper lattice automorphism of the
    Niggli basis, the sign conventions where a dot product is within ε of zero, and the other
    bases that pass the test within ε on a pseudo-symmetric lattice (tied lengths in another
    order, a third vector as long as another): the set depends on the lattice, not on which of
    its members the reduction returned. Where none passes (not seen on real crystals), the
    same-length bases that meet :func:`niggli_sign_rule` alone.
    """
    candidates = same_length_transforms(basis, length_tolerance)
    metrics = np.einsum("mij,jk,mlk->mil", candidates, basis @ basis.T, candidates)
    epsilon = niggli_epsilon(basis)
    passing = niggli_test(metrics, epsilon)
    if not passing.any():
        passing = niggli_sign_rule(metrics, epsilon)
    if not passing.any():  # cannot happen (sign changes reach the rule), but never return no basis
        passing = np.all(candidates == np.eye(3, dtype=candidates.dtype), axis=(1, 2))
    return candidates[passing]


def metric_key(basis: np.ndarray) -> np.ndarray:
    """(a², b², c², b·c, a·c, a·b) of a basis [3, 3], or of each of [M, 3, 3] bases (Å²): keys
    compare lexicographically (:func:`smallest_keys`), shorter vectors first as in Niggli's order,
    then the more negative dot products."""
    metric = np.einsum("...ij,...kj->...ik", basis, basis)
    return np.stack([metric[..., 0, 0], metric[..., 1, 1], metric[..., 2, 2],
                     metric[..., 1, 2], metric[..., 0, 2], metric[..., 0, 1]], axis=-1)


def metric_tolerances(basis: np.ndarray) -> np.ndarray:
    """Per entry of :func:`metric_key`, how close two values must be to count as equal (Å²):
    :data:`METRIC_EPSILON` × (a², b², c², |b||c|, |a||c|, |a||b|) of ``basis``. Each entry on its own
    scale, so a short vector's length is not compared at the scale of a long one."""
    lengths = np.linalg.norm(basis, axis=1)
    scale = np.outer(lengths, lengths)
    return METRIC_EPSILON * scale[(0, 1, 2, 1, 0, 0), (0, 1, 2, 2, 2, 1)]


def smallest_keys(keys: np.ndarray, tolerances: float | np.ndarray = 0) -> np.ndarray:
    """Indices of the rows of ``keys`` [M, K] that are smallest with ties: component by component,
    keep the rows within ``tolerances`` (scalar, or one per component) of the smallest remaining
    value. Well defined (the threshold is set by the minimum, not by the order of the rows), so the
    same rows are kept whatever order the candidates come in."""
    tolerances = np.broadcast_to(np.asarray(tolerances, dtype=keys.dtype if keys.dtype.kind == "i" else float),
                                 keys.shape[1:])
    kept = np.arange(len(keys))
    for column in range(keys.shape[1]):
        if len(kept) == 1:
            break
        values = keys[kept, column]
        kept = kept[values <= values.min() + tolerances[column]]
    return kept


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


def origin_atoms(atomic_numbers: np.ndarray) -> np.ndarray:
    """Indices of the atoms of the rarest element (fewest atoms; the smaller Z where counts tie):
    the atoms :func:`origin_free_atom_keys` puts at the origin in turn. Chosen by element and
    count alone, so the same atoms whatever the order, origin or cell."""
    numbers = np.asarray(atomic_numbers)
    elements, counts = np.unique(numbers, return_counts=True)
    return np.flatnonzero(numbers == elements[np.argmin(counts)])


def origin_free_atom_keys(atomic_numbers: np.ndarray, frac_coords: np.ndarray) -> np.ndarray:
    """Keys of the atoms of M candidate cells that do not depend on the origin, [M, 2N] int64, from
    ``frac_coords`` [M, N, 3].

    For each cell and each atom o of :func:`origin_atoms`, the :func:`atom_keys` of the atoms seen
    from o (r − r_o, wrapped); the cell's key is the smallest of these (lexicographically). An
    origin shift moves every r and r_o alike, so it changes no r − r_o and no key.
    """
    frac_coords = np.asarray(frac_coords, dtype=float)
    origins = origin_atoms(atomic_numbers)
    count, atoms = frac_coords.shape[:2]
    seen = wrap_unit(frac_coords[:, None, :, :] - frac_coords[:, origins, None, :])  # [M, K, N, 3]
    keys = atom_keys(atomic_numbers, seen.reshape(-1, atoms, 3)).reshape(count, len(origins), -1)
    return np.stack([keys[cell, smallest_keys(keys[cell])[0]] for cell in range(count)])


def standard_orientation(basis: np.ndarray) -> np.ndarray:
    """The lattice with the metric of ``basis`` in the standard frame: the lower-triangular L with
    L Lᵀ = basis · basisᵀ and positive diagonal (a = (a, 0, 0), b = (b cos γ, b sin γ, 0),
    c with c_z > 0), i.e. the Cholesky factor of the metric. For a right-handed basis this is
    a proper rotation of it."""
    return np.linalg.cholesky(basis @ basis.T)


def _coordinates_in(niggli_frac: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Fractional coordinates [M, N, 3] of the atoms in each basis ``W · basis`` (r W⁻¹, wrapped),
    from their coordinates ``niggli_frac`` [N, 3] in ``basis``."""
    inverses = np.rint(np.linalg.inv(transforms.astype(float)))
    return wrap_unit(np.einsum("nj,mjk->mnk", niggli_frac, inverses))


def canonical_cell(
    lattice: np.ndarray, frac_coords: np.ndarray, atomic_numbers: np.ndarray, length_tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(canonical lattice [3, 3] Å, canonical fractional coordinates [N, 3] in [0, 1)) of a crystal.

    See the module docstring for the rule: among the :func:`equivalent_niggli_transforms` of
    pymatgen's Niggli basis, the smallest :func:`metric_key`, then the smallest
    :func:`origin_free_atom_keys`, then the smallest :func:`atom_keys`. Atoms keep their order;
    ``length_tolerance`` (Å) widens which lattice vectors count as equally long (candidates).
    """
    lattice = np.asarray(lattice, dtype=float)
    numbers = np.asarray(atomic_numbers)
    cartesian = np.asarray(frac_coords, dtype=float) @ lattice
    basis = niggli_basis(lattice)
    niggli_frac = cartesian @ np.linalg.inv(basis)
    transforms = equivalent_niggli_transforms(basis, length_tolerance)
    transforms = transforms[smallest_keys(metric_key(transforms @ basis), metric_tolerances(basis))]
    if len(transforms) > 1:
        transforms = transforms[smallest_keys(origin_free_atom_keys(numbers, _coordinates_in(niggli_frac, transforms)))]
    if len(transforms) > 1:
        transforms = transforms[smallest_keys(atom_keys(numbers, _coordinates_in(niggli_frac, transforms)))]
    chosen = transforms[0]
    return standard_orientation(chosen @ basis), _coordinates_in(niggli_frac, chosen[None])[0]
