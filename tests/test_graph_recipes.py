"""Graph recipes on known crystals: neighbour counts per rule, lattice self-edges, the canonical
cell (one crystal written in several cells gives one cell and one graph), recipe validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from prdnet.data.cell import canonical_cell, niggli_basis
from prdnet.data.graphs import (
    FEATURIZER_VERSION,
    GraphParams,
    GraphRecipeError,
    featurize_crystal,
    lattice_self_offsets,
    periodic_graph,
)
from prdnet.data.recipes import DEFAULT_RECIPE, graph_recipe_for, graph_recipes
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.models.registry import load_presets
from tests.conftest import random_rotation

A_NACL = 5.64
A_SRTIO3 = 3.905


def rock_salt_conventional() -> Structure:
    """The cubic cell: Na on the fcc sites, Cl on the same sites shifted by (½, 0, 0)."""
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    return Structure(Lattice.cubic(A_NACL), ["Na"] * 4 + ["Cl"] * 4, np.concatenate([fcc, (fcc + [0.5, 0, 0]) % 1]))


def rock_salt_primitive() -> Structure:
    half = A_NACL / 2
    lattice = np.array([[0, half, half], [half, 0, half], [half, half, 0]])
    return Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite() -> Structure:
    """Cubic SrTiO3: Sr at the corner, Ti at the body centre, O at the face centres."""
    return Structure(
        Lattice.cubic(A_SRTIO3),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def featurized(structure: Structure, params: GraphParams):
    return featurize_crystal(structure.lattice.matrix, structure.frac_coords, np.array(structure.atomic_numbers), params)


def in_degree(structure: Structure, params: GraphParams) -> dict[str, set[int]]:
    """Edges per centre atom, gathered by element (every atom of an element must agree)."""
    graph = featurized(structure, params).graph
    counts = np.bincount(graph.target, minlength=len(structure))
    by_element: dict[str, set[int]] = {}
    for atom, site in enumerate(structure):
        by_element.setdefault(site.specie.symbol, set()).add(int(counts[atom]))
    return by_element


def knn(k: int, cutoff: float = 8.0, self_edges: int = 0) -> GraphParams:
    return GraphParams(neighbours="knn", k=k, cutoff=cutoff, lattice_self_edges=self_edges)


def radius(cutoff: float, cap: int | None = None, self_edges: int = 0) -> GraphParams:
    return GraphParams(neighbours="radius", cutoff=cutoff, max_neighbours=cap, lattice_self_edges=self_edges)


# Rock salt: 6 unlike neighbours at a/2 = 2.82 Å, 12 like at a/√2 = 3.99 Å, 8 unlike at
# a√3/2 = 4.88 Å, 6 like at a = 5.64 Å.
@pytest.mark.parametrize("cell", [rock_salt_conventional, rock_salt_primitive])
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (knn(12), 18),  # the 12th lies in the a/√2 shell: all 12 tied kept
        (knn(6), 6),
        (knn(25, cutoff=4.0), 26),  # widened past 4 Å; the 25th is in the 8-atom shell
        (radius(3.0), 6),
        (radius(4.5), 18),
        (radius(5.0), 26),
        (radius(6.0), 32),
        (radius(5.0, cap=10), 18),  # the 10th is in the tied 12-atom shell
        (radius(5.0, cap=6), 6),
    ],
)
def test_rock_salt_neighbour_counts(cell, params, expected):
    for stored_or_canonical in ("stored", "canonical"):
        recipe = dataclasses.replace(params, cell=stored_or_canonical)
        assert in_degree(cell(), recipe) == {"Na": {expected}, "Cl": {expected}}


def test_rock_salt_shell_distances_and_species():
    structure = rock_salt_conventional()
    graph = featurized(structure, knn(12)).graph
    for atom, site in enumerate(structure):
        mask = graph.target == atom
        order = np.argsort(graph.distance[mask], kind="stable")
        species = [structure[int(j)].specie.symbol for j in graph.source[mask][order]]
        distances = graph.distance[mask][order]
        unlike = "Cl" if site.specie.symbol == "Na" else "Na"
        assert species == [unlike] * 6 + [site.specie.symbol] * 12
        np.testing.assert_allclose(distances[:6], A_NACL / 2, atol=1e-9)
        np.testing.assert_allclose(distances[6:], A_NACL / np.sqrt(2), atol=1e-9)


# SrTiO3: Ti: 6 O at a/2, 8 Sr at a√3/2, 6 Ti at a. Sr: 12 O at a/√2, 8 Ti at a√3/2, 6 Sr at a.
# O: 2 Ti at a/2, 4 Sr and 8 O at a/√2, 6 O at a.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (knn(12), {"Ti": {14}, "Sr": {12}, "O": {14}}),
        (radius(2.0), {"Ti": {6}, "Sr": {0}, "O": {2}}),
        (radius(3.0), {"Ti": {6}, "Sr": {12}, "O": {14}}),
        (radius(3.5), {"Ti": {14}, "Sr": {20}, "O": {14}}),
        (radius(4.0), {"Ti": {20}, "Sr": {26}, "O": {20}}),
        (radius(4.0, cap=13), {"Ti": {14}, "Sr": {20}, "O": {14}}),
        (knn(12, self_edges=6), {"Ti": {20}, "Sr": {18}, "O": {20}}),
        (radius(4.0, self_edges=6), {"Ti": {20}, "Sr": {26}, "O": {20}}),  # ±a already within 4 Å
        (radius(4.0, self_edges=12), {"Ti": {26}, "Sr": {32}, "O": {26}}),  # ±(a+b) at a√2 added
    ],
)
def test_perovskite_neighbour_counts(params, expected):
    assert in_degree(perovskite(), params) == expected


def test_an_atom_without_neighbour_in_the_radius_stays_with_only_its_self_edges():
    structure = perovskite()
    graph = featurized(structure, radius(2.0, self_edges=6)).graph
    sr = [i for i, site in enumerate(structure) if site.specie.symbol == "Sr"]
    assert graph.atoms_without_neighbours(len(structure)).tolist() == sr
    mask = graph.target == sr[0]
    assert np.all(graph.source[mask] == sr[0]) and mask.sum() == 6


def self_edges_of(graph, atom: int) -> set[tuple[int, int, int]]:
    mask = (graph.target == atom) & (graph.source == atom)
    return {tuple(map(int, offset)) for offset in graph.offset[mask]}


@pytest.mark.parametrize("count", [6, 12])
def test_lattice_self_edges_are_the_listed_offsets_with_their_lattice_vector_lengths(count):
    structure = perovskite()
    crystal = featurized(structure, knn(12, self_edges=count))
    expected = {tuple(map(int, o)) for o in lattice_self_offsets(count)}
    assert len(expected) == count
    for atom in range(len(structure)):
        assert self_edges_of(crystal.graph, atom) == expected
    mask = crystal.graph.source == crystal.graph.target
    vectors = crystal.graph.offset[mask] @ crystal.lattice
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), crystal.graph.distance[mask], atol=1e-12)
    lengths = {6: {A_SRTIO3}, 12: {A_SRTIO3, A_SRTIO3 * np.sqrt(2)}}[count]
    assert {round(d, 9) for d in crystal.graph.distance[mask]} == {round(x, 9) for x in lengths}


def test_self_edges_already_made_by_the_neighbour_rule_are_not_duplicated():
    # primitive rock salt: the 12 like neighbours at a/√2 are the atom's own images ±a, ±b, ±c,
    # ±(a−b), ... of the 60° Niggli cell; ±(a+b), ±(a+c), ±(b+c) (at a√(3/2)) are new
    crystal = featurized(rock_salt_primitive(), knn(12, self_edges=12))
    for atom in range(2):
        mask = crystal.graph.target == atom
        assert mask.sum() == 18 + 6
        keys = [(int(s), *map(int, o)) for s, o in zip(crystal.graph.source[mask], crystal.graph.offset[mask])]
        assert len(set(keys)) == len(keys)
        assert self_edges_of(crystal.graph, atom) >= {tuple(map(int, o)) for o in lattice_self_offsets(12)}


def edge_keys(graph) -> set[tuple[int, int, int, int, int]]:
    return {(int(j), int(i), *map(int, n)) for j, i, n in zip(graph.source, graph.target, graph.offset)}


def test_an_undirected_graph_is_the_knn_graph_plus_every_reverse_edge_once():
    # an oblique three-atom cell where some atoms are among others' 12 nearest but not vice versa
    lattice = Lattice.from_parameters(3.1, 4.7, 5.3, 80, 95, 100)
    frac = np.array([[0, 0, 0], [0.3, 0.55, 0.41], [0.77, 0.2, 0.6]])
    directed = periodic_graph(lattice.matrix, frac, GraphParams())
    undirected = periodic_graph(lattice.matrix, frac, GraphParams(undirected=True))
    forward = edge_keys(directed)
    reverse = {(i, j, -a, -b, -c) for j, i, a, b, c in forward}
    assert edge_keys(undirected) == forward | reverse
    assert len(undirected.source) == len(forward | reverse) > len(forward)  # each edge once, some added
    distance = dict(zip(((int(j), int(i), *map(int, n)) for j, i, n in zip(undirected.source, undirected.target,
                                                                             undirected.offset)), undirected.distance))
    assert all(np.isclose(distance[(j, i, a, b, c)], distance[(i, j, -a, -b, -c)]) for j, i, a, b, c in distance)


# --- the canonical cell -------------------------------------------------------------------------

SHEAR = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
SKEW = np.array([[2, 1, 1], [1, 1, 1], [-1, 0, 1]])  # det 1: a long, oblique cell
LEFT_HANDED = np.diag([1, 1, -1])


def rewritten(structure: Structure, unimodular: np.ndarray, rotation: np.ndarray | None = None) -> Structure:
    """The same crystal in the basis U L (optionally rotated): r' = r U⁻¹."""
    assert round(abs(np.linalg.det(unimodular))) == 1
    lattice = unimodular @ structure.lattice.matrix
    if rotation is not None:
        lattice = lattice @ rotation.T
    return Structure(lattice, structure.species, structure.frac_coords @ np.linalg.inv(unimodular))


