"""PRDNet's real-space branch: crystal attention with edge-aware multi-head gated messages.

Paper section "Crystal Attention Structure Modeling" (PRDNet, ICLR 2026), built on
Matformer's attention. For a crystal graph with messages j → i (``edge_index[0]`` = j,
``edge_index[1]`` = i):

Edge features (invariant, Å and unitless)
    e_ij = RBF(d_ij) ⊕ SBF_ij ⊕ d_ij
    RBF_c(d) = exp(−(d − μ_c)² / 2σ_r²),            μ_c on [0, rbf_cutoff] Å
    SBF_ij = mean_{k ≠ j} φ(cos θ_ijk),  φ_c(x) = exp(−(x − ν_c)² / 2σ_a²), ν_c on [−1, 1]
    where θ_ijk is the angle at centre i between bonds ij and ik (all other edges into i).

Attention layer, per head h of width D (H heads), with W_e shared by key and value:
    q_ij = [W_q h_i ‖ W_q h_i ‖ W_q h_i]
    k_ij = [W_k h_i ‖ W_k h_j ‖ W_e e_ij]
    v_ij = [W_v h_i ‖ W_v h_j ‖ W_e e_ij]
    α_ij = q_ij ⊙ k_ij / √(3D)                      (element-wise, [3D] per head)
    g_ij = σ(LayerNorm(α_ij))
    m_ij = (W_msg v_ij) ⊙ g_ij
    m_i  = Σ_{j ∈ N(i)} m_ij                        (sum aggregation, heads concatenated)
    u_i  = SiLU(BN(W_concat m_i))
    β_i  = σ(W_β [u_i ‖ h_i ‖ u_i − h_i])            (per channel)
    h_i ← β_i ⊙ h_i + (1 − β_i) ⊙ u_i

Ablations (paper Table "Ablation"): SingleHead sets H = 1; NoRes replaces the gated update by
h_i ← u_i; NoEdge drops the W_e e_ij slot from k and v (α then uses √(2D)) and the edge
features are not computed at all. NoDiff is the backbone without the diffraction plug-in
(see :mod:`prdnet.models.base`).

Cost per layer: O(E · H · 3D) memory and O(E · H · (3D)²) time for the messages; the angular
summary costs O(Σ_i c_i²) once per forward, for c_i edges into atom i (≈ 12–20).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import angular_summary, edge_geometry, gaussian_basis, linear_centers


def edge_features(
    vectors: torch.Tensor,
    distances: torch.Tensor,
    centre: torch.Tensor,
    num_nodes: int,
    rbf_centers: torch.Tensor,
    rbf_width: float,
    sbf_centers: torch.Tensor,
    sbf_width: float,
) -> torch.Tensor:
    """e_ij = RBF(d_ij) ⊕ SBF_ij ⊕ d_ij, [E, n_rbf + n_sbf + 1]; d in Å.

    SBF_ij is the mean over the other edges ik into the same centre i of a Gaussian basis of
    cos θ_ijk (:func:`prdnet.models.basis.angular_summary`).
    """
    radial = gaussian_basis(distances, rbf_centers, rbf_width)
    angular = angular_summary(vectors, centre, num_nodes, sbf_centers, sbf_width)
    return torch.cat([radial, angular, distances.unsqueeze(-1)], dim=-1)


class CrystalAttentionLayer(nn.Module):
    """One PRDNet attention layer (formulas in the module docstring).

    Args:
        channels: node width F.
        heads: number of heads H.
        head_dim: width D of each of the three slots of a head.
        edge_dim: width of e_ij (ignored when ``use_edge_features`` is false).
        use_edge_features: include the W_e e_ij slot in key and value (false = NoEdge).
        residual: learned gated residual update (false = NoRes).
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        edge_dim: int,
        use_edge_features: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.slots = 3 if use_edge_features else 2
        inner = heads * head_dim
        self.query = nn.Linear(channels, inner)
        self.key = nn.Linear(channels, inner)
        self.value = nn.Linear(channels, inner)
        self.edge = nn.Linear(edge_dim, inner, bias=False) if use_edge_features else None
        self.score_norm = nn.LayerNorm(self.slots * head_dim)
        self.message = nn.Linear(self.slots * head_dim, self.slots * head_dim)
        self.concat = nn.Linear(heads * self.slots * head_dim, channels)
        self.norm = nn.BatchNorm1d(channels)
        self.gate = nn.Linear(3 * channels, channels) if residual else None

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        """Updated node embeddings [N, F] from h [N, F], edges [2, E] and e_ij [E, edge_dim]."""
        neighbour, centre = edge_index[0], edge_index[1]
        shape = (-1, self.heads, self.head_dim)
        q, k, v = self.query(h).view(shape), self.key(h).view(shape), self.value(h).view(shape)
        keys, values = [k[centre], k[neighbour]], [v[centre], v[neighbour]]
        if self.edge is not None:
            e = self.edge(edge_attr).view(shape)
            keys.append(e)
            values.append(e)
        key, value = torch.cat(keys, dim=-1), torch.cat(values, dim=-1)
        query = q[centre].repeat(1, 1, self.slots)
        alpha = query * key / math.sqrt(self.slots * self.head_dim)
        messages = self.message(value) * torch.sigmoid(self.score_norm(alpha))
        aggregated = h.new_zeros(h.shape[0], *messages.shape[1:]).index_add_(0, centre, messages)
        update = nn.functional.silu(self.norm(self.concat(aggregated.flatten(1))))
        if self.gate is None:
            return update
        beta = torch.sigmoid(self.gate(torch.cat([update, h, update - h], dim=-1)))
        return beta * h + (1.0 - beta) * update


class PRDNet(nn.Module):
    """PRDNet crystal-attention backbone: atom embedding → L attention layers → h [N, F].

    Args:
        channels: node width F.
        layers: number of attention layers L.
        heads: heads H per layer (1 = SingleHead ablation).
        head_dim: width D of each head slot (the reference implementation uses D = F).
        max_atomic_number: largest atomic number the embedding table holds.
        rbf_bins, rbf_cutoff, rbf_width: Gaussian distance basis (count, last centre Å, σ Å).
        sbf_bins, sbf_width: Gaussian basis of cos θ_ijk (count on [−1, 1], σ unitless).
        use_edge_features: false = NoEdge ablation.
        residual: false = NoRes ablation.
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        heads: int,
        head_dim: int,
        max_atomic_number: int,
        rbf_bins: int,
        rbf_cutoff: float,
        rbf_width: float,
        sbf_bins: int,
        sbf_width: float,
        use_edge_features: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.use_edge_features = use_edge_features
        self.rbf_width, self.sbf_width = rbf_width, sbf_width
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.register_buffer("sbf_centers", linear_centers(-1.0, 1.0, sbf_bins).float())
        self.embedding = nn.Embedding(max_atomic_number + 1, channels)
        edge_dim = rbf_bins + sbf_bins + 1
        self.layers = nn.ModuleList(
            CrystalAttentionLayer(channels, heads, head_dim, edge_dim, use_edge_features, residual)
            for _ in range(layers)
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings h [N, F]."""
        h = self.embedding(batch.atomic_numbers)
        edge_attr = None
        if self.use_edge_features:
            frac_coords, lattice = crystal_geometry(batch, h.dtype)
            vectors, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
            edge_attr = edge_features(
                vectors,
                distances,
                batch.edge_index[1],
                h.shape[0],
                self.rbf_centers,
                self.rbf_width,
                self.sbf_centers,
                self.sbf_width,
            )
        for layer in self.layers:
            h = layer(h, batch.edge_index, edge_attr)
        return h
