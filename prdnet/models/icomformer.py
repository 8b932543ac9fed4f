"""iComFormer backbone (K. Yan, C. Fu, X. Qian, X. Qian and S. Ji, "Complete and Efficient Graph
Transformers for Crystal Material Property Prediction", ICLR 2024): the SE(3)-invariant
ComFormer, on our periodic graph.

Graph and features: the shard's k-NN edges j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i)
with bond vector v_ij (Å), and, for every edge, the three lattice vectors l_1, l_2, l_3 of the
crystal's cell (iComFormer's lattice-aware edge features):
    e_ij  = softplus(W_d RBF(−0.75/|v_ij|))                  (RBF centres on [−4, 0])
    λ_ijk = softplus(W_d RBF(−0.75/|l_k|))                   (k = 1, 2, 3; same map as e_ij)
    θ_ijk = softplus(W_a RBF(cos∠(v_ij, l_k)))               (RBF centres on [−1, 1])
**The lattice vectors are those of the cell as stored**, so λ and θ depend on the cell basis:
another primitive basis (a' = a + b) or a supercell changes them, and so does writing a
mirror image in a right-handed basis (l_k → −M l_k flips every cos∠(v, l_k)). The paper's
invariance statement is for rotations and translations of one given cell; the invariance
audit (``python -m prdnet.audit``) measures the rest.

Node-wise transformer layer (``layers`` of them; heads H of width D = F):
    q_i = W_q h_i,  k_i = W_k h_i,  v_i = W_v h_i,  ε_ij = W_e e_ij
    α_ij = q_i ⊙ ξ_K(k_i ‖ k_j ‖ ε_ij) / √D                      (ξ: Linear 3D→D, SiLU, Linear D→D)
    m_ij = σ(BN(α_ij)) ⊙ ξ_V(v_i ‖ v_j ‖ ε_ij)
    h_i ← softplus(h_i + BN(W_c ‖_heads Σ_j m_ij))
Edge-wise transformer layer (once, after the first node-wise layer), each edge attending to
its three lattice vectors:
    q_ij = W_q e_ij,  κ_ijk = ξ_K(W_k e_ij ‖ W_λ λ_ijk),  α_ijk = q_ij ⊙ κ_ijk / √D
    m_ij = Σ_k σ(BN(α_ijk)) ⊙ ξ_V(W_λ λ_ijk ‖ W_θ θ_ijk)
    e_ij ← softplus(e_ij + BN(W_c m_ij))
Readout: mean pooling, then the shared head (ComFormer: Linear + SiLU + Linear).

Default size (``paper`` preset, the reference code's ``iComformerConfig``): 4 node-wise
layers, 1 edge-wise layer, F = 256, 256 RBF centres for lengths and angles, 1 head, head 256.
The atom input (CGCNN's 92 element attributes) is a learned embedding of Z here. Published:
4.1M parameters (ComFormer paper's cost table). Cost: O(E · H · D²) per node-wise layer,
O(3E · D²) for the edge-wise layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, inverse_distance, linear_centers, spacing_width


def xi(channels: int) -> nn.Sequential:
    """ComFormer's two-layer update ξ: Linear(3D → D), SiLU, Linear(D → D)."""
    return nn.Sequential(nn.Linear(3 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))


