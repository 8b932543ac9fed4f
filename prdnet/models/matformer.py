"""Matformer backbone (K. Yan, Y. Liu, Y. Lin and S. Ji, "Periodic Graph Transformers for
Crystal Material Property Prediction", NeurIPS 2022), the periodic graph transformer PRDNet
grew from, on our periodic graph.

Graph: the shard's k-NN edges j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i) plus, when
``lattice_edges`` is true (the paper's choice), Matformer's self-connecting edges that encode
the lattice: every atom i is joined to its own images one cell away, offsets ±a, ±b, ±c, with
lengths |a|, |b|, |c|. **These depend on the cell basis**: another primitive basis of the
same lattice (a' = a + b) or a supercell (|2a|) gives other edges and other predictions; the
invariance audit (``python -m prdnet.audit``) measures it, and ``lattice_edges: false`` gives
the invariant variant.

Edge features: e_ij = W₂ softplus(W₁ RBF(−0.75/d_ij)), RBF of 128 (paper) centres on [−4, 0]
(:func:`prdnet.models.basis.inverse_distance`).

Matformer layer, per head (H heads of width D = F):
    q_i = W_q h_i,  k_i = W_k h_i,  v_i = W_v h_i,  ε_ij = W_e e_ij
    q̂_ij = q_i ‖ q_i ‖ q_i,  k̂_ij = k_i ‖ k_j ‖ ε_ij,  v̂_ij = v_i ‖ v_j ‖ ε_ij       ([3D])
    α_ij = q̂_ij ⊙ k̂_ij / √(3D)                                          (element-wise)
    m_ij = LN(W_m ((W_u v̂_ij) ⊙ σ(LN(α_ij))))                           ([D])
    h_i ← softplus(h_i + BN(W_c ‖_heads Σ_j m_ij))
PRDNet's layer (:mod:`prdnet.models.prdnet`) is this one with bond-angle features, a gated
residual and SiLU. Readout: mean pooling, then the shared head (Matformer: Linear + SiLU + Linear).

Default size (``paper`` preset, Matformer's paper and reference code): 5 layers, F = 128,
H = 4 heads, 128 edge RBFs, head 128. Matformer embeds CGCNN's 92 element attributes with a
linear map; here a learned embedding of Z. Published: 2.9M parameters (ComFormer paper's cost
table). Cost per layer: O(E · H · D · 3D).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, inverse_distance, linear_centers, spacing_width

SELF_OFFSETS = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
"""Image offsets of Matformer's self-connecting lattice edges (±a, ±b, ±c)."""


def with_lattice_edges(edge_index: torch.Tensor, edge_offset: torch.Tensor, num_nodes: int):
    """``edge_index`` [2, E] and ``edge_offset`` [E, 3] with 6 self-edges i → i per atom appended,
    offsets ±a, ±b, ±c (:data:`SELF_OFFSETS`). Returns [2, E + 6N] and [E + 6N, 3]."""
    atoms = torch.arange(num_nodes, device=edge_index.device).repeat_interleave(len(SELF_OFFSETS))
    offsets = SELF_OFFSETS.to(edge_offset.device, edge_offset.dtype).repeat(num_nodes, 1)
    return torch.cat([edge_index, torch.stack([atoms, atoms])], 1), torch.cat([edge_offset, offsets], 0)


class MatformerLayer(nn.Module):
    """One Matformer attention layer (formulas in the module docstring)."""

    def __init__(self, channels: int, heads: int, edge_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, channels
        inner = heads * channels
        self.query = nn.Linear(channels, inner)
        self.key = nn.Linear(channels, inner)
        self.value = nn.Linear(channels, inner)
        self.edge = nn.Linear(edge_dim, inner)
        self.score_norm = nn.LayerNorm(3 * channels)
        self.value_update = nn.Linear(3 * channels, 3 * channels)
        self.message = nn.Sequential(nn.Linear(3 * channels, channels), nn.LayerNorm(channels))
        self.concat = nn.Linear(inner, channels)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        neighbour, centre = edge_index[0], edge_index[1]
        shape = (-1, self.heads, self.head_dim)
        q, k, v = self.query(h).view(shape), self.key(h).view(shape), self.value(h).view(shape)
        e = self.edge(edge_attr).view(shape)
        query = q[centre].repeat(1, 1, 3)
        key = torch.cat([k[centre], k[neighbour], e], dim=-1)
        value = torch.cat([v[centre], v[neighbour], e], dim=-1)
        alpha = query * key / math.sqrt(3 * self.head_dim)
        messages = self.message(self.value_update(value) * torch.sigmoid(self.score_norm(alpha)))
        aggregated = h.new_zeros(h.shape[0], *messages.shape[1:]).index_add_(0, centre, messages)
        return nn.functional.softplus(h + self.norm(self.concat(aggregated.flatten(1))))


class Matformer(nn.Module):
    """Matformer backbone: atom embedding → ``layers`` attention layers → h [N, F].

    Args:
        channels: node width F (paper: 128).
        layers: attention layers (paper: 5).
        heads: heads H (paper: 4).
        rbf_bins: RBF centres of −0.75/d on [−4, 0] (paper: 128).
        max_atomic_number: largest atomic number the embedding table holds.
        lattice_edges: add the self-connecting lattice edges (paper: true; basis-dependent).
    """

    def __init__(
        self, channels: int, layers: int, heads: int, rbf_bins: int, max_atomic_number: int, lattice_edges: bool
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.lattice_edges = lattice_edges
        self.register_buffer("rbf_centers", linear_centers(-4.0, 0.0, rbf_bins).float())
        self.rbf_width = spacing_width(-4.0, 0.0, rbf_bins)
        self.embedding = nn.Embedding(max_atomic_number + 1, channels)
        self.edge_embedding = nn.Sequential(
            nn.Linear(rbf_bins, channels), nn.Softplus(), nn.Linear(channels, channels)
        )
        self.layers = nn.ModuleList(MatformerLayer(channels, heads, channels) for _ in range(layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings h [N, F]."""
        h = self.embedding(batch.atomic_numbers)
        edge_index, edge_offset = batch.edge_index, batch.edge_offset
        if self.lattice_edges:
            edge_index, edge_offset = with_lattice_edges(edge_index, edge_offset, h.shape[0])
        frac_coords, lattice = crystal_geometry(batch, h.dtype)
        _, distances = edge_geometry(frac_coords, lattice, edge_index, edge_offset, batch.batch)
        edge_attr = self.edge_embedding(gaussian_basis(inverse_distance(distances), self.rbf_centers, self.rbf_width))
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h
