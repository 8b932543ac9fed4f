"""Periodic crystal graphs built by a graph recipe (:class:`GraphParams`).

A recipe (config/models.yaml ``graphs:``, one per model preset) names

- the **cell**: ``stored`` (as the source wrote it) or ``canonical``
  (:func:`prdnet.data.cell.canonical_cell`: Niggli-reduced, right-handed, ties resolved by the
  atoms, standard orientation), so that one crystal written in two cells gives one graph;
- the **neighbour rule**:
  ``knn``: for each atom i, its ``k`` nearest atoms j (any periodic image other than i itself
  in the home cell), searched within ``cutoff`` Å and, for an atom with fewer than k, within a
  radius widened (``widen_rule``: × ``widen_factor``, or the released PRDNet code's longest axis,
  then doubling) until it has k (a crystal where some atom has fewer than k within ``max_cutoff``
  is rejected: :class:`IsolatedAtomError`); every neighbour within ``tie_tolerance`` Å of the k-th
  is kept too, so float noise cannot change which atoms are joined (``tie_tolerance: 0``: only
  exact ties, as the released PRDNet code keeps them; which ties are exact then depends on the
  arithmetic: ``selection_distances``);
  ``radius``: every neighbour with d_ij ≤ ``cutoff``; with ``max_neighbours`` set, only the
  ``max_neighbours`` nearest of them plus those within ``tie_tolerance`` of the last kept one.
  An atom with no neighbour within the radius keeps no neighbour edge (zero in-degree, or only
  its lattice self-edges): it is never dropped, and the featurizer counts such atoms and lists
  their crystals in the shard metadata and ``no_neighbour_atoms.csv``;
- **undirected** (optional): also the reverse of every neighbour edge, each edge once
  (``undirected_multiplicity: once``, the ``use_canonize`` graphs of ALIGNN, Matformer and
  ComFormer) or once per directed edge that found it (``per_directed_edge``: mutual neighbours
  joined twice each way, the released PRDNet trainer's ``use_canonize=False``);
- **lattice self-edges**: ``lattice_self_edges`` = 0, 6 (i → i with offsets ±a, ±b, ±c) or 12
  (also ±(a+b), ±(a+c), ±(b+c)), in the basis of the featurized cell, added to every atom unless
  the neighbour rule already made that edge (``self_edges_when_widened: false``: none in a crystal
  where some atom has fewer than k neighbours within ``cutoff``, as the released PRDNet code).

Two recipes for PRDNet's ``reference`` backbone (config/models.yaml): ``prdnet_reference`` is the
graph the released trainer builds (Bin-Cao/PRDNet@a422056 trainer.py L600-610, prdnet/graphs.py
L242-384: stored cell, exact ties, per-directed-edge multiplicity, no self-edges when widened, its
own distance arithmetic), equal edge for edge to the released code's graphs
(tests/test_released_graph.py), so that preset ``reference`` reproduces the released model as it
ran; its self-edges, multiplicities and ties follow the stored cell, so it is not invariant to the
choice of cell. ``prdnet_reference_invariant`` (preset ``reference_invariant``) is the same k-NN
rule made invariant: canonical cell, each undirected edge once, 12 self-edges. Fields added after
featurizer version 2 enter a recipe's identity only when set (:meth:`GraphParams.identity`).

Each edge is (source j, target i, image offset n_ij, distance d_ij), d_ij = |(r_j + n_ij − r_i) L|
(Å), with fractional coordinates r and lattice rows L; edges are sorted by target, distance,
source, offset. The neighbour search is pymatgen's compiled ``find_points_in_spheres``; the
selection is vectorized numpy, with no Python loop over atoms.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from pymatgen.optimization.neighbors import find_points_in_spheres

from prdnet.data.cell import canonical_cell

FEATURIZER_VERSION = "3"
"""Bump when the graph construction changes in a way that changes shards.
2: graph recipes (radius rule, lattice self-edges, canonical cell).
3: the canonical cell of pseudo-symmetric lattices (every Niggli basis of tied lengths a candidate,
an origin-free tie-break: :func:`prdnet.data.cell.canonical_cell`), which moves the cell of some
crystals (389 of the first 2,000 embedded MP crystals, most by ≤ 1e-6 Å). The fields added since
version 2 (``_FIELDS_AFTER_VERSION_2``) change no graph at their defaults and enter a recipe's
identity only when set."""

NEIGHBOUR_RULES = ("knn", "radius")
CELL_CONVENTIONS = ("stored", "canonical")
SELF_EDGE_COUNTS = (0, 6, 12)
UNDIRECTED_MULTIPLICITIES = ("once", "per_directed_edge")
WIDEN_RULES = ("factor", "longest_axis_then_double")
SELECTION_DISTANCES = ("featurized_cell", "released_prdnet")
_RULE_ONLY_KEYS = {
    "knn": ("k", "widen_factor", "max_cutoff", "widen_rule", "self_edges_when_widened", "selection_distances"),
    "radius": ("max_neighbours",),
}
"""Recipe keys that only one neighbour rule reads; naming one under the other rule is an error."""
_FIELDS_AFTER_VERSION_2 = ("undirected_multiplicity", "self_edges_when_widened", "widen_rule", "selection_distances")
"""Fields added after featurizer version 2 without changing any graph at their defaults: they enter
:meth:`GraphParams.identity` only when not at their default, so every recipe that existed before
keeps its identity, digest and shards."""


class GraphRecipeError(ValueError):
    """A graph recipe with a missing, unknown or invalid field (the message names it)."""


@dataclass(frozen=True)
class GraphParams:
    """A graph recipe: neighbour rule, cutoff, lattice self-edges and cell convention.

    Defaults are the ``default`` recipe (k = 12 nearest within 8 Å, no self-edges, canonical cell).
    """

    neighbours: str = "knn"
    """``knn`` (k nearest + ties) or ``radius`` (all within ``cutoff``, optional cap)."""
    k: int = 12
    """knn: neighbours per atom (more where tied)."""
    cutoff: float = 8.0
    """Å. knn: initial search radius; radius: the radius."""
    max_neighbours: int | None = None
    """radius: keep at most this many nearest per atom (+ ties); None = all within the radius."""
    undirected: bool = False
    """Add the reverse i → j (image −n) of every neighbour edge j → i (image n): j and i are joined
    when either is among the other's neighbours (the undirected graphs of ALIGNN, Matformer,
    ComFormer and PRDNet's released code; how many copies: ``undirected_multiplicity``)."""
    undirected_multiplicity: str = "once"
    """undirected: ``once``: every (target, source, image) once, however many neighbour edges gave it
    (what ``use_canonize=True`` of ALIGNN, Matformer and ComFormer aims at; in PRDNet's copy of that
    code, prdnet/graphs.py L288-292, a self-image found at n and at −n still comes out twice each
    way); ``per_directed_edge``: every
    directed neighbour edge and its reverse, one copy each per directed edge that found them, so two
    mutual neighbours are joined twice in each direction; lattice self-edges then enter as the
    positive half of their offsets (+a, +b, +c[, +(a+b), +(a+c), +(b+c)]) among the directed edges,
    unless already there, and get their reverses the same way (the released PRDNet trainer:
    ``use_canonize=False``, Bin-Cao/PRDNet@a422056 trainer.py L607, prdnet/graphs.py L294 one entry
    per directed pair, L297-302 the self-edges, L375 both directions of each)."""
    lattice_self_edges: int = 0
    """0, 6 (±a, ±b, ±c) or 12 (also ±(a+b), ±(a+c), ±(b+c))."""
    cell: str = "canonical"
    """``stored`` or ``canonical`` (:func:`prdnet.data.cell.canonical_cell`)."""
    tie_tolerance: float = 1e-3
    """Å, neighbours this close to the last kept one are kept too; lattice vectors this close in
    length count as tied when choosing the canonical cell."""
    widen_factor: float = 1.5
    """knn, widen_rule ``factor``: radius multiplier for atoms with fewer than k neighbours."""
    max_cutoff: float = 64.0
    """knn: Å, beyond this an atom is declared isolated and the crystal is rejected."""
    widen_rule: str = "factor"
    """knn: the next search radius for atoms with fewer than k neighbours: ``factor``: radius ×
    ``widen_factor``; ``longest_axis_then_double``: the longest lattice vector's length if the radius
    is shorter than it, else 2 × radius (Bin-Cao/PRDNet@a422056 prdnet/graphs.py L258-265). The
    selected neighbours are the same either way (the k nearest and ties, wherever the search stops);
    the rule decides the radii searched and so where ``max_cutoff`` rejects a crystal."""
    self_edges_when_widened: bool = True
    """knn: false = a crystal in which some atom has fewer than k neighbours within ``cutoff`` gets no
    lattice self-edges (the released PRDNet code's widened retry drops ``use_lattice``:
    Bin-Cao/PRDNet@a422056 prdnet/graphs.py L258-271)."""
    selection_distances: str = "featurized_cell"
    """knn: the distances the k nearest (and ties) are chosen by. ``featurized_cell``: |(r_j + n − r_i) L|
    in the featurized cell. ``released_prdnet``: those the released PRDNet trainer compares, to the last
    bit: fractional coordinates read back as ASE's ``get_scaled_positions`` gives them from the Cartesian
    positions r L (solved, wrapped into [0, 1): trainer.py L528-533 reads every crystal from an ASE
    database), Cartesian positions in the lattice rounded to 5 decimals (jarvis-tools ``Lattice``,
    ``round_off=5``, behind ``Atoms.cart_coords``; trainer.py L597), images translated by the unrounded
    lattice, and neighbours nearer than 0.15 Å not counted (jarvis-tools ``Atoms.get_all_neighbors``,
    ``bond_tol=0.15``, which prdnet/graphs.py L254 calls). They differ from the cell's by up to ~1e-5 Å:
    only which of nearly (or, with ``tie_tolerance: 0``, exactly) tied neighbours are kept depends on
    it; the graph's images and distances are the featurized cell's."""

    def __post_init__(self) -> None:
        _check(self.neighbours in NEIGHBOUR_RULES, "neighbours", f"must be one of {list(NEIGHBOUR_RULES)}",
               self.neighbours)
        _check(_is_int(self.k) and self.k >= 1, "k", "must be an integer ≥ 1", self.k)
        _check(_is_positive(self.cutoff), "cutoff", "must be a number > 0 (Å)", self.cutoff)
        if self.neighbours == "knn":
            _check(self.max_neighbours is None, "max_neighbours", "applies to neighbours: radius only (knn uses k)",
                   self.max_neighbours)
        else:
            _check(self.max_neighbours is None or (_is_int(self.max_neighbours) and self.max_neighbours >= 1),
                   "max_neighbours", "must be null or an integer ≥ 1", self.max_neighbours)
        _check(isinstance(self.undirected, bool), "undirected", "must be true or false", self.undirected)
        _check(self.undirected_multiplicity in UNDIRECTED_MULTIPLICITIES, "undirected_multiplicity",
               f"must be one of {list(UNDIRECTED_MULTIPLICITIES)}", self.undirected_multiplicity)
        _check(self.undirected or self.undirected_multiplicity == "once", "undirected_multiplicity",
               "applies to undirected: true only", self.undirected_multiplicity)
        _check(_is_int(self.lattice_self_edges) and self.lattice_self_edges in SELF_EDGE_COUNTS,
               "lattice_self_edges", f"must be one of {list(SELF_EDGE_COUNTS)}", self.lattice_self_edges)
        _check(self.cell in CELL_CONVENTIONS, "cell", f"must be one of {list(CELL_CONVENTIONS)}", self.cell)
        _check(_is_number(self.tie_tolerance) and self.tie_tolerance >= 0, "tie_tolerance", "must be a number ≥ 0 (Å)",
               self.tie_tolerance)
        _check(_is_number(self.widen_factor) and self.widen_factor > 1, "widen_factor", "must be a number > 1",
               self.widen_factor)
        _check(_is_positive(self.max_cutoff) and self.max_cutoff >= self.cutoff, "max_cutoff",
               f"must be a number ≥ cutoff ({self.cutoff} Å)", self.max_cutoff)
        _check(self.widen_rule in WIDEN_RULES, "widen_rule", f"must be one of {list(WIDEN_RULES)}", self.widen_rule)
        _check(isinstance(self.self_edges_when_widened, bool), "self_edges_when_widened", "must be true or false",
               self.self_edges_when_widened)
        _check(self.selection_distances in SELECTION_DISTANCES, "selection_distances",
               f"must be one of {list(SELECTION_DISTANCES)}", self.selection_distances)
        if self.neighbours == "radius":
            _check(self.selection_distances == "featurized_cell", "selection_distances",
                   "applies to neighbours: knn only", self.selection_distances)
            _check(self.widen_rule == "factor", "widen_rule", "applies to neighbours: knn only", self.widen_rule)
            _check(self.self_edges_when_widened, "self_edges_when_widened", "applies to neighbours: knn only",
                   self.self_edges_when_widened)

    @classmethod
    def from_config(cls, recipe: Mapping[str, Any], name: str = "") -> "GraphParams":
        """The recipe of a config block; an unknown key, or a key of the other neighbour rule,
        is a :class:`GraphRecipeError` naming the recipe and the key."""
        where = f"graph recipe {name!r}" if name else "graph recipe"
        if not isinstance(recipe, Mapping):
            raise GraphRecipeError(f"{where}: must be a mapping of fields, not {recipe!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise GraphRecipeError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        rule = recipe.get("neighbours", cls.neighbours)
        other = [key for r, keys in _RULE_ONLY_KEYS.items() if r != rule for key in keys if recipe.get(key) is not None]
        if rule in NEIGHBOUR_RULES and other:
            raise GraphRecipeError(f"{where}: field(s) {other} do not apply to neighbours: {rule}")
        try:
            return cls(**recipe)
        except GraphRecipeError as error:
            raise GraphRecipeError(f"{where}: {error}") from None

    def identity(self) -> dict[str, object]:
        """Everything that determines a shard's graphs: the featurizer version and every field, except
        a field of :data:`_FIELDS_AFTER_VERSION_2` at its default (so older recipes keep their digest)."""
        values = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for name in _FIELDS_AFTER_VERSION_2:
            if values[name] == defaults[name]:
                del values[name]
        return {"featurizer_version": FEATURIZER_VERSION, **values}

    def digest(self) -> str:
        """Short stable hash of :meth:`identity`; names the shard set."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _check(condition: bool, field: str, requirement: str, value: Any) -> None:
    if not condition:
        raise GraphRecipeError(f"field {field!r} {requirement}, got {value!r}")


@dataclass(frozen=True)
class PeriodicGraph:
    """Edges of one crystal graph (E edges)."""

    source: np.ndarray
    """[E] int, neighbour atom j."""
    target: np.ndarray
    """[E] int, centre atom i."""
    offset: np.ndarray
    """[E, 3] int, periodic image of j in units of the lattice vectors."""
    distance: np.ndarray
    """[E] float, Å."""

    def atoms_without_neighbours(self, n_atoms: int) -> np.ndarray:
        """Indices of the atoms that are the target of no edge other than a lattice self-edge."""
        neighbour_edge = self.source != self.target
        has = np.zeros(n_atoms, dtype=bool)
        has[self.target[neighbour_edge]] = True
        return np.flatnonzero(~has)


@dataclass(frozen=True)
class FeaturizedCrystal:
    """A crystal as its recipe describes it: the cell the graph was built in, and the graph."""

    lattice: np.ndarray
    """[3, 3] rows a, b, c (Å): the stored or the canonical cell."""
    frac_coords: np.ndarray
    """[N, 3] fractional coordinates in that cell (atoms in their input order)."""
    graph: PeriodicGraph


class IsolatedAtomError(ValueError):
    """An atom has fewer than k neighbours even at ``max_cutoff`` (knn rule)."""


_PBC = np.array([1, 1, 1], dtype=np.int64)
_Edges = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(centre, neighbour, image, distance) arrays of a set of edges."""


def _neighbour_pairs(cart: np.ndarray, lattice: np.ndarray, centres: np.ndarray, radius: float) -> _Edges:
    """All (centre, neighbour, image, distance) within ``radius`` of the given centre atoms, self excluded."""
    centre_pos, neighbour, image, distance = find_points_in_spheres(
        cart, np.ascontiguousarray(cart[centres]), radius, _PBC, lattice, tol=1e-8
    )
    centre = centres[centre_pos]
    image = image.astype(np.int64)
    keep = ~((centre == neighbour) & ~image.any(axis=1))
    return centre[keep], neighbour[keep], image[keep], distance[keep]


def _sorted_edges(edges: _Edges) -> _Edges:
    """Edges sorted by centre, distance, neighbour, image (a deterministic order)."""
    centre, neighbour, image, distance = edges
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], neighbour, distance, centre))
    return centre[order], neighbour[order], image[order], distance[order]


