"""Columnar (Arrow) layout of crystals and their graphs, one row per crystal.

Columns: ``id`` (string), ``atomic_numbers`` (list<int16>), ``frac_coords``
(list<3 doubles>), ``lattice`` (3×3 doubles, rows a, b, c in Å), one ``target.<task>`` double
column per task (null where missing), and for graph shards ``edge_source``, ``edge_target``
(list<int32>), ``edge_offset`` (list<3 int32>) and ``edge_distance`` (list<double>, Å).
Reading goes through whole columns (flattened numpy arrays plus per-row counts), never row by row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from prdnet.data.graphs import PeriodicGraph

TARGET_PREFIX = "target."


def ragged_rows(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat indices of the items of ``rows`` in a ragged array with per-row ``counts``, in row order.

    Vectorized: item j of the output belongs to row r = rows[k] and is start[r] + (its rank within r).
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)))[:-1]
    lengths = np.asarray(counts)[rows]
    first_of_each = np.concatenate(([0], np.cumsum(lengths)))[:-1]
    return np.repeat(starts[rows] - first_of_each, lengths) + np.arange(int(lengths.sum()))


@dataclass
class CrystalColumns:
    """C crystals with N atoms in all, as flat arrays."""

    ids: list[str]
    atom_counts: np.ndarray  # [C] int
    atomic_numbers: np.ndarray  # [N] int
    frac_coords: np.ndarray  # [N, 3] float64
    lattices: np.ndarray  # [C, 3, 3] float64, Å
    targets: dict[str, np.ndarray]  # task → [C] float64, NaN where missing

    def atom_slices(self) -> np.ndarray:
        """[C + 1] start offsets of each crystal's atoms in the flat arrays."""
        return np.concatenate(([0], np.cumsum(self.atom_counts)))

    def take(self, rows: np.ndarray) -> "CrystalColumns":
        """The crystals at ``rows`` (in that order)."""
        atoms = ragged_rows(self.atom_counts, rows)
        return CrystalColumns(
            ids=[self.ids[r] for r in rows],
            atom_counts=self.atom_counts[rows],
            atomic_numbers=self.atomic_numbers[atoms],
            frac_coords=self.frac_coords[atoms],
            lattices=self.lattices[rows],
            targets={task: values[rows] for task, values in self.targets.items()},
        )


@dataclass
class GraphColumns:
    """The graphs of C crystals with E edges in all, as flat arrays (atom indices local to each crystal)."""

    edge_counts: np.ndarray  # [C]
    source: np.ndarray  # [E] int32
    target: np.ndarray  # [E] int32
    offset: np.ndarray  # [E, 3] int32
    distance: np.ndarray  # [E] float64

    def take(self, rows: np.ndarray) -> "GraphColumns":
        """The graphs at ``rows`` (in that order)."""
        edges = ragged_rows(self.edge_counts, rows)
        return GraphColumns(self.edge_counts[rows], self.source[edges], self.target[edges], self.offset[edges], self.distance[edges])


def _list_array(values: np.ndarray, counts: np.ndarray, value_type: pa.DataType) -> pa.Array:
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    if values.ndim == 2:
        inner = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=value_type), values.shape[1])
    else:
        inner = pa.array(values, type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def crystals_table(crystals: CrystalColumns, graphs: GraphColumns | None = None) -> pa.Table:
    """Arrow table of the crystals (and their graphs), one row per crystal."""
    columns = {
        "id": pa.array(crystals.ids, type=pa.string()),
        "atomic_numbers": _list_array(crystals.atomic_numbers.astype(np.int16), crystals.atom_counts, pa.int16()),
        "frac_coords": _list_array(crystals.frac_coords.astype(np.float64), crystals.atom_counts, pa.float64()),
        "lattice": pa.FixedSizeListArray.from_arrays(pa.array(crystals.lattices.reshape(-1), type=pa.float64()), 9),
    }
    for task, values in crystals.targets.items():
        columns[TARGET_PREFIX + task] = pa.array(values, type=pa.float64(), from_pandas=True)
    if graphs is not None:
        columns["edge_source"] = _list_array(graphs.source, graphs.edge_counts, pa.int32())
        columns["edge_target"] = _list_array(graphs.target, graphs.edge_counts, pa.int32())
        columns["edge_offset"] = _list_array(graphs.offset, graphs.edge_counts, pa.int32())
        columns["edge_distance"] = _list_array(graphs.distance, graphs.edge_counts, pa.float64())
    return pa.table(columns)


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(flattened values, per-row counts) of a list column."""
    array = column.combine_chunks()
    counts = array.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    values = array.flatten()
    if isinstance(values.type, pa.FixedSizeListType):
        width = values.type.list_size
        return values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width), counts
    return values.to_numpy(zero_copy_only=False), counts


def read_crystals(table: pa.Table) -> CrystalColumns:
    """The crystal columns of a table written by :func:`crystals_table`."""
    atomic_numbers, atom_counts = _flat(table["atomic_numbers"])
    frac_coords, _ = _flat(table["frac_coords"])
    lattices = table["lattice"].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 3, 3)
    targets = {
        name[len(TARGET_PREFIX):]: table[name].to_numpy().astype(np.float64)
        for name in table.column_names
        if name.startswith(TARGET_PREFIX)
    }
    return CrystalColumns(
        ids=table["id"].to_pylist(),
        atom_counts=atom_counts,
        atomic_numbers=atomic_numbers.astype(np.int64),
        frac_coords=frac_coords,
        lattices=lattices,
        targets=targets,
    )


def read_graphs(table: pa.Table) -> GraphColumns:
    """The graph columns of a shard written by :func:`crystals_table` with graphs."""
    source, edge_counts = _flat(table["edge_source"])
    target, _ = _flat(table["edge_target"])
    offset, _ = _flat(table["edge_offset"])
    distance, _ = _flat(table["edge_distance"])
    return GraphColumns(edge_counts, source, target, offset, distance)


def stack_graphs(graphs: list[PeriodicGraph]) -> GraphColumns:
    """Concatenate per-crystal graphs into flat columns."""
    if not graphs:
        empty = np.zeros(0, dtype=np.int32)
        return GraphColumns(np.zeros(0, np.int64), empty, empty, np.zeros((0, 3), np.int32), np.zeros(0))
    return GraphColumns(
        edge_counts=np.array([len(g.source) for g in graphs], dtype=np.int64),
        source=np.concatenate([g.source for g in graphs]),
        target=np.concatenate([g.target for g in graphs]),
        offset=np.concatenate([g.offset for g in graphs]),
        distance=np.concatenate([g.distance for g in graphs]),
    )
