"""Atom inputs: CGCNN's fixed 92-dimensional element descriptors, or a learned embedding.

The official CGCNN, ALIGNN, Matformer, ComFormer and PRDNet code all start every atom from the
element feature table of CGCNN (Xie and Grossman 2018; ``atom_init.json`` of txie-93/cgcnn): one-hot
bins of group, period, electronegativity, covalent radius, valence electrons, first ionization
energy, electron affinity, block and atomic volume, 92 numbers per element. SchNet and MEGNet learn
an embedding of the atomic number instead.

    x_i = T[Z_i]          (fixed table T, [max_Z + 1, 92], a buffer saved with the weights)
    x_i = E[Z_i]          (learned table E, [max_Z + 1, embedding_dim])

Each model then applies the input projection of its own official code (e.g. CGCNN's
``Linear(92, atom_fea_len)``). A preset chooses with ``atom_input: cgcnn | embedding``; the
registry loads the table from the path in the configuration and passes it as ``atom_table``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

ATOM_INPUTS = ("cgcnn", "embedding")
"""The values of a preset's ``atom_input`` key."""


def load_atom_feature_table(path: str | Path, max_atomic_number: int = 100) -> torch.Tensor:
    """CGCNN's element table as a tensor [max_atomic_number + 1, F] (float32, F = 92).

    Row Z holds the entry of atomic number Z; rows without an entry (Z = 0 and any element the
    file lacks) are NaN, so that looking one up is detected rather than silently zero.
    Raises ``ValueError`` if the file is not a mapping of atomic numbers to equal-length lists.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"atom feature table {path}: cannot read it ({error})") from error
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"atom feature table {path}: expected a JSON object {{atomic number: [features]}}")
    widths = {len(row) for row in entries.values()}
    if len(widths) != 1:
        raise ValueError(f"atom feature table {path}: rows have different lengths {sorted(widths)}")
    table = torch.full((max_atomic_number + 1, widths.pop()), float("nan"))
    for key, row in entries.items():
        atomic_number = int(key)
        if 1 <= atomic_number <= max_atomic_number:
            table[atomic_number] = torch.tensor(row, dtype=torch.float32)
    return table


def atom_table_digest(table: torch.Tensor) -> str:
    """Short SHA-256 of a table's values: what a run records instead of the file's path."""
    return hashlib.sha256(table.numpy().tobytes()).hexdigest()[:12]


class AtomFeatures(nn.Module):
    """x_i = T[Z_i] from a fixed table, or a learned embedding E[Z_i] when ``table`` is None.

    Args:
        table: [max_Z + 1, F] element features (:func:`load_atom_feature_table`), or None.
        embedding_dim: width of the learned embedding (used only without a table).
        max_atomic_number: largest atomic number of the learned embedding.
    """

    def __init__(self, table: torch.Tensor | None, embedding_dim: int, max_atomic_number: int) -> None:
        super().__init__()
        self.embedding: nn.Embedding | None = None
        if table is None:
            self.register_buffer("table", None)
            self.embedding = nn.Embedding(max_atomic_number + 1, embedding_dim)
            self.out_channels = embedding_dim
        else:
            self.register_buffer("table", table.detach().clone().float())
            self.out_channels = int(table.shape[1])

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Atom inputs [N, out_channels] of atomic numbers [N]."""
        if self.embedding is not None:
            return self.embedding(atomic_numbers)
        if int(atomic_numbers.max()) >= self.table.shape[0]:
            raise ValueError(f"atomic number {int(atomic_numbers.max())} is beyond the atom feature table")
        features = self.table[atomic_numbers]
        if torch.isnan(features).any():
            missing = sorted({int(z) for z in atomic_numbers[torch.isnan(features).any(dim=1)]})
            raise ValueError(f"no atom features for atomic number(s) {missing} in the atom feature table")
        return features