def _rank_within_centre(centre: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """For edges sorted by centre: (rank of each edge within its centre, edges per atom [n_atoms])."""
    counts = np.bincount(centre, minlength=n_atoms)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.arange(len(centre)) - starts[centre], counts


def _nth_distance(edges: _Edges, n: int, n_atoms: int) -> np.ndarray:
    """[n_atoms] distance of each atom's n-th nearest neighbour (inf where it has fewer)."""
    centre, _, _, distance = edges
    rank, _ = _rank_within_centre(centre, n_atoms)
    nth = np.full(n_atoms, np.inf)
    at_n = rank == n - 1
    nth[centre[at_n]] = distance[at_n]
    return nth


def _select_k_nearest(edges: _Edges, centres: np.ndarray, radius: float, params: GraphParams, n_atoms: int):
    """Split centres into those whose k nearest (plus ties) lie within ``radius`` and the rest.

    Returns the selected edges and the centres to widen.
    """
    edges = _sorted_edges(edges)
    kth = _nth_distance(edges, params.k, n_atoms)
    # the tie window must lie inside the searched sphere, or a tied neighbour could be missing
    done = np.zeros(n_atoms, dtype=bool)
    done[centres] = kth[centres] + params.tie_tolerance <= radius
    centre, _, _, distance = edges
    keep = done[centre] & (distance <= kth[centre] + params.tie_tolerance)
    return tuple(part[keep] for part in edges), centres[~done[centres]]


def next_search_radius(radius: float, lattice: np.ndarray, params: GraphParams) -> float:
    """The radius (Å) searched after ``radius`` for atoms with fewer than k neighbours (``widen_rule``)."""
    if params.widen_rule == "longest_axis_then_double":
        # Bin-Cao/PRDNet@a422056 prdnet/graphs.py L260-263
        longest = float(np.linalg.norm(lattice, axis=1).max())
        return longest if radius < longest else 2 * radius
    return radius * params.widen_factor


_JARVIS_LATTICE_DECIMALS = 5
"""jarvis-tools ``Lattice(lattice_mat, round_off=5)``: ``np.around(lattice_mat, 5)``."""
_JARVIS_BOND_TOL = 0.15
"""Å, jarvis-tools ``Atoms.get_all_neighbors(r, bond_tol=0.15)`` keeps neighbours with d > bond_tol."""
_RELEASED_SEARCH_MARGIN = 1e-3
"""Å added to the search radius so every neighbour within the radius by the released distances is found."""


class _ReleasedPrdnetDistances:
    """Distances as the released PRDNet trainer computes them (``selection_distances: released_prdnet``)
    for the edges (centre i, neighbour j, image n) of a crystal given by fractional coordinates r and
    lattice L, with the operations, in their order, of the code it runs (trainer.py L528-533, L597):

    - ase 3.29 ``Atoms.get_scaled_positions`` (ase/atoms.py L1645-1653: ase/cell.py L274
      ``np.linalg.solve(L.T, positions.T).T``, then ``%= 1.0`` twice) of the positions r L;
    - jarvis-tools 2025.8.30 ``Atoms`` (the same in 2023.1.8 and 2026.6.12): ``cart_coords`` =
      ``np.dot(frac, np.around(L, 5))`` (jarvis/core/lattice.py L57-58, L226-228), and
      ``get_all_neighbors`` (jarvis/core/atoms.py L803-818): d = sum(((n · L + x_j) − x_i)²) ** 0.5
      with the unrounded L, kept when d ≤ r and d > bond_tol = 0.15 Å.
    """

    def __init__(self, frac_coords: np.ndarray, lattice: np.ndarray) -> None:
        read = np.linalg.solve(lattice.T, np.transpose(np.dot(frac_coords, lattice))).T
        read %= 1.0
        read %= 1.0
        self.shift = np.rint(read - frac_coords).astype(np.int64)
        """read = r + shift: images of the read coordinates are n − shift_j + shift_i."""
        self.positions = np.dot(read, np.around(lattice, _JARVIS_LATTICE_DECIMALS))
        self.lattice = lattice

    def __call__(self, centre: np.ndarray, neighbour: np.ndarray, image: np.ndarray) -> np.ndarray:
        read_image = (image - self.shift[neighbour] + self.shift[centre]).astype(float)
        coords = np.dot(read_image, self.lattice) + self.positions[neighbour]
        return np.sum((coords - self.positions[centre]) ** 2, axis=-1) ** 0.5


def _released_pairs(pairs: _Edges, distances: _ReleasedPrdnetDistances, radius: float) -> _Edges:
    """``pairs`` with the released distances, those within ``radius`` and beyond ``bond_tol`` only."""
    centre, neighbour, image, _ = pairs
    released = distances(centre, neighbour, image)
    keep = (released <= radius) & (released > _JARVIS_BOND_TOL)
    return centre[keep], neighbour[keep], image[keep], released[keep]


def _knn_search(
    cart: np.ndarray, lattice: np.ndarray, params: GraphParams, frac_coords: np.ndarray | None = None
) -> tuple[_Edges, bool]:
    """:func:`knn_edges`, and whether some atom has fewer than k neighbours within ``cutoff``."""
    n_atoms = len(cart)
    centres = np.arange(n_atoms)
    radius = params.cutoff
    released = None
    if params.selection_distances == "released_prdnet":
        if frac_coords is None:
            frac_coords = np.linalg.solve(lattice.T, cart.T).T
        released = _ReleasedPrdnetDistances(np.asarray(frac_coords, dtype=float), lattice)
    pieces = []
    widened = False
    while centres.size:
        if radius > params.max_cutoff:
            raise IsolatedAtomError(
                f"atom {int(centres[0])} has fewer than {params.k} neighbours within {params.max_cutoff} Å"
            )
        if released is None:
            pairs = _neighbour_pairs(cart, lattice, centres, radius)
        else:
            pairs = _released_pairs(_neighbour_pairs(cart, lattice, centres, radius + _RELEASED_SEARCH_MARGIN),
                                    released, radius)
        if not pieces:  # released prdnet/graphs.py L254-258: some atom has < k within cutoff
            widened = bool((np.bincount(pairs[0], minlength=n_atoms) < params.k).any())
        edges, centres = _select_k_nearest(pairs, centres, radius, params, n_atoms)
        pieces.append(edges)
        radius = next_search_radius(radius, lattice, params)
    centre, neighbour, image, distance = (np.concatenate(parts) for parts in zip(*pieces))
    if released is not None:  # the graph keeps the cell's own distances
        distance = np.linalg.norm(cart[neighbour] + image @ lattice - cart[centre], axis=1)
    return (centre, neighbour, image, distance), widened


def knn_edges(
    cart: np.ndarray, lattice: np.ndarray, params: GraphParams, frac_coords: np.ndarray | None = None
) -> _Edges:
    """The k nearest neighbours of every atom, plus ties (module docstring); widens the radius per atom.
    ``frac_coords`` (default: solved from ``cart``) are read by ``selection_distances: released_prdnet``.

    Raises :class:`IsolatedAtomError` if some atom has fewer than k neighbours within ``max_cutoff``.
    """
    return _knn_search(cart, lattice, params, frac_coords)[0]


def radius_edges(cart: np.ndarray, lattice: np.ndarray, params: GraphParams) -> _Edges:
    """Every neighbour within ``cutoff`` Å; with ``max_neighbours`` = m, only those no farther than
    each atom's m-th nearest + ``tie_tolerance``."""
    n_atoms = len(cart)
    edges = _sorted_edges(_neighbour_pairs(cart, lattice, np.arange(n_atoms), params.cutoff))
    if params.max_neighbours is None:
        return edges
    cap = _nth_distance(edges, params.max_neighbours, n_atoms) + params.tie_tolerance
    keep = edges[3] <= cap[edges[0]]
    return tuple(part[keep] for part in edges)


def undirected_edges(edges: _Edges) -> _Edges:
    """``edges`` together with their reverses, each (centre, neighbour, image) once: an edge j → i with
    image n (r_j + n − r_i) has the reverse i → j with image −n and the same distance (Å)."""
    centre, neighbour, image, distance = edges
    both = (
        np.concatenate([centre, neighbour]),
        np.concatenate([neighbour, centre]),
        np.concatenate([image, -image]),
        np.concatenate([distance, distance]),
    )
    keys = np.column_stack([both[0], both[1], both[2]]).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first)
    return tuple(array[first] for array in both)


