"""The periodic k-NN rule in the stored cell: known neighbour shells, ties, widening, invariances
(recipes, radius rule, self-edges and the canonical cell: tests/test_graph_recipes.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from prdnet.data.graphs import GraphParams, IsolatedAtomError, periodic_graph
from prdnet.data.sources.mp_embedded import read_mp_embedded
from tests.conftest import random_rotation


STORED = GraphParams(cell="stored")


def graph_of(structure: Structure, params: GraphParams = STORED):
    return periodic_graph(structure.lattice.matrix, structure.frac_coords, params)


def neighbours_of(graph, atom: int) -> tuple[np.ndarray, np.ndarray]:
    """(neighbour indices, distances) of one centre atom, nearest first."""
    mask = graph.target == atom
    order = np.argsort(graph.distance[mask], kind="stable")
    return graph.source[mask][order], graph.distance[mask][order]


def test_rock_salt_sodium_has_six_chlorine_at_half_a_then_twelve_sodium_at_a_over_root_two(rock_salt):
    a = 5.64
    graph = graph_of(rock_salt)
    for atom, site in enumerate(rock_salt):
        if site.specie.symbol != "Na":
            continue
        neighbours, distances = neighbours_of(graph, atom)
        species = [rock_salt[int(j)].specie.symbol for j in neighbours]
        assert species[:6] == ["Cl"] * 6
        np.testing.assert_allclose(distances[:6], a / 2, atol=1e-9)
        # the 12 Na of the second shell are tied: all kept although k = 12
        assert species[6:] == ["Na"] * 12
        np.testing.assert_allclose(distances[6:], a / np.sqrt(2), atol=1e-9)


def test_bcc_iron_has_eight_then_six_neighbours(bcc_iron):
    a = 2.87
    graph = graph_of(bcc_iron)
    for atom in range(2):
        _, distances = neighbours_of(graph, atom)
        assert len(distances) == 14
        np.testing.assert_allclose(distances[:8], a * np.sqrt(3) / 2, atol=1e-9)
        np.testing.assert_allclose(distances[8:], a, atol=1e-9)


def test_edge_distance_is_the_norm_of_the_periodic_edge_vector(rock_salt):
    graph = graph_of(rock_salt)
    vectors = (rock_salt.frac_coords[graph.source] + graph.offset - rock_salt.frac_coords[graph.target]) @ rock_salt.lattice.matrix
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), graph.distance, atol=1e-12)


def test_every_atom_has_at_least_k_neighbours_and_only_ties_beyond_the_kth(mp_embedded_path):
    params = STORED
    for entry in read_mp_embedded(mp_embedded_path, limit=50):
        graph = graph_of(entry.structure, params)
        for atom in range(len(entry.structure)):
            _, distances = neighbours_of(graph, atom)
            assert len(distances) >= params.k
            assert distances[-1] - distances[params.k - 1] <= params.tie_tolerance


def test_sparse_cell_widens_the_radius_until_k_neighbours():
    lonely = Structure(Lattice.cubic(20.0), ["Fe"], [[0, 0, 0]])
    _, distances = neighbours_of(graph_of(lonely), 0)
    # 6 images at 20 Å, then 12 tied at 20·√2 Å: all beyond the initial 8 Å cutoff
    assert len(distances) == 18
    np.testing.assert_allclose(distances[:6], 20.0)
    np.testing.assert_allclose(distances[6:], 20.0 * np.sqrt(2))


def test_atom_without_k_neighbours_within_max_cutoff_is_an_error():
    lonely = Structure(Lattice.cubic(20.0), ["Fe"], [[0, 0, 0]])
    with pytest.raises(IsolatedAtomError):
        graph_of(lonely, GraphParams(cell="stored", max_cutoff=15.0))


def test_supercell_atoms_have_the_same_sorted_neighbour_distances(mp_embedded_path):
    for entry in read_mp_embedded(mp_embedded_path, limit=20):
        primitive = entry.structure
        supercell = primitive * (2, 1, 1)
        profile = lambda s: sorted(tuple(np.round(neighbours_of(graph_of(s), i)[1], 8)) for i in range(len(s)))
        assert profile(supercell) == sorted(profile(primitive) * 2), entry.id


def test_rotated_copy_gives_the_same_graph(mp_embedded_path):
    for seed, entry in enumerate(read_mp_embedded(mp_embedded_path, limit=20)):
        rotated_lattice = entry.structure.lattice.matrix @ random_rotation(seed).T
        original = graph_of(entry.structure)
        rotated = periodic_graph(rotated_lattice, entry.structure.frac_coords, STORED)
        key = lambda g: sorted(zip(g.target.tolist(), g.source.tolist(), map(tuple, g.offset.tolist())))
        assert key(original) == key(rotated), entry.id
        np.testing.assert_allclose(np.sort(original.distance), np.sort(rotated.distance), atol=1e-9)
