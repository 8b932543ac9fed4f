"""The ``prdnet_reference`` graph recipe against the graphs the released PRDNet trainer builds
(Bin-Cao/PRDNet@a422056), recorded by benchmarks/released_graph_fixture.py, which ran the released
code itself; and the recipe fields that express it (prdnet/data/graphs.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Element

from prdnet.data.graphs import (
    GraphParams,
    GraphRecipeError,
    featurize_crystal,
    knn_edges,
    lattice_self_offsets,
    next_search_radius,
    periodic_graph,
)
from prdnet.data.recipes import graph_recipe_for, graph_recipes
from prdnet.models.registry import load_presets
from tests.conftest import MATMINER_DATA

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "released_graph_phonons40.json").read_text())
RECIPES = graph_recipes(load_presets())
RELEASED = RECIPES["prdnet_reference"]

CUBIC_PO = (np.eye(3) * 7.0, np.zeros((1, 3)))
"""One atom in a 7 Å cube: 6 neighbours within 8 Å, so every knn recipe with k = 12 widens."""


def multiset(graph) -> list[list[int]]:
    """The fixture's edge format: sorted [i, j, n0, n1, n2, multiplicity], i = target, j = source."""
    counts = Counter((int(i), int(j), *map(int, n)) for i, j, n in zip(graph.target, graph.source, graph.offset))
    return [[*key, count] for key, count in sorted(counts.items())]


