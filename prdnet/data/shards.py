"""Featurization into Parquet graph shards, and reading them back.

A dataset is featurized once per graph recipe (:class:`~prdnet.data.graphs.GraphParams`), each
crystal by :func:`~prdnet.data.graphs.featurize_crystal`: the shards store the cell the recipe
asks for (with ``cell: canonical``, the canonical lattice and fractional coordinates, so every
model and the diffraction plug-in see that cell) and the graph built in it.

A dataset's crystals are spread over ``n_shards`` files by a stable hash of their id
(SHA-256, so the assignment never changes between runs or machines). Each shard's schema
metadata holds the recipe and featurizer version (``prdnet.featurizer``), its index
(``prdnet.shard``), the dataset's validation counts (``prdnet.summary``) and the shard's graph
counts (``prdnet.graphs``: crystals, edges, atoms without a neighbour within a radius rule's
cutoff and their crystals). Shard sets live in a folder named by the digest of the recipe and
shard count, so changing a field makes a new set; reading refuses shards whose recipes differ.
Besides the shards the folder holds ``manifest.json`` (with each shard's SHA-256, checked
whenever a shard is read: :func:`verify_shards`), ``rejects.csv`` (crystals the recipe
could not build: a k-NN atom without k neighbours within ``max_cutoff``) and
``no_neighbour_atoms.csv`` (id, atoms without a neighbour: they stay in the graph with no
neighbour edge).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prdnet.data.graphs import GraphParams, IsolatedAtomError, featurize_crystal
from prdnet.data.prepare import rejects_csv
from prdnet.data.tables import CrystalColumns, GraphColumns, crystals_table, read_crystals, read_graphs, stack_graphs
from prdnet.data.validate import ALL_TASKS, Reject
from prdnet.io import decode_metadata, file_digest, read_parquet_metadata, write_json, write_parquet, write_text


def shard_index(material_id: str, n_shards: int) -> int:
    """Shard of an id: the first 8 bytes of SHA-256(id) modulo ``n_shards``."""
    return int.from_bytes(hashlib.sha256(material_id.encode()).digest()[:8], "big") % n_shards


def shard_set_digest(params: GraphParams, n_shards: int) -> str:
    """Name of the shard set: graph parameters, featurizer version and shard count."""
    return f"{params.digest()}-n{n_shards}"


def shard_file_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:03d}.parquet"


def build_graphs(
    crystals: CrystalColumns, params: GraphParams
) -> tuple[CrystalColumns, GraphColumns, list[Reject], dict[str, int]]:
    """Featurize every crystal by the recipe.

    Returns (the kept crystals in the recipe's cell, their graphs, rejects, atoms without a
    neighbour by crystal id).
    """
    starts = crystals.atom_slices()
    graphs, kept, lattices, frac_coords, rejects, lonely = [], [], [], [], [], {}
    for row in range(len(crystals.ids)):
        atoms = slice(starts[row], starts[row + 1])
        try:
            crystal = featurize_crystal(
                crystals.lattices[row], crystals.frac_coords[atoms], crystals.atomic_numbers[atoms], params
            )
        except IsolatedAtomError as error:
            rejects.append(Reject(crystals.ids[row], ALL_TASKS, f"isolated atom: {error}"))
            continue
        without = crystal.graph.atoms_without_neighbours(atoms.stop - atoms.start)
        if without.size:
            lonely[crystals.ids[row]] = int(without.size)
        graphs.append(crystal.graph)
        kept.append(row)
        lattices.append(crystal.lattice)
        frac_coords.append(crystal.frac_coords)
    featurized = crystals.take(np.array(kept, dtype=np.int64))
    featurized.lattices = np.array(lattices, dtype=np.float64).reshape(-1, 3, 3)
    featurized.frac_coords = np.concatenate(frac_coords) if frac_coords else np.zeros((0, 3))
    return featurized, stack_graphs(graphs), rejects, lonely


def graph_counts(graphs: GraphColumns, lonely: dict[str, int]) -> dict[str, int]:
    """Counts of a shard's graphs (``prdnet.graphs`` metadata)."""
    return {
        "crystals": int(len(graphs.edge_counts)),
        "edges": int(graphs.edge_counts.sum()),
        "atoms_without_neighbours": int(sum(lonely.values())),
        "crystals_with_atoms_without_neighbours": len(lonely),
    }


def _featurize_shard(
    job: tuple[CrystalColumns, GraphParams, Path, dict[str, Any]],
) -> tuple[list[Reject], dict[str, int]]:
    crystals, params, path, metadata = job
    featurized, graphs, rejects, lonely = build_graphs(crystals, params)
    write_parquet(path, crystals_table(featurized, graphs), {**metadata, "prdnet.graphs": graph_counts(graphs, lonely)})
    return rejects, lonely


def _lonely_csv(lonely: dict[str, int]) -> str:
    lines = ["id,atoms_without_neighbours"]
    lines += [f"{material_id},{count}" for material_id, count in sorted(lonely.items())]
    return "\n".join(lines) + "\n"


