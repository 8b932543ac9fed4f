"""Graph shards: exact round trip, parameters in the metadata, stable sharding, refusals."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from prdnet.data.graphs import GraphParams, periodic_knn_graph
from prdnet.data.loader import load_graph_data, make_loader
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import featurize_dataset, read_shards, shard_index, shard_set_digest
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


def test_shards_round_trip_exactly(crystals, shard_set):
    folder, manifest = shard_set
    read, graphs = read_shards([folder / name for name in manifest["shards"]])
    order = np.argsort(read.ids)
    assert sorted(read.ids) == sorted(crystals.ids)
    position = {material_id: row for row, material_id in enumerate(crystals.ids)}
    original = crystals.take(np.array([position[read.ids[r]] for r in order]))
    again = read.take(order)
    np.testing.assert_array_equal(again.atomic_numbers, original.atomic_numbers)
    np.testing.assert_array_equal(again.frac_coords, original.frac_coords)
    np.testing.assert_array_equal(again.lattices, original.lattices)
    for task in TASKS:
        np.testing.assert_array_equal(again.targets[task], original.targets[task])
    # the stored graph equals a fresh construction, bit for bit
    edge_starts = np.concatenate(([0], np.cumsum(graphs.edge_counts)))
    atom_starts = read.atom_slices()
    for row in range(len(read.ids)):
        fresh = periodic_knn_graph(read.lattices[row], read.frac_coords[atom_starts[row] : atom_starts[row + 1]])
        edges = slice(edge_starts[row], edge_starts[row + 1])
        np.testing.assert_array_equal(graphs.source[edges], fresh.source)
        np.testing.assert_array_equal(graphs.target[edges], fresh.target)
        np.testing.assert_array_equal(graphs.offset[edges], fresh.offset)
        np.testing.assert_array_equal(graphs.distance[edges], fresh.distance)


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