def sorted_rows(frac: np.ndarray, numbers) -> np.ndarray:
    rows = np.column_stack([numbers, frac])
    return rows[np.lexsort(np.round(rows, 8).T[::-1])]


def edge_set(crystal, numbers) -> list[tuple]:
    """Edges keyed by the positions of their atoms (independent of which same-element atom is which)."""
    where = [tuple(np.round(crystal.frac_coords[i], 8)) + (int(numbers[i]),) for i in range(len(numbers))]
    return sorted(
        (where[t], where[s], tuple(map(int, o)), round(float(d), 8))
        for s, t, o, d in zip(crystal.graph.source, crystal.graph.target, crystal.graph.offset, crystal.graph.distance)
    )


def real_crystals(path, n: int = 12) -> list[Structure]:
    """Embedded MP crystals of several sizes: the first of each size bucket (1–5, 6–11, ...,
    30+ atoms), then the first others, ``n`` in all."""
    structures = [e.structure for e in read_mp_embedded(path, limit=400) if e.structure is not None]
    firsts = {}
    for structure in structures:
        firsts.setdefault(min(len(structure) // 6, 5), structure)
    chosen = list(firsts.values())
    chosen += [s for s in structures if all(s is not c for c in chosen)][: n - len(chosen)]
    assert max(len(s) for s in chosen) >= 30
    return chosen


@pytest.fixture(scope="module")
def crystals(mp_embedded_path):
    return [rock_salt_conventional(), rock_salt_primitive(), perovskite(), *real_crystals(mp_embedded_path)]


@pytest.mark.parametrize(
    ("name", "unimodular", "rotate"),
    [("basis change", SHEAR, False), ("oblique basis", SKEW, True), ("left-handed", LEFT_HANDED, False),
     ("left-handed oblique", LEFT_HANDED @ SKEW, True)],
)
def test_one_crystal_in_another_cell_gives_the_same_canonical_cell_and_graph(crystals, name, unimodular, rotate):
    recipe = knn(12, self_edges=12)
    for seed, structure in enumerate(crystals):
        numbers = np.array(structure.atomic_numbers)
        copy = rewritten(structure, unimodular, random_rotation(seed) if rotate else None)
        if "left" in name:
            assert np.linalg.det(copy.lattice.matrix) < 0
        reference, other = featurized(structure, recipe), featurized(copy, recipe)
        np.testing.assert_allclose(other.lattice, reference.lattice, atol=1e-9, err_msg=f"{name}: {structure.formula}")
        np.testing.assert_allclose(sorted_rows(other.frac_coords, numbers), sorted_rows(reference.frac_coords, numbers), atol=1e-9)
        assert edge_set(other, numbers) == edge_set(reference, numbers), f"{name}: {structure.formula}"


def test_canonical_cell_is_a_right_handed_niggli_cell_in_standard_orientation(crystals):
    for structure in crystals:
        lattice, frac = canonical_cell(structure.lattice.matrix, structure.frac_coords, np.array(structure.atomic_numbers), 1e-3)
        assert lattice[0, 1] == lattice[0, 2] == lattice[1, 2] == 0.0  # a along x, b in the xy plane
        assert np.all(np.diag(lattice) > 0)  # right-handed
        niggli = Lattice(niggli_basis(structure.lattice.matrix))
        np.testing.assert_allclose(sorted(Lattice(lattice).abc), sorted(niggli.abc), atol=1e-6)
        np.testing.assert_allclose(abs(np.linalg.det(lattice)), structure.volume, rtol=1e-9)
        assert np.all((frac >= 0) & (frac < 1))
        # same atoms: the canonical copy matches the original as a crystal
        assert Structure(lattice, structure.species, frac).matches(structure, scale=False)


def test_stored_cell_keeps_the_input_lattice_and_coordinates():
    structure = rewritten(perovskite(), SKEW)
    crystal = featurized(structure, dataclasses.replace(knn(12), cell="stored"))
    np.testing.assert_array_equal(crystal.lattice, structure.lattice.matrix)
    np.testing.assert_array_equal(crystal.frac_coords, structure.frac_coords)


def test_featurize_crystal_builds_the_graph_in_the_cell_it_returns():
    crystal = featurized(rewritten(perovskite(), SKEW), knn(12, self_edges=6))
    again = periodic_graph(crystal.lattice, crystal.frac_coords, knn(12, self_edges=6))
    np.testing.assert_array_equal(again.source, crystal.graph.source)
    np.testing.assert_array_equal(again.offset, crystal.graph.offset)


# --- recipes as configuration --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("recipe", "field"),
    [
        ({"neighbours": "nearest"}, "neighbours"),
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"cutoff": -1.0}, "cutoff"),
        ({"lattice_self_edges": 8}, "lattice_self_edges"),
        ({"cell": "niggli"}, "cell"),
        ({"tie_tolerance": -0.1}, "tie_tolerance"),
        ({"widen_factor": 1.0}, "widen_factor"),
        ({"max_cutoff": 4.0}, "max_cutoff"),
        ({"max_neighbours": 32}, "max_neighbours"),  # knn takes k, not max_neighbours
        ({"neighbours": "radius", "max_neighbours": 0}, "max_neighbours"),
        ({"neighbours": "radius", "k": 12}, "k"),  # radius takes no k
        ({"cuttof": 5.0}, "cuttof"),
    ],
)
def test_an_invalid_recipe_is_an_error_naming_the_recipe_and_field(recipe, field):
    with pytest.raises(GraphRecipeError, match=rf"graph recipe 'mine'.*{field}"):
        GraphParams.from_config(recipe, "mine")