def both_directions(edges: _Edges) -> _Edges:
    """``edges`` followed by the reverse of each (image −n, same distance), keeping every copy: an edge
    found from both ends comes out twice in each direction (``undirected_multiplicity:
    per_directed_edge``; Bin-Cao/PRDNet@a422056 prdnet/graphs.py L363-378)."""
    centre, neighbour, image, distance = edges
    return (
        np.concatenate([centre, neighbour]),
        np.concatenate([neighbour, centre]),
        np.concatenate([image, -image]),
        np.concatenate([distance, distance]),
    )


def lattice_self_offsets(count: int) -> np.ndarray:
    """[count, 3] integer offsets of the lattice self-edges: 6 = ±a, ±b, ±c; 12 = also ±(a+b),
    ±(a+c), ±(b+c); 0 = none."""
    if count not in SELF_EDGE_COUNTS:
        raise GraphRecipeError(f"field 'lattice_self_edges' must be one of {list(SELF_EDGE_COUNTS)}, got {count!r}")
    axes = np.eye(3, dtype=np.int64)
    pairs = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.int64)
    positive = {0: np.zeros((0, 3), np.int64), 6: axes, 12: np.concatenate([axes, pairs])}[count]
    return np.concatenate([positive, -positive])


def _self_edge_code(atom: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """One integer per (atom, offset with entries in {-1, 0, 1})."""
    return atom.astype(np.int64) * 27 + (offset.astype(np.int64) + 1) @ np.array([9, 3, 1])


def with_lattice_self_edges(
    edges: _Edges, lattice: np.ndarray, n_atoms: int, count: int, positive_only: bool = False
) -> _Edges:
    """``edges`` plus, for every atom i, the self-edges i → i of :func:`lattice_self_offsets`
    (distance |n · L|) that are not already among them; ``positive_only``: only the first half of the
    offsets (+a, +b, +c[, +(a+b), +(a+c), +(b+c)]), whose reverses :func:`both_directions` adds."""
    offsets = lattice_self_offsets(count)
    if positive_only:
        offsets = offsets[: len(offsets) // 2]
    if not len(offsets):
        return edges
    centre = np.repeat(np.arange(n_atoms), len(offsets))
    image = np.tile(offsets, (n_atoms, 1))
    distance = np.tile(np.linalg.norm(offsets @ lattice, axis=1), n_atoms)
    is_existing_self = (edges[0] == edges[1]) & np.all(np.abs(edges[2]) <= 1, axis=1)
    existing = _self_edge_code(edges[0][is_existing_self], edges[2][is_existing_self])
    new = ~np.isin(_self_edge_code(centre, image), existing)
    return (
        np.concatenate([edges[0], centre[new]]),
        np.concatenate([edges[1], centre[new]]),
        np.concatenate([edges[2], image[new]]),
        np.concatenate([edges[3], distance[new]]),
    )


def periodic_graph(lattice: np.ndarray, frac_coords: np.ndarray, params: GraphParams = GraphParams()) -> PeriodicGraph:
    """The graph of one crystal in the given cell (lattice rows in Å, fractional coordinates) by the
    recipe's neighbour rule and lattice self-edges. The cell is used as given: use
    :func:`featurize_crystal` to apply the recipe's cell convention too."""
    lattice = np.ascontiguousarray(lattice, dtype=float)
    frac_coords = np.asarray(frac_coords, dtype=float)
    cart = np.ascontiguousarray(frac_coords @ lattice)
    if params.neighbours == "knn":
        edges, widened = _knn_search(cart, lattice, params, frac_coords)
    else:
        edges, widened = radius_edges(cart, lattice, params), False
    self_edges = 0 if widened and not params.self_edges_when_widened else params.lattice_self_edges
    if params.undirected and params.undirected_multiplicity == "per_directed_edge":
        edges = with_lattice_self_edges(edges, lattice, len(cart), self_edges, positive_only=True)
        edges = both_directions(edges)
    else:
        if params.undirected:
            edges = undirected_edges(edges)
        edges = with_lattice_self_edges(edges, lattice, len(cart), self_edges)
    centre, neighbour, image, distance = _sorted_edges(edges)
    return PeriodicGraph(
        source=neighbour.astype(np.int32),
        target=centre.astype(np.int32),
        offset=image.astype(np.int32),
        distance=distance.astype(np.float64),
    )


def featurize_crystal(
    lattice: np.ndarray, frac_coords: np.ndarray, atomic_numbers: np.ndarray, params: GraphParams = GraphParams()
) -> FeaturizedCrystal:
    """One crystal as the recipe describes it: its cell (stored, or canonical) and its graph in that
    cell. This is the one function the shards, the loader and the audit build graphs with."""
    lattice = np.array(lattice, dtype=float)  # own, writable copies
    frac_coords = np.array(frac_coords, dtype=float)
    if params.cell == "canonical":
        lattice, frac_coords = canonical_cell(lattice, frac_coords, np.asarray(atomic_numbers), params.tie_tolerance)
    return FeaturizedCrystal(lattice, frac_coords, periodic_graph(lattice, frac_coords, params))