class NodeLayer(nn.Module):
    """iComFormer's node-wise transformer layer (module docstring)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, channels
        inner = heads * channels
        self.query, self.key, self.value = (nn.Linear(channels, inner) for _ in range(3))
        self.edge = nn.Linear(channels, inner)
        self.key_update, self.value_update = xi(channels), xi(channels)
        self.score_norm = nn.BatchNorm1d(channels)
        self.concat = nn.Linear(inner, channels)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        neighbour, centre = edge_index[0], edge_index[1]
        shape = (-1, self.heads, self.head_dim)
        q, k, v = self.query(h).view(shape), self.key(h).view(shape), self.value(h).view(shape)
        eps = self.edge(e).view(shape)
        key = self.key_update(torch.cat([k[centre], k[neighbour], eps], dim=-1))
        value = self.value_update(torch.cat([v[centre], v[neighbour], eps], dim=-1))
        alpha = q[centre] * key / math.sqrt(self.head_dim)
        gate = torch.sigmoid(self.score_norm(alpha.reshape(-1, self.head_dim)).view(shape))
        aggregated = h.new_zeros(h.shape[0], self.heads, self.head_dim).index_add_(0, centre, gate * value)
        return nn.functional.softplus(h + self.norm(self.concat(aggregated.flatten(1))))


class EdgeLayer(nn.Module):
    """iComFormer's edge-wise transformer layer: each edge attends to its 3 lattice vectors."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.query, self.key = nn.Linear(channels, channels), nn.Linear(channels, channels)
        self.length, self.angle = nn.Linear(channels, channels), nn.Linear(channels, channels)
        self.key_update = nn.Sequential(nn.Linear(2 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.value_update = nn.Sequential(nn.Linear(2 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.score_norm = nn.BatchNorm1d(channels)
        self.concat = nn.Linear(channels, channels)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, e: torch.Tensor, lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Updated e [E, F] from e [E, F], λ [E, 3, F] and θ [E, 3, F]."""
        lam = self.length(lengths)
        query = self.query(e).unsqueeze(1)
        key = self.key_update(torch.cat([self.key(e).unsqueeze(1).expand_as(lam), lam], dim=-1))
        value = self.value_update(torch.cat([lam, self.angle(angles)], dim=-1))
        alpha = query * key / math.sqrt(self.channels)
        gate = torch.sigmoid(self.score_norm(alpha.reshape(-1, self.channels)).view_as(alpha))
        return nn.functional.softplus(e + self.norm(self.concat((gate * value).sum(1))))


class IComFormer(nn.Module):
    """iComFormer backbone: embedding → node layer → edge layer → node layers → h [N, F].

    Args:
        channels: node and edge width F (paper: 256).
        layers: node-wise layers (paper: 4; the edge-wise layer follows the first).
        heads: heads of the node-wise layers (paper: 1).
        rbf_bins: RBF centres of −0.75/length on [−4, 0] (paper: 256).
        angle_bins: RBF centres of cos∠(v_ij, l_k) on [−1, 1] (paper: 256).
        max_atomic_number: largest atomic number the embedding table holds.
    """

    def __init__(
        self, channels: int, layers: int, heads: int, rbf_bins: int, angle_bins: int, max_atomic_number: int
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.register_buffer("rbf_centers", linear_centers(-4.0, 0.0, rbf_bins).float())
        self.register_buffer("angle_centers", linear_centers(-1.0, 1.0, angle_bins).float())
        self.rbf_width = spacing_width(-4.0, 0.0, rbf_bins)
        self.angle_width = spacing_width(-1.0, 1.0, angle_bins)
        self.embedding = nn.Embedding(max_atomic_number + 1, channels)
        self.distance_embedding = nn.Sequential(nn.Linear(rbf_bins, channels), nn.Softplus())
        self.angle_embedding = nn.Sequential(nn.Linear(angle_bins, channels), nn.Softplus())
        self.node_layers = nn.ModuleList(NodeLayer(channels, heads) for _ in range(layers))
        self.edge_layer = EdgeLayer(channels) if layers > 1 else None

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings h [N, F]."""
        h = self.embedding(batch.atomic_numbers)
        frac_coords, lattice = crystal_geometry(batch, h.dtype)
        vectors, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        embed_length = lambda x: self.distance_embedding(  # noqa: E731
            gaussian_basis(inverse_distance(x), self.rbf_centers, self.rbf_width)
        )
        e = embed_length(distances)
        for index, layer in enumerate(self.node_layers):
            h = layer(h, batch.edge_index, e)
            if index == 0 and self.edge_layer is not None:
                cell = lattice[batch.batch[batch.edge_index[1]]]  # [E, 3, 3], rows l_1, l_2, l_3
                cell_lengths = cell.norm(dim=-1)
                cosines = (cell * vectors.unsqueeze(1)).sum(-1) / (cell_lengths * distances.unsqueeze(1))
                cosines = cosines.clamp(-1.0, 1.0)
                angles = self.angle_embedding(gaussian_basis(cosines, self.angle_centers, self.angle_width))
                e = self.edge_layer(e, embed_length(cell_lengths), angles)
        return h
