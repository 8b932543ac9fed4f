"""Featurization into Parquet graph shards, and reading them back.

A dataset's crystals are spread over ``n_shards`` files by a stable hash of their id
(SHA-256, so the assignment never changes between runs or machines). Each shard's schema
metadata holds the graph parameters and featurizer version (``prdnet.featurizer``), its
index (``prdnet.shard``) and the dataset's validation counts (``prdnet.summary``). Shard sets
live in a folder named by the digest of those parameters, so changing a parameter makes a
new set; reading refuses shards whose parameters differ.
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

from prdnet.data.graphs import GraphParams, IsolatedAtomError, periodic_knn_graph
from prdnet.data.prepare import rejects_csv
from prdnet.data.tables import CrystalColumns, GraphColumns, crystals_table, read_crystals, read_graphs, stack_graphs
from prdnet.data.validate import ALL_TASKS, Reject
from prdnet.io import decode_metadata, read_parquet_metadata, write_json, write_parquet, write_text


def shard_index(material_id: str, n_shards: int) -> int:
    """Shard of an id: the first 8 bytes of SHA-256(id) modulo ``n_shards``."""
    return int.from_bytes(hashlib.sha256(material_id.encode()).digest()[:8], "big") % n_shards


def shard_set_digest(params: GraphParams, n_shards: int) -> str:
    """Name of the shard set: graph parameters, featurizer version and shard count."""
    return f"{params.digest()}-n{n_shards}"


def shard_file_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:03d}.parquet"


def build_graphs(crystals: CrystalColumns, params: GraphParams) -> tuple[GraphColumns, np.ndarray, list[Reject]]:
    """Graphs of all crystals; returns (graphs of the kept crystals, kept row indices, rejects)."""
    starts = crystals.atom_slices()
    graphs, kept, rejects = [], [], []
    for row in range(len(crystals.ids)):
        frac = crystals.frac_coords[starts[row] : starts[row + 1]]
        try:
            graphs.append(periodic_knn_graph(crystals.lattices[row], frac, params))
            kept.append(row)
        except IsolatedAtomError as error:
            rejects.append(Reject(crystals.ids[row], ALL_TASKS, f"isolated atom: {error}"))
    return stack_graphs(graphs), np.array(kept, dtype=np.int64), rejects


def _featurize_shard(job: tuple[CrystalColumns, GraphParams, Path, dict[str, Any]]) -> list[Reject]:
    crystals, params, path, metadata = job
    graphs, kept, rejects = build_graphs(crystals, params)
    write_parquet(path, crystals_table(crystals.take(kept), graphs), metadata)
    return rejects


def featurize_dataset(
    structures_path: str | Path, out_dir: str | Path, params: GraphParams, n_shards: int, workers: int = 1
) -> dict[str, Any]:
    """Featurize ``structures.parquet`` into ``out_dir/shard-XXX.parquet`` and a ``manifest.json``."""
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
            rejects = [r for part in pool.map(_featurize_shard, jobs) for r in part]
    else:
        rejects = [r for job in jobs for r in _featurize_shard(job)]
    write_text(out_dir / "rejects.csv", rejects_csv(rejects))
    manifest = {
        "featurizer": params.identity(),
        "n_shards": n_shards,
        "crystals": len(crystals.ids) - len(rejects),
        "graph_rejects": len(rejects),
        "shards": [shard_file_name(i) for i in range(n_shards)],
        "validation": summary,
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def read_shards(paths: list[str | Path]) -> tuple[CrystalColumns, GraphColumns]:
    """Read shards into flat columns.

    A half-written or corrupt shard gives an error naming the file; a mix of shards built
    with different featurizer parameters is refused.
    """
    tables, identities = [], {}
    for path in paths:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise ValueError(
                f"cannot read graph shard {path}: {error}. It is corrupt or half-written; "
                "delete it and re-run the featurize step."
            ) from error
        identities[str(path)] = decode_metadata(table.schema).get("prdnet.featurizer")
        tables.append(table)
    if len({json.dumps(v, sort_keys=True) for v in identities.values()}) > 1:
        raise ValueError(f"graph shards were built with different featurizer parameters: {identities}")
    table = pa.concat_tables(tables)
    return read_crystals(table), read_graphs(table)
