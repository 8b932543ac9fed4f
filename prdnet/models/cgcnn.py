"""CGCNN backbone (T. Xie and J. C. Grossman, Phys. Rev. Lett. 120, 145301, 2018).

For messages j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i):

    u_ij = exp(−(d_ij − μ_c)² / σ²),  μ_c on [0, rbf_cutoff] Å     (Gaussian distance expansion;
                                                                     CGCNN's own form, σ² = rbf_width²)
    z_ij = v_i ⊕ v_j ⊕ u_ij
    [f_ij ‖ s_ij] = BN₁(W z_ij + b)                                  (one linear map, split in two)
    v_i ← softplus(v_i + BN₂(Σ_j σ(f_ij) ⊙ softplus(s_ij)))

with the batch norms and the outer softplus of the reference implementation
(``cgcnn/model.py``). Atoms are embedded from their atomic number by a learned table (the
original uses a fixed 92-dimensional element descriptor followed by a linear map). Mean
pooling and the head (CGCNN's ``conv_to_fc`` + softplus + ``fc_out``) are the shared
:class:`prdnet.models.base.CrystalPropertyModel`.

Cost per layer: O(E · F²) time, O(E · F) memory.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, linear_centers


def cgcnn_distance_expansion(distances: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """CGCNN's Gaussian filter u_c(d) = exp(−(d − μ_c)² / σ²) (d, μ, σ in Å), [E, C].

    Note σ² rather than the 2σ² of :func:`prdnet.models.basis.gaussian_basis`, as in the paper.
    """
    return gaussian_basis(distances, centers, width / 2**0.5)


class CGCNNConv(nn.Module):
    """One gated CGCNN convolution (formula in the module docstring)."""

    def __init__(self, channels: int, edge_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * channels + edge_dim, 2 * channels)
        self.edge_norm = nn.BatchNorm1d(2 * channels)
        self.node_norm = nn.BatchNorm1d(channels)

    def forward(self, v: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """Updated node embeddings [N, F] from v [N, F], edges [2, E] and u_ij [E, edge_dim]."""
        neighbour, centre = edge_index[0], edge_index[1]
        z = torch.cat([v[centre], v[neighbour], edge_attr], dim=-1)
        filter_part, core_part = self.edge_norm(self.linear(z)).chunk(2, dim=-1)
        messages = torch.sigmoid(filter_part) * nn.functional.softplus(core_part)
        summed = torch.zeros_like(v).index_add_(0, centre, messages)
        return nn.functional.softplus(v + self.node_norm(summed))


class CGCNN(nn.Module):
    """CGCNN backbone: atom embedding → ``layers`` gated convolutions → v [N, F].

    Args:
        channels: atom feature width F (CGCNN's ``atom_fea_len``).
        layers: number of convolutions (``n_conv``).
        max_atomic_number: largest atomic number the embedding table holds.
        rbf_bins, rbf_cutoff, rbf_width: Gaussian distance expansion (count, last centre Å,
            σ Å; CGCNN uses 0–8 Å in 0.2 Å steps, σ = 0.2 Å, i.e. 41 bins).
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        max_atomic_number: int,
        rbf_bins: int,
        rbf_cutoff: float,
        rbf_width: float,
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.rbf_width = rbf_width
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.embedding = nn.Embedding(max_atomic_number + 1, channels)
        self.layers = nn.ModuleList(CGCNNConv(channels, rbf_bins) for _ in range(layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings v [N, F]."""
        v = self.embedding(batch.atomic_numbers)
        frac_coords, lattice = crystal_geometry(batch, v.dtype)
        _, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        edge_attr = cgcnn_distance_expansion(distances, self.rbf_centers, self.rbf_width)
        for layer in self.layers:
            v = layer(v, batch.edge_index, edge_attr)
        return v