def featurize_dataset(
    structures_path: str | Path, out_dir: str | Path, params: GraphParams, n_shards: int, workers: int = 1
) -> dict[str, Any]:
    """Featurize ``structures.parquet`` by one recipe into ``out_dir/shard-XXX.parquet``, a
    ``manifest.json``, ``rejects.csv`` and ``no_neighbour_atoms.csv``."""
    out_dir = Path(out_dir)
    crystals = read_crystals(pq.read_table(structures_path))
    summary = read_parquet_metadata(structures_path).get("prdnet.summary", {})
    assignment = np.array([shard_index(i, n_shards) for i in crystals.ids], dtype=np.int64)
    jobs = []
    for index in range(n_shards):
        metadata = {
            "prdnet.featurizer": params.identity(),
            "prdnet.shard": {"index": index, "n_shards": n_shards, "set": shard_set_digest(params, n_shards)},
            "prdnet.summary": summary,
        }
        rows = np.flatnonzero(assignment == index)
        jobs.append((crystals.take(rows), params, out_dir / shard_file_name(index), metadata))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_featurize_shard, jobs))
    else:
        results = [_featurize_shard(job) for job in jobs]
    rejects = [r for part, _ in results for r in part]
    lonely = {material_id: count for _, part in results for material_id, count in part.items()}
    write_text(out_dir / "rejects.csv", rejects_csv(rejects))
    write_text(out_dir / "no_neighbour_atoms.csv", _lonely_csv(lonely))
    manifest = {
        "featurizer": params.identity(),
        "n_shards": n_shards,
        "crystals": len(crystals.ids) - len(rejects),
        "graph_rejects": len(rejects),
        "atoms_without_neighbours": int(sum(lonely.values())),
        "crystals_with_atoms_without_neighbours": len(lonely),
        "shards": [shard_file_name(i) for i in range(n_shards)],
        # SHA-256 of each shard's bytes, checked whenever a shard is read (verify_shards)
        "checksums": {shard_file_name(i): file_digest(out_dir / shard_file_name(i)) for i in range(n_shards)},
        "validation": summary,
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


class CorruptShardError(ValueError):
    """A graph shard that cannot be opened or whose bytes are not those the featurize step wrote."""


def _corrupt(path: str | Path, what: str) -> CorruptShardError:
    return CorruptShardError(f"graph shard {path} {what}: it is corrupt or half-written; delete it and re-run the "
                             "featurize step (the workflow rebuilds it; no finished training job is lost)")


def verify_shards(paths: list[str | Path]) -> None:
    """Check each shard's bytes against the SHA-256 its folder's ``manifest.json`` recorded when it
    was written (shard sets from before checksums have none to check). Raises
    :class:`CorruptShardError` naming the shard and the fix."""
    manifests: dict[Path, dict[str, str]] = {}
    for path in map(Path, paths):
        if path.parent not in manifests:
            manifest = path.parent / "manifest.json"
            manifests[path.parent] = json.loads(manifest.read_text()).get("checksums", {}) if manifest.is_file() else {}
        expected = manifests[path.parent].get(path.name)
        if expected is None:
            continue
        try:
            found = file_digest(path)
        except OSError as error:
            raise _corrupt(path, f"cannot be read ({error})") from error
        if found != expected:
            raise _corrupt(path, f"has SHA-256 {found[:12]}…, not the {expected[:12]}… recorded in its manifest.json")


def read_shards(paths: list[str | Path], verify: bool = True) -> tuple[CrystalColumns, GraphColumns]:
    """Read shards into flat columns.

    A half-written or corrupt shard (its bytes differ from those recorded in the manifest, or it
    cannot be opened) gives an error naming the file and the fix; a mix of shards built with
    different featurizer parameters is refused. ``verify=False`` skips the checksums where the
    caller has just verified them (:func:`check_shard_recipe`).
    """
    if verify:
        verify_shards(paths)
    tables, identities = [], {}
    for path in paths:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise _corrupt(path, f"cannot be read ({error})") from error
        identities[str(path)] = decode_metadata(table.schema).get("prdnet.featurizer")
        tables.append(table)
    if len({json.dumps(v, sort_keys=True) for v in identities.values()}) > 1:
        raise ValueError(f"graph shards were built with different featurizer parameters: {identities}")
    table = pa.concat_tables(tables)
    return read_crystals(table), read_graphs(table)


def shard_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe identity (:meth:`GraphParams.identity`) a shard was built with (an unreadable
    shard is a :class:`CorruptShardError` naming it)."""
    try:
        return read_parquet_metadata(path).get("prdnet.featurizer", {})
    except (pa.ArrowInvalid, OSError) as error:
        raise _corrupt(path, f"cannot be read ({error})") from error


def check_shard_recipe(paths: list[str | Path], params: GraphParams) -> None:
    """Raise ``ValueError`` naming the shard if any was built with another recipe than ``params``
    (a training job given the shards of another model's recipe), or is corrupt."""
    verify_shards(paths)
    expected = params.identity()
    for path in paths:
        found = shard_recipe(path)
        if found != expected:
            raise ValueError(f"graph shard {path} was built with recipe {found}, but the model's recipe is {expected}")
