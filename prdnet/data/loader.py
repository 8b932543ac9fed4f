"""From graph shards (or a pymatgen structure) to torch_geometric ``Data`` and batches.

Each crystal becomes a ``Data`` with

- ``atomic_numbers`` [N] long; ``frac_coords`` [N, 3]; ``lattice`` [1, 3, 3] (rows a, b, c, Å),
  so a batch holds ``lattice`` [B, 3, 3];
- ``edge_index`` [2, E] long: row 0 the neighbour (source) j, row 1 the centre (target) i;
- ``edge_offset`` [E, 3] long, the periodic image of j, and ``edge_distance`` [E] (Å); the
  edge vector is ``prdnet.geometry.edge_vectors(frac_coords, lattice, edge_index, edge_offset, batch)``;
- ``y`` [1] (float for regression, long for classification) when a task is chosen;
- ``material_id``, the crystal's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from prdnet.data.graphs import GraphParams, featurize_crystal
from prdnet.data.shards import read_shards
from prdnet.data.tables import CrystalColumns, GraphColumns


def _crystal_data(
    material_id: str,
    atomic_numbers: torch.Tensor,
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    offset: torch.Tensor,
    distance: torch.Tensor,
    y: torch.Tensor | None,
) -> Data:
    data = Data(
        atomic_numbers=atomic_numbers,
        frac_coords=frac_coords,
        lattice=lattice.reshape(1, 3, 3),
        edge_index=torch.stack([source, target]),
        edge_offset=offset,
        edge_distance=distance,
        material_id=material_id,
        num_nodes=atomic_numbers.shape[0],
    )
    if y is not None:
        data.y = y
    return data


def columns_to_data(
    crystals: CrystalColumns,
    graphs: GraphColumns,
    task: str | None = None,
    classification: bool = False,
    dtype: torch.dtype = torch.float32,
) -> list[Data]:
    """One ``Data`` per crystal, sliced from whole-column tensors (no per-row parsing)."""
    atomic_numbers = torch.tensor(crystals.atomic_numbers, dtype=torch.long)
    frac_coords = torch.tensor(crystals.frac_coords, dtype=dtype)
    lattices = torch.tensor(crystals.lattices, dtype=dtype)
    source = torch.tensor(graphs.source, dtype=torch.long)
    target = torch.tensor(graphs.target, dtype=torch.long)
    offset = torch.tensor(graphs.offset, dtype=torch.long)
    distance = torch.tensor(graphs.distance, dtype=dtype)
    if task is not None:
        values = torch.as_tensor(crystals.targets[task])
        targets = values.long() if classification else values.to(dtype)
    atom_starts = crystals.atom_slices()
    edge_starts = np.concatenate(([0], np.cumsum(graphs.edge_counts)))
    data = []
    for row, material_id in enumerate(crystals.ids):
        atoms = slice(atom_starts[row], atom_starts[row + 1])
        edges = slice(edge_starts[row], edge_starts[row + 1])
        data.append(
            _crystal_data(
                material_id,
                atomic_numbers[atoms],
                frac_coords[atoms],
                lattices[row],
                source[edges],
                target[edges],
                offset[edges],
                distance[edges],
                None if task is None else targets[row : row + 1],
            )
        )
    return data


def select_data(
    crystals: CrystalColumns,
    graphs: GraphColumns,
    task: str | None = None,
    ids: Sequence[str] | None = None,
    classification: bool = False,
    dtype: torch.dtype = torch.float32,
) -> list[Data]:
    """``Data`` for the crystals of read shards, in the order of ``ids`` if given.

    Raises ``KeyError`` naming the ids that are in ``ids`` but in no shard, and
    ``ValueError`` if a requested crystal has no finite target for ``task``.
    """
    if ids is not None:
        position = {material_id: row for row, material_id in enumerate(crystals.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise KeyError(f"{len(missing)} requested ids are in no graph shard, e.g. {missing[:5]}")
        rows = np.array([position[i] for i in ids], dtype=np.int64)
        crystals, graphs = crystals.take(rows), graphs.take(rows)
    if task is not None and not np.all(np.isfinite(crystals.targets[task])):
        bad = [i for i, v in zip(crystals.ids, crystals.targets[task]) if not np.isfinite(v)]
        raise ValueError(f"{len(bad)} crystals have no finite {task} target, e.g. {bad[:5]}")
    return columns_to_data(crystals, graphs, task, classification, dtype)


def load_graph_data(
    shard_paths: Sequence[str | Path],
    task: str | None = None,
    ids: Sequence[str] | None = None,
    classification: bool = False,
    dtype: torch.dtype = torch.float32,
) -> list[Data]:
    """Read shards and give the ``Data`` of :func:`select_data`."""
    crystals, graphs = read_shards(list(shard_paths))
    return select_data(crystals, graphs, task, ids, classification, dtype)


def structure_to_data(
    structure: Structure,
    targets: dict[str, float] | None = None,
    task: str | None = None,
    params: GraphParams = GraphParams(),
    dtype: torch.dtype = torch.float64,
    material_id: str = "",
) -> Data:
    """The ``Data`` of one pymatgen structure as the featurizer stores it under recipe ``params``:
    the recipe's cell (canonical or stored) and the graph built in it
    (:func:`prdnet.data.graphs.featurize_crystal`, the function the shards are built with)."""
    numbers = np.asarray(structure.atomic_numbers)
    crystal = featurize_crystal(structure.lattice.matrix, structure.frac_coords, numbers, params)
    graph = crystal.graph
    y = None
    if task is not None and targets is not None:
        y = torch.tensor([targets[task]], dtype=dtype)
    return _crystal_data(
        material_id,
        torch.as_tensor(numbers, dtype=torch.long),
        torch.as_tensor(crystal.frac_coords, dtype=dtype),
        torch.as_tensor(crystal.lattice, dtype=dtype),
        torch.as_tensor(graph.source, dtype=torch.long),
        torch.as_tensor(graph.target, dtype=torch.long),
        torch.as_tensor(graph.offset, dtype=torch.long),
        torch.as_tensor(graph.distance, dtype=dtype),
        y,
    )


def make_loader(data: list[Data], batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A torch_geometric ``DataLoader``; shuffling is seeded so runs repeat."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
