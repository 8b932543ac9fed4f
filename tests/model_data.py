"""Real crystals from the embedded MP set as PyG batches, for the model tests.

Graphs come from the data layer's own ``structure_to_data`` (the periodic k-NN graph the
featurizer builds), so the models are tested on exactly what training feeds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import pytest
import torch
from torch_geometric.data import Batch, Data

from prdnet.audit import embedded_data_path, sample_structures
from prdnet.data.loader import structure_to_data


@lru_cache(maxsize=None)
def _embedded_data(n: int, max_atoms: int, task: str, classification: bool, dtype: torch.dtype) -> tuple[Data, ...]:
    data = []
    for material_id, structure, targets in sample_structures(embedded_data_path(), n, max_atoms):
        item = structure_to_data(structure, targets, task, dtype=dtype, material_id=material_id)
        if classification:
            item.y = item.y.long()
        data.append(item)
    return tuple(data)


def embedded_batch(
    n: int,
    max_atoms: int = 12,
    task: str = "formation_energy",
    classification: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Batch:
    """A batch of ``n`` embedded crystals with at most ``max_atoms`` atoms (seeded choice)."""
    return Batch.from_data_list(list(_embedded_data(n, max_atoms, task, classification, dtype)))


@pytest.fixture(scope="module", autouse=False)
def torch_single_thread() -> Iterator[None]:
    """Run a test module's small tensors on one thread (OpenMP on 2 busy cores is slower, not faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
