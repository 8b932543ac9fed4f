"""ALIGNN backbone (K. Choudhary and B. DeCost, "Atomistic Line Graph Neural Network for improved
materials property predictions", npj Comput. Mater. 7, 185, 2021), on our periodic graph.

Two graphs, both built from the shard's edges without loops over atoms or crystals:
- the bond graph G: atoms, with the periodic k-NN edges j → i (``edge_index[0]`` = j,
  ``edge_index[1]`` = i), bond vector v_ij and length d_ij (Å);
- its line graph L(G): one node per bond, and one edge (ik) → (ij) for every ordered pair of
  distinct bonds into the same centre atom i (:func:`prdnet.models.basis.edge_pairs`: one
  stable sort of the bonds by centre), carrying the bond angle θ_jik at i,
  cos θ_jik = v_ij · v_ik / (d_ij d_ik). Σ_i c_i (c_i − 1) line-graph edges for c_i bonds
  into atom i. (ALIGNN's reference code takes DGL's line graph of the directed bond graph,
  pairing the bond into i with the bonds out of i; on our k-NN graph, which is not symmetric,
  pairing bonds into the same centre gives every angle at i between two of its neighbours.)

Features (RBF_c(x) = exp(−(x − μ_c)² / 2σ²), centres equally spaced):
    h_i⁰ = Embedding(Z_i)                                                   (atoms, [N, F])
    e_ij⁰ = MLP(MLP(RBF(d_ij)))     μ on [0, rbf_cutoff] Å                    (bonds, [E, F])
    t_jik⁰ = MLP(MLP(RBF(cos θ_jik)))  μ on [−1, 1]                           (angles, [T, F])
    MLP(x) = SiLU(BN(W x + b)); the inner MLP is ``embedding_dim`` wide.

Edge-gated graph convolution EGGC(nodes h, edges e) (paper eqs. 4–6), for edge j → i:
    ê_ij = W_s h_i + W_d h_j + W_e e_ij
    σ_ij = sigmoid(ê_ij)
    h_i ← h_i + SiLU(BN(W_u h_i + Σ_j σ_ij ⊙ W_v h_j / (Σ_j σ_ij + 10⁻⁶)))
    e_ij ← e_ij + SiLU(BN(ê_ij))

ALIGNN layer (``alignn_layers`` of them): EGGC on L(G) with nodes e and edges t (updates
bonds and angles), then EGGC on G with nodes h and the updated bonds e (the order of the
reference code). Then ``gcn_layers`` EGGC on G alone. Readout: mean of h, then a linear map
(the shared head with ``layers: 0``).

Invariant by construction (distances and angle cosines only).

Default size (``paper`` preset, the reference code's ``ALIGNNConfig``, the paper's Table 1):
4 ALIGNN layers, 4 GCN layers, hidden 256, embedding 64, 80 distance RBFs on [0, 8] Å, 40 angle
RBFs on [−1, 1]. The paper's atom input is CGCNN's 92 element attributes; here a learned
embedding of Z. Published: 4.0M parameters (ComFormer paper's cost table).
Cost: O((E + T) · F²) per ALIGNN layer, T ≈ 12–20 × E, so the line graph dominates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import bond_angle_cosines, edge_geometry, edge_pairs, gaussian_basis, linear_centers


def mlp_layer(width_in: int, width_out: int) -> nn.Sequential:
    """ALIGNN's MLP layer: SiLU(BN(W x + b))."""
    return nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.SiLU())


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution with residual node and edge updates (module docstring).

    ``update_edges=False`` for the last convolution whose edge output nothing reads (it
    returns e unchanged and has no edge BatchNorm, so every parameter gets a gradient).
    """

    def __init__(self, channels: int, update_edges: bool = True) -> None:
        super().__init__()
        self.gate_centre = nn.Linear(channels, channels)
        self.gate_neighbour = nn.Linear(channels, channels)
        self.gate_edge = nn.Linear(channels, channels)
        self.update_centre = nn.Linear(channels, channels)
        self.update_neighbour = nn.Linear(channels, channels)
        self.node_norm = nn.BatchNorm1d(channels)
        self.edge_norm = nn.BatchNorm1d(channels) if update_edges else None

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated (h [N, F], e [E, F]) for messages edge_index[0] → edge_index[1]."""
        neighbour, centre = edge_index[0], edge_index[1]
        gate = self.gate_centre(h)[centre] + self.gate_neighbour(h)[neighbour] + self.gate_edge(e)
        sigma = torch.sigmoid(gate)
        numerator = torch.zeros_like(h).index_add_(0, centre, sigma * self.update_neighbour(h)[neighbour])
        denominator = torch.zeros_like(h).index_add_(0, centre, sigma)
        update = self.update_centre(h) + numerator / (denominator + 1e-6)
        h = h + nn.functional.silu(self.node_norm(update))
        if self.edge_norm is not None:
            e = e + nn.functional.silu(self.edge_norm(gate))
        return h, e


