"""Periodic k-nearest-neighbour crystal graphs.

For each atom i, its neighbours are the k nearest atoms j (any periodic image, other than i
itself in the home cell) within ``cutoff`` Å. An atom with fewer than k neighbours gets its
search radius widened by ``widen_factor`` until it has k. Every neighbour whose distance is
within ``tie_tolerance`` Å of the k-th one is kept too, so float noise (a rotated or shifted
copy of the same crystal) cannot change which atoms are joined.

Each edge is stored as (source j, target i, image offset n_ij, distance d_ij) with
``d_ij = |(r_j + n_ij − r_i) · L|`` (Å), fractional coordinates r and lattice rows L.
The neighbour search is pymatgen's compiled ``find_points_in_spheres``; the selection is
vectorized numpy, with no Python loop over atoms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from pymatgen.optimization.neighbors import find_points_in_spheres

FEATURIZER_VERSION = "1"
"""Bump when the graph construction changes in a way that changes shards."""


@dataclass(frozen=True)
class GraphParams:
    """Parameters of the neighbour graph (config block ``featurizer``)."""

    k: int = 12
    cutoff: float = 8.0
    """Å, initial search radius."""
    tie_tolerance: float = 1e-3
    """Å, neighbours this close to the k-th distance are kept too."""
    widen_factor: float = 1.5
    """Radius multiplier for atoms with fewer than k neighbours."""
    max_cutoff: float = 64.0
    """Å, beyond this an atom is declared isolated and the crystal is rejected."""

    def identity(self) -> dict[str, object]:
        """Everything that determines a shard's graphs: the parameters and the featurizer version."""
        return {"featurizer_version": FEATURIZER_VERSION, **asdict(self)}

    def digest(self) -> str:
        """Short stable hash of :meth:`identity`; names the shard set."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


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


class IsolatedAtomError(ValueError):
    """An atom has fewer than k neighbours even at ``max_cutoff``."""


_PBC = np.array([1, 1, 1], dtype=np.int64)


def _neighbour_pairs(cart: np.ndarray, lattice: np.ndarray, centres: np.ndarray, radius: float):
    """All (centre, neighbour, image, distance) within ``radius`` of the given centre atoms, self excluded."""
    centre_pos, neighbour, image, distance = find_points_in_spheres(
        cart, np.ascontiguousarray(cart[centres]), radius, _PBC, lattice, tol=1e-8
    )
    centre = centres[centre_pos]
    image = image.astype(np.int64)
    is_self = (centre == neighbour) & ~image.any(axis=1)
    keep = ~is_self
    return centre[keep], neighbour[keep], image[keep], distance[keep]


def _select_k_nearest(centre, neighbour, image, distance, centres, radius, params):
    """Split centres into those whose k nearest (plus ties) lie within ``radius`` and the rest.

    Returns the selected edges (sorted by centre, then distance) and the centres to widen.
    """
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], neighbour, distance, centre))
    centre, neighbour, image, distance = centre[order], neighbour[order], image[order], distance[order]
    counts = np.bincount(centre, minlength=centres.max() + 1)[centres]
    starts = np.zeros(centres.max() + 1, dtype=np.int64)
    starts[centres] = np.concatenate(([0], np.cumsum(counts)[:-1]))
    enough = counts >= params.k
    kth = np.full(centres.max() + 1, np.inf)
    kth_index = starts[centres[enough]] + params.k - 1
    kth[centres[enough]] = distance[kth_index]
    # the tie window must lie inside the searched sphere, or a tied neighbour could be missing
    done = np.zeros(centres.max() + 1, dtype=bool)
    done[centres] = kth[centres] + params.tie_tolerance <= radius
    keep = done[centre] & (distance <= kth[centre] + params.tie_tolerance)
    edges = (centre[keep], neighbour[keep], image[keep], distance[keep])
    return edges, centres[~done[centres]]


def periodic_knn_graph(lattice: np.ndarray, frac_coords: np.ndarray, params: GraphParams = GraphParams()) -> PeriodicGraph:
    """The periodic k-NN graph of one crystal (lattice rows in Å, fractional coordinates).

    Raises :class:`IsolatedAtomError` if some atom has fewer than k neighbours within
    ``params.max_cutoff``.
    """
    lattice = np.ascontiguousarray(lattice, dtype=float)
    cart = np.ascontiguousarray(np.asarray(frac_coords, dtype=float) @ lattice)
    centres = np.arange(len(cart))
    radius = params.cutoff
    pieces = []
    while centres.size:
        if radius > params.max_cutoff:
            raise IsolatedAtomError(
                f"atom {int(centres[0])} has fewer than {params.k} neighbours within {params.max_cutoff} Å"
            )
        pairs = _neighbour_pairs(cart, lattice, centres, radius)
        edges, centres = _select_k_nearest(*pairs, centres, radius, params)
        pieces.append(edges)
        radius *= params.widen_factor
    centre, neighbour, image, distance = (np.concatenate(parts) for parts in zip(*pieces))
    order = np.argsort(centre, kind="stable")
    return PeriodicGraph(
        source=neighbour[order].astype(np.int32),
        target=centre[order].astype(np.int32),
        offset=image[order].astype(np.int32),
        distance=distance[order],
    )
