"""Graph shards: the recipe's cell and graph stored exactly, recipe in the metadata, stable sharding,
atoms without neighbours counted, refusals."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from pymatgen.core import Structure

from prdnet.data.graphs import GraphParams, featurize_crystal, periodic_graph
from prdnet.data.loader import load_graph_data, make_loader
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import check_shard_recipe, featurize_dataset, read_shards, shard_index, shard_set_digest
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.geometry import edge_vectors
from prdnet.io import read_parquet_metadata, write_parquet

TASKS = ["formation_energy", "band_gap", "is_metal"]


@pytest.fixture(scope="module")
def crystals(mp_embedded_path):
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=60), TASKS, ValidationRules())
    return entries_to_columns(entries, TASKS)


@pytest.fixture(scope="module")
def shard_set(crystals, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    write_parquet(folder / "structures.parquet", crystals_table(crystals))
    manifest = featurize_dataset(folder / "structures.parquet", folder / "graphs", GraphParams(), n_shards=3, workers=2)
    return folder / "graphs", manifest


def test_shards_hold_the_recipes_canonical_cell_and_its_graph_exactly(crystals, shard_set):
    folder, manifest = shard_set
    read, graphs = read_shards([folder / name for name in manifest["shards"]])
    order = np.argsort(read.ids)
    assert sorted(read.ids) == sorted(crystals.ids)
    position = {material_id: row for row, material_id in enumerate(crystals.ids)}
    original = crystals.take(np.array([position[read.ids[r]] for r in order]))
    again = read.take(order)
    np.testing.assert_array_equal(again.atomic_numbers, original.atomic_numbers)
    for task in TASKS:
        np.testing.assert_array_equal(again.targets[task], original.targets[task])
    read_starts, original_starts = again.atom_slices(), original.atom_slices()
    graphs = graphs.take(order)
    edge_starts = np.concatenate(([0], np.cumsum(graphs.edge_counts)))
    for row in range(len(again.ids)):
        atoms = slice(original_starts[row], original_starts[row + 1])
        # the stored cell is featurize_crystal's (canonical) cell of the original, bit for bit
        fresh = featurize_crystal(original.lattices[row], original.frac_coords[atoms], original.atomic_numbers[atoms], GraphParams())
        np.testing.assert_array_equal(again.lattices[row], fresh.lattice)
        np.testing.assert_array_equal(again.frac_coords[read_starts[row] : read_starts[row + 1]], fresh.frac_coords)
        # and the stored graph is the graph of that cell
        rebuilt = periodic_graph(again.lattices[row], again.frac_coords[read_starts[row] : read_starts[row + 1]], GraphParams())
        edges = slice(edge_starts[row], edge_starts[row + 1])
        for stored, expected in ((graphs.source, rebuilt.source), (graphs.target, rebuilt.target),
                                 (graphs.offset, rebuilt.offset), (graphs.distance, rebuilt.distance)):
            np.testing.assert_array_equal(stored[edges], expected)


def test_stored_cell_recipe_keeps_the_input_cell(crystals, tmp_path):
    subset = crystals.take(np.arange(5))
    write_parquet(tmp_path / "structures.parquet", crystals_table(subset))
    manifest = featurize_dataset(tmp_path / "structures.parquet", tmp_path / "g", GraphParams(cell="stored"), n_shards=1)
    read, _ = read_shards([tmp_path / "g" / manifest["shards"][0]])
    rows = np.array([read.ids.index(i) for i in subset.ids])
    np.testing.assert_array_equal(read.take(rows).lattices, subset.lattices)
    np.testing.assert_array_equal(read.take(rows).frac_coords, subset.frac_coords)


def test_atoms_without_a_neighbour_in_the_radius_are_kept_and_counted(crystals, tmp_path, mp_embedded_path):
    subset = crystals.take(np.arange(8))
    write_parquet(tmp_path / "structures.parquet", crystals_table(subset))
    recipe = GraphParams(neighbours="radius", cutoff=2.0)
    manifest = featurize_dataset(tmp_path / "structures.parquet", tmp_path / "r", recipe, n_shards=2)
    starts = subset.atom_slices()
    expected = {}
    for row, material_id in enumerate(subset.ids):
        atoms = slice(starts[row], starts[row + 1])
        structure = Structure(subset.lattices[row], subset.atomic_numbers[atoms], subset.frac_coords[atoms])
        lonely = sum(1 for site in structure if not structure.get_neighbors(site, 2.0))
        if lonely:
            expected[material_id] = lonely
    assert expected, "the test needs crystals with an atom farther than 2 Å from every other"
    assert manifest["crystals"] == len(subset.ids) and manifest["graph_rejects"] == 0
    assert manifest["atoms_without_neighbours"] == sum(expected.values())
    assert manifest["crystals_with_atoms_without_neighbours"] == len(expected)
    listed = (tmp_path / "r" / "no_neighbour_atoms.csv").read_text().split()[1:]
    assert {line.split(",")[0]: int(line.split(",")[1]) for line in listed} == expected
    per_shard = [read_parquet_metadata(tmp_path / "r" / name)["prdnet.graphs"] for name in manifest["shards"]]
    assert sum(m["atoms_without_neighbours"] for m in per_shard) == sum(expected.values())
    read, graphs = read_shards([tmp_path / "r" / name for name in manifest["shards"]])
    assert int(read.atom_counts.sum()) == int(subset.atom_counts.sum())  # no atom dropped


def test_a_job_is_refused_the_shards_of_another_recipe(shard_set):
    folder, manifest = shard_set
    paths = [folder / name for name in manifest["shards"]]
    check_shard_recipe(paths, GraphParams())
    with pytest.raises(ValueError, match="built with recipe"):
        check_shard_recipe(paths, GraphParams(lattice_self_edges=12))


def test_shard_metadata_holds_parameters_version_and_counts(shard_set):
    folder, manifest = shard_set
    metadata = read_parquet_metadata(folder / manifest["shards"][0])
    assert metadata["prdnet.featurizer"] == GraphParams().identity()
    assert metadata["prdnet.shard"] == {"index": 0, "n_shards": 3, "set": shard_set_digest(GraphParams(), 3)}
    assert metadata["prdnet.summary"] == {} or "accepted" in metadata["prdnet.summary"]


def test_crystals_go_to_the_shard_of_their_id_hash(shard_set):
    folder, manifest = shard_set
    for index, name in enumerate(manifest["shards"]):
        ids = pq.read_table(folder / name, columns=["id"])["id"].to_pylist()
        assert all(shard_index(i, 3) == index for i in ids)
    assert shard_index("mp-149", 16) == shard_index("mp-149", 16)  # no per-process salt


def test_changed_parameters_make_a_new_shard_set():
    assert shard_set_digest(GraphParams(), 4) != shard_set_digest(GraphParams(k=8), 4)
    assert shard_set_digest(GraphParams(), 4) != shard_set_digest(GraphParams(), 8)


def test_mixing_shards_of_different_parameters_is_refused(crystals, shard_set, tmp_path):
    folder, manifest = shard_set
    write_parquet(tmp_path / "structures.parquet", crystals_table(crystals.take(np.arange(5))))
    other = featurize_dataset(tmp_path / "structures.parquet", tmp_path / "k8", GraphParams(k=8), n_shards=1)
    with pytest.raises(ValueError, match="different featurizer parameters"):
        read_shards([folder / manifest["shards"][0], tmp_path / "k8" / other["shards"][0]])


def test_half_written_shard_gives_an_error_naming_the_file(shard_set, tmp_path):
    folder, manifest = shard_set
    whole = (folder / manifest["shards"][0]).read_bytes()
    broken = tmp_path / "shard-000.parquet"
    broken.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="shard-000.parquet.*half-written"):
        read_shards([broken])


def test_loader_gives_batches_whose_edge_vectors_match_the_distances(shard_set, crystals):
    folder, manifest = shard_set
    ids = crystals.ids[:10]
    data = load_graph_data([folder / n for n in manifest["shards"]], task="formation_energy", ids=ids)
    assert [d.material_id for d in data] == ids
    batch = next(iter(make_loader(data, batch_size=10, shuffle=False)))
    assert batch.lattice.shape == (10, 3, 3) and batch.y.shape == (10,)
    vectors = edge_vectors(batch.frac_coords, batch.lattice, batch.edge_index, batch.edge_offset, batch.batch)
    torch.testing.assert_close(vectors.norm(dim=1), batch.edge_distance, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(batch.y.numpy(), crystals.targets["formation_energy"][:10], rtol=1e-6)


def test_loader_names_ids_that_are_in_no_shard(shard_set):
    folder, manifest = shard_set
    with pytest.raises(KeyError, match="mp-does-not-exist"):
        load_graph_data([folder / n for n in manifest["shards"]], ids=["mp-does-not-exist"])


def test_classification_targets_load_as_class_indices(shard_set, crystals):
    folder, manifest = shard_set
    data = load_graph_data([folder / n for n in manifest["shards"]], task="is_metal", ids=crystals.ids[:4], classification=True)
    assert all(d.y.dtype == torch.long for d in data)