class ALIGNNLayer(nn.Module):
    """EGGC on the line graph (bonds, angles), then EGGC on the bond graph (atoms, bonds)."""

    def __init__(self, channels: int, last_angles: bool = False, last_bonds: bool = False) -> None:
        super().__init__()
        self.line = EdgeGatedGraphConv(channels, update_edges=not last_angles)
        self.bond = EdgeGatedGraphConv(channels, update_edges=not last_bonds)

    def forward(self, h, e, t, edge_index, line_index):
        e, t = self.line(e, line_index, t)
        h, e = self.bond(h, edge_index, e)
        return h, e, t


class ALIGNN(nn.Module):
    """ALIGNN backbone: ALIGNN layers on bond graph + line graph, then GCN layers → h [N, F].

    Args:
        channels: hidden width F (paper: 256).
        alignn_layers: ALIGNN layers (paper: 4).
        gcn_layers: edge-gated convolutions on the bond graph alone (paper: 4).
        embedding_dim: inner width of the bond and angle embeddings (paper: 64).
        max_atomic_number: largest atomic number the embedding table holds.
        rbf_bins, rbf_cutoff: distance RBF (count on [0, rbf_cutoff] Å; paper: 80, 8 Å).
        angle_bins: angle-cosine RBF (count on [−1, 1]; paper: 40).
    The RBF widths are the centre spacing, as in the reference code (γ = 1/Δμ, i.e. σ = √(Δμ/2)).
    """

    def __init__(
        self,
        channels: int,
        alignn_layers: int,
        gcn_layers: int,
        embedding_dim: int,
        max_atomic_number: int,
        rbf_bins: int,
        rbf_cutoff: float,
        angle_bins: int,
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.register_buffer("angle_centers", linear_centers(-1.0, 1.0, angle_bins).float())
        self.rbf_width = (rbf_cutoff / max(rbf_bins - 1, 1) / 2) ** 0.5
        self.angle_width = (2.0 / max(angle_bins - 1, 1) / 2) ** 0.5
        self.embedding = nn.Embedding(max_atomic_number + 1, channels)
        self.edge_embedding = nn.Sequential(mlp_layer(rbf_bins, embedding_dim), mlp_layer(embedding_dim, channels))
        self.angle_embedding = nn.Sequential(mlp_layer(angle_bins, embedding_dim), mlp_layer(embedding_dim, channels))
        # The last update of the angles, and the last of the bonds, is read by nothing: skipped.
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(channels, last_angles=last, last_bonds=last and not gcn_layers)
            for last in (index == alignn_layers - 1 for index in range(alignn_layers))
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(channels, update_edges=index < gcn_layers - 1) for index in range(gcn_layers)
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Atom embeddings h [N, F]."""
        h = self.embedding(batch.atomic_numbers)
        frac_coords, lattice = crystal_geometry(batch, h.dtype)
        vectors, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        e = self.edge_embedding(gaussian_basis(distances, self.rbf_centers, self.rbf_width))
        if self.alignn_layers:
            first, second = edge_pairs(batch.edge_index[1], h.shape[0])
            line_index = torch.stack([second, first])  # message from bond ik to bond ij
            cosines = bond_angle_cosines(vectors, first, second)
            t = self.angle_embedding(gaussian_basis(cosines, self.angle_centers, self.angle_width))
            for layer in self.alignn_layers:
                h, e, t = layer(h, e, t, batch.edge_index, line_index)
        for layer in self.gcn_layers:
            h, e = layer(h, batch.edge_index, e)
        return h