def test_every_field_and_the_version_are_in_the_identity_and_change_the_digest():
    base = GraphParams()
    identity = base.identity()
    assert identity["featurizer_version"] == FEATURIZER_VERSION
    # fields added after version 2 enter only when set (tests/test_released_graph.py), so older digests hold
    later = {"undirected_multiplicity", "widen_rule", "self_edges_when_widened", "selection_distances"}
    assert set(identity) == {"featurizer_version", *(f.name for f in dataclasses.fields(GraphParams))} - later
    changed = {
        "neighbours": dict(neighbours="radius"),
        "k": dict(k=13),
        "cutoff": dict(cutoff=9.0),
        "max_neighbours": dict(neighbours="radius", max_neighbours=32),
        "lattice_self_edges": dict(lattice_self_edges=6),
        "undirected": dict(undirected=True),
        "cell": dict(cell="stored"),
        "tie_tolerance": dict(tie_tolerance=1e-4),
        "widen_factor": dict(widen_factor=2.0),
        "max_cutoff": dict(max_cutoff=32.0),
        "undirected_multiplicity": dict(undirected=True, undirected_multiplicity="per_directed_edge"),
        "widen_rule": dict(widen_rule="longest_axis_then_double"),
        "self_edges_when_widened": dict(self_edges_when_widened=False),
        "selection_distances": dict(selection_distances="released_prdnet"),
    }
    assert set(changed) == {f.name for f in dataclasses.fields(GraphParams)}
    digests = {GraphParams(**change).digest() for change in changed.values()}
    assert len(digests) == len(changed) and base.digest() not in digests


def test_every_preset_names_a_valid_recipe_and_presets_without_one_read_the_default():
    presets = load_presets()
    recipes = graph_recipes(presets)
    assert recipes[DEFAULT_RECIPE] == GraphParams()
    for name, model_presets in presets["models"].items():
        for preset, block in model_presets.items():
            recipe = graph_recipe_for({"name": name, "preset": preset}, presets)
            assert recipe == recipes[block.get("graph", DEFAULT_RECIPE)]
    no_key = {"graphs": {}, "models": {"cgcnn": {"small": {}}}}
    assert graph_recipe_for({"name": "cgcnn", "preset": "small"}, no_key) == GraphParams()


def test_a_preset_naming_an_unknown_recipe_is_an_error():
    presets = {"graphs": {}, "models": {"cgcnn": {"small": {"graph": "missing"}}}}
    with pytest.raises(GraphRecipeError, match="'missing'.*known"):
        graph_recipe_for({"name": "cgcnn", "preset": "small"}, presets)