def digest(rows: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def graph_of(lattice, frac_coords, numbers, recipe: GraphParams = RELEASED):
    return featurize_crystal(np.array(lattice), np.array(frac_coords), np.array(numbers), recipe).graph


# (a) pinned crystals: structure and whole edge multiset, from the released code ------------------


@pytest.mark.parametrize("pinned", FIXTURE["pinned"], ids=[p["name"] for p in FIXTURE["pinned"]])
def test_the_reference_recipe_gives_the_released_graph_of_each_pinned_crystal(pinned):
    numbers = [Element(symbol).Z for symbol in pinned["species"]]
    graph = graph_of(pinned["lattice"], pinned["frac_coords"], numbers)
    rows = multiset(graph)
    assert sum(row[-1] for row in rows) == pinned["edges"] == len(graph.source)
    assert rows == pinned["multiset"], pinned["why"]


def test_the_pinned_cases_show_what_they_are_pinned_for():
    pinned = {p["name"]: p for p in FIXTURE["pinned"]}
    assert any(row[0] != row[1] and row[-1] == 2 for row in pinned["mb-phonons-0001"]["multiset"])  # mutual: twice
    assert [p["widened"] for p in FIXTURE["pinned"]] == [False, False, False, True, True]
    # widened: the released code drops the lattice self-edges, which here would have added edges
    kbr = pinned["widened-triclinic-KBr"]
    with_self_edges = dataclasses.replace(RELEASED, self_edges_when_widened=True)
    numbers = [19, 35]
    assert len(graph_of(kbr["lattice"], kbr["frac_coords"], numbers, with_self_edges).source) > kbr["edges"] == 48
    # the cubic crystal: its 6 + 12 exactly tied nearest images, each found from both ends
    assert pinned["widened-cubic-7A"]["multiset"] == sorted(
        [0, 0, *n, 2] for n in map(list, np.argwhere(np.ones((3, 3, 3))) - 1) if 0 < sum(map(abs, n)) <= 2)


# (b) the first 40 MatBench phonons crystals: per-crystal edge counts and multiset digests ---------


def test_the_reference_recipe_gives_the_released_graphs_of_the_first_40_phonons_crystals():
    if not (MATMINER_DATA / "matbench_phonons.json.gz").exists():
        pytest.skip(f"embedded MatBench data missing at {MATMINER_DATA} (set PRDNET_SHARED_DATA)")
    from prdnet.data.sources.matbench import open_matbench_task

    recorded = FIXTURE["matbench_phonons"]["crystals"]
    _, task = open_matbench_task("matbench_phonons", MATMINER_DATA)
    frame = task.df.iloc[: len(recorded)]
    total = 0
    different = []
    for material_id, structure, expected in zip(frame.index, frame["structure"], recorded, strict=True):
        assert material_id == expected["material_id"]
        graph = graph_of(structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
        rows = multiset(graph)
        total += len(graph.source)
        if (len(graph.source), digest(rows)) != (expected["edges"], expected["digest"]):
            different.append((material_id, len(graph.source), expected["edges"]))
    assert different == []
    assert total == FIXTURE["matbench_phonons"]["total_edges"] == 8348


# (c) the recipe fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "field"),
    [
        ({"undirected": True, "undirected_multiplicity": "twice"}, "undirected_multiplicity"),
        ({"undirected_multiplicity": "per_directed_edge"}, "undirected_multiplicity"),  # needs undirected: true
        ({"widen_rule": "double"}, "widen_rule"),
        ({"neighbours": "radius", "widen_rule": "longest_axis_then_double"}, "widen_rule"),
        ({"self_edges_when_widened": "no"}, "self_edges_when_widened"),
        ({"neighbours": "radius", "self_edges_when_widened": False}, "self_edges_when_widened"),
        ({"selection_distances": "jarvis"}, "selection_distances"),
        ({"neighbours": "radius", "selection_distances": "released_prdnet"}, "selection_distances"),
    ],
)
def test_an_invalid_new_field_is_an_error_naming_the_recipe_and_field(recipe, field):
    with pytest.raises(GraphRecipeError, match=rf"graph recipe 'mine'.*{field}"):
        GraphParams.from_config(recipe, "mine")


NEW_FIELDS = {
    "undirected_multiplicity": {"undirected": True, "undirected_multiplicity": "per_directed_edge"},
    "widen_rule": {"widen_rule": "longest_axis_then_double"},
    "self_edges_when_widened": {"self_edges_when_widened": False},
    "selection_distances": {"selection_distances": "released_prdnet"},
}
VERSION_2_FIELDS = {"neighbours", "k", "cutoff", "max_neighbours", "undirected", "lattice_self_edges", "cell",
                    "tie_tolerance", "widen_factor", "max_cutoff"}
BEFORE = {
    # digest, and a hash of the graph bytes of the pinned crystals built in their given cell (the
    # cell convention is prdnet.data.cell's, not this test's), of each recipe of config/models.yaml
    # as the code before the new fields built them; the old prdnet_reference recipe is now
    # prdnet_reference_invariant (the same recipe as matformer's)
    "default": ("baa12b6499", "81b35a875428c4e2"),
    "cgcnn": ("8f47d3565a", "405934535c34d186"),
    "schnet": ("c1b9d9d4bf", "f262d6531fdbcc52"),
    "megnet": ("c1b9d9d4bf", "f262d6531fdbcc52"),
    "alignn": ("c9e952caa2", "3fd5772a293cfaa7"),
    "matformer": ("51579a5a22", "f837f1b1faedcfac"),
    "icomformer": ("2bb9d785d3", "c1234a00a5528623"),
    "prdnet_reference_invariant": ("51579a5a22", "f837f1b1faedcfac"),
}


def test_the_new_fields_are_all_the_fields_added_to_version_2():
    assert {f.name for f in dataclasses.fields(GraphParams)} == VERSION_2_FIELDS | set(NEW_FIELDS)


def _digest_under_version(recipe: GraphParams, version: str) -> str:
    """The recipe's digest had its identity carried another featurizer version (the digest's rule)."""
    from unittest import mock

    with mock.patch("prdnet.data.graphs.FEATURIZER_VERSION", version):
        return recipe.digest()


def test_existing_recipes_keep_their_identity_digest_and_graphs_bytes():
    """The new fields at their defaults are the code of before: every recipe that existed keeps its
    identity (shard metadata), digest (shard folder) and its graphs, bit for bit."""
    for name, (digest_before, graphs_before) in BEFORE.items():
        recipe = RECIPES[name]
        assert set(recipe.identity()) == {"featurizer_version"} | VERSION_2_FIELDS, name
        # the digest pinned under version 2; version 3 (the canonical cell's fix) renames every shard set
        assert GraphParams.digest(recipe) != digest_before and recipe.identity()["featurizer_version"] == "3", name
        assert _digest_under_version(recipe, "2") == digest_before, name
        h = hashlib.sha256()
        for pinned in FIXTURE["pinned"]:
            graph = periodic_graph(np.array(pinned["lattice"]), np.array(pinned["frac_coords"]), recipe)
            for array in (graph.target, graph.source, graph.offset, graph.distance):
                h.update(np.ascontiguousarray(array).tobytes())
        assert h.hexdigest()[:16] == graphs_before, name


@pytest.mark.parametrize("field", NEW_FIELDS)
def test_a_new_field_enters_identity_and_digest_only_when_set(field):
    base = GraphParams(lattice_self_edges=12, undirected=True)
    assert field not in base.identity()
    changed = dataclasses.replace(base, **NEW_FIELDS[field])
    assert changed.identity()[field] == NEW_FIELDS[field][field]
    assert changed.digest() != base.digest()
    explicit_default = dataclasses.replace(base, **{field: getattr(GraphParams, field)})
    assert explicit_default.identity() == base.identity() and explicit_default.digest() == base.digest()


def test_per_directed_edge_doubles_mutual_neighbours_and_once_keeps_one_copy(rock_salt):
    once = GraphParams(undirected=True, lattice_self_edges=0, cell="stored")
    per_edge = GraphParams(undirected=True, undirected_multiplicity="per_directed_edge", lattice_self_edges=0,
                           cell="stored")
    a = graph_of(rock_salt.lattice.matrix, rock_salt.frac_coords, rock_salt.atomic_numbers, once)
    b = graph_of(rock_salt.lattice.matrix, rock_salt.frac_coords, rock_salt.atomic_numbers, per_edge)
    once_rows, per_edge_rows = multiset(a), multiset(b)
    assert {row[-1] for row in once_rows} == {1}
    # in rock salt every k-NN relation is mutual: each edge of the once-graph twice
    assert per_edge_rows == [[*row[:5], 2] for row in once_rows]
    # and the per-edge graph is twice the directed k-NN graph's edges
    directed = graph_of(rock_salt.lattice.matrix, rock_salt.frac_coords, rock_salt.atomic_numbers,
                        GraphParams(cell="stored"))
    assert len(b.source) == 2 * len(directed.source)


def test_per_directed_edge_adds_the_positive_self_offsets_once_with_their_reverses():
    """Released graphs.py L294-302 then L375: the directed k-NN edges and +a, +b, +c, +(a+b), +(a+c),
    +(b+c) in one set per directed pair, then every member with its reverse."""
    lattice = np.diag([3.0, 3.1, 3.2])  # one atom: its 12 nearest (+ ties) are ±a, ±b, ±c, ±a±b, ±a±c
    frac = np.zeros((1, 3))
    recipe = GraphParams(undirected=True, undirected_multiplicity="per_directed_edge", lattice_self_edges=12,
                         cell="stored", tie_tolerance=0.0)
    graph = periodic_graph(lattice, frac, recipe)
    found = {tuple(map(int, n)) for n in knn_edges(frac @ lattice, lattice, recipe)[2]}
    assert len(found) == 14 and (0, 1, 1) not in found
    members = found | {tuple(map(int, n)) for n in lattice_self_offsets(12)[:6]}
    counts = Counter(tuple(map(int, n)) for n in graph.offset)
    assert set(counts) == members | {tuple(-x for x in n) for n in members}
    for offset, count in counts.items():
        assert count == (offset in members) + (tuple(-x for x in offset) in members), offset
    assert counts[(0, 1, 1)] == counts[(0, -1, -1)] == 1 and counts[(1, 0, 0)] == 2


def test_without_self_edges_when_widened_a_widened_crystal_has_none_and_a_dense_one_keeps_them(rock_salt):
    kbr = next(p for p in FIXTURE["pinned"] if p["name"] == "widened-triclinic-KBr")
    keep = GraphParams(lattice_self_edges=12, cell="stored")
    drop = dataclasses.replace(keep, self_edges_when_widened=False)
    plain = GraphParams(cell="stored")
    sparse = [graph_of(kbr["lattice"], kbr["frac_coords"], [19, 35], r) for r in (keep, drop, plain)]
    assert multiset(sparse[1]) == multiset(sparse[2])  # widened: as if lattice_self_edges were 0
    assert len(sparse[0].source) > len(sparse[2].source)
    salt = (rock_salt.lattice.matrix, rock_salt.frac_coords, rock_salt.atomic_numbers)
    dense = [graph_of(*salt, r) for r in (keep, drop)]
    assert multiset(dense[0]) == multiset(dense[1]) and np.sum(dense[1].source == dense[1].target) == 12 * 8


def test_the_released_widen_rule_goes_to_the_longest_axis_then_doubles_and_keeps_the_same_neighbours():
    recipe = GraphParams(widen_rule="longest_axis_then_double")
    cubic, layered = np.eye(3) * 7.0, np.diag([4.0, 4.0, 15.0])
    assert next_search_radius(8.0, cubic, recipe) == 16.0  # released graphs.py L260-263: 8 ≥ 7, so 2 × 8
    assert next_search_radius(8.0, layered, recipe) == 15.0  # 8 < 15: the longest axis
    assert next_search_radius(15.0, layered, recipe) == 30.0
    assert next_search_radius(8.0, cubic, GraphParams()) == 12.0  # factor 1.5
    for rule in ("factor", "longest_axis_then_double"):
        a = periodic_graph(*CUBIC_PO, GraphParams(widen_rule=rule, tie_tolerance=0.0))
        assert multiset(a) == multiset(periodic_graph(*CUBIC_PO, GraphParams(tie_tolerance=0.0)))


def test_released_selection_distances_decide_near_ties_and_keep_the_cells_own_distances():
    pinned = next(p for p in FIXTURE["pinned"] if p["name"] == "mb-phonons-0010")
    lattice, frac = np.array(pinned["lattice"]), np.array(pinned["frac_coords"])
    exact = GraphParams(undirected=True, undirected_multiplicity="per_directed_edge", lattice_self_edges=12,
                        cell="stored", tie_tolerance=0.0)
    released = dataclasses.replace(exact, selection_distances="released_prdnet")
    a, b = periodic_graph(lattice, frac, exact), periodic_graph(lattice, frac, released)
    assert multiset(a) != multiset(b)  # near ties at ~1e-6 Å: the released arithmetic keeps other neighbours
    assert multiset(b) == pinned["multiset"]
    cart = frac @ lattice
    own = np.linalg.norm(cart[b.source] + b.offset @ lattice - cart[b.target], axis=1)
    np.testing.assert_allclose(b.distance, own, rtol=0, atol=1e-12)


def test_the_reference_presets_read_the_released_and_the_invariant_recipes():
    presets = load_presets()
    assert graph_recipe_for({"name": "prdnet", "preset": "reference"}, presets) == RELEASED
    invariant = graph_recipe_for({"name": "prdnet", "preset": "reference_invariant"}, presets)
    assert invariant == RECIPES["prdnet_reference_invariant"] and invariant.cell == "canonical"
    reference, other = presets["models"]["prdnet"]["reference"], presets["models"]["prdnet"]["reference_invariant"]
    assert {k: v for k, v in other.items() if k != "graph"} == {k: v for k, v in reference.items() if k != "graph"}
    assert RELEASED.cell == "stored" and RELEASED.tie_tolerance == 0.0
