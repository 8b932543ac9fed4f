"""CGCNN backbone (T. Xie and J. C. Grossman, Phys. Rev. Lett. 120, 145301, 2018), as its official
code builds it (txie-93/cgcnn at f42ab23; ``cgcnn/model.py``, ``cgcnn/data.py``, ``main.py``).

For messages j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i):

    v_i⁰ = W_in x_i + b_in,  x_i = atom_init[Z_i] (92-d)        (model.py L106, L152: ``embedding``,
                                                                  a Linear on CGCNN's element table)
    u_ij = exp(−(d_ij − μ_c)² / σ²),  μ_c = 0, 0.2, …, 8 Å,       (data.py L154–196 ``GaussianDistance``,
           σ = 0.2 Å (41 centres)                                 L315: dmin 0, dmax = radius 8, step 0.2)
    z_ij = v_i ⊕ v_j ⊕ u_ij
    [f_ij ‖ s_ij] = BN₁(W z_ij + b)                              (model.py L26–27, L62–68: one linear
                                                                  map ``fc_full``, split in two)
    v_i ← softplus(v_i + BN₂(Σ_j σ(f_ij) ⊙ softplus(s_ij)))      (model.py L69–73)

Readout (model.py L155–163): g = softplus((1/N) Σ_i v_i) (mean pooling, L185; then the softplus
before ``conv_to_fc``, L156), here :meth:`CGCNN.encode`; the shared head then applies
``conv_to_fc`` → softplus → (``n_h − 1`` × Linear + softplus) → ``fc_out``, i.e. the head with
``hidden: h_fea_len``, ``layers: n_h``, ``activation: softplus``.

Default size (``paper`` preset): ``main.py`` L72–79 defaults, atom_fea_len 64, n_conv 3,
h_fea_len 128, n_h 1, on 92-d atom inputs and 41 Gaussians: 80,833 parameters, as the official
``CrystalGraphConvNet(92, 41)`` (counted by instantiating the official ``model.py``, which needs
only torch). Graph (recipe ``cgcnn`` in ``config/models.yaml``): every neighbour within 8 Å, the
12 nearest kept (data.py L300, L328–345: ``radius=8``, ``max_num_nbr=12``).

Deliberate deviations, each with its reason:
- Ties at the 12th neighbour are all kept (recipe ``max_neighbours: 12`` + tie rule), where the
  official code cuts a shell of equidistant neighbours at 12 in pymatgen's listing order
  (data.py L329, L342): the official cut depends on atom order and float noise, ours does not.
- An atom with fewer than 12 neighbours within 8 Å keeps only those; the official code pads its
  list with atom 0 of the crystal at 9 Å (data.py L332–340), a fictitious bond whose gate still
  passes a message from atom 0. Our data validation rejects atoms with no neighbour within 8 Å.
- Classification: the official model adds Dropout(0.5) after ``conv_to_fc`` (model.py L123,
  L159) and a LogSoftmax with NLL loss (≡ our cross-entropy on logits); the shared head has no
  dropout, so that one regularizer is absent (classification only).
- ``atom_input: embedding`` (not the official input) replaces the table by a learned embedding
  of Z, still followed by the input Linear.

Cost per layer: O(E · F²) time, O(E · F) memory.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_mean_pool

from prdnet.models.atom_features import AtomFeatures
from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, linear_centers


def cgcnn_distance_expansion(distances: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """CGCNN's Gaussian filter u_c(d) = exp(−(d − μ_c)² / σ²) (d, μ, σ in Å), [E, C].

    Note σ² rather than the 2σ² of :func:`prdnet.models.basis.gaussian_basis`, as in the
    official ``GaussianDistance.expand`` (``cgcnn/data.py`` L195–196, ``var`` = step = 0.2 Å).
    """
    return gaussian_basis(distances, centers, width / 2**0.5)


class CGCNNConv(nn.Module):
    """One gated CGCNN convolution (``ConvLayer``, ``cgcnn/model.py`` L7–74; formula in the
    module docstring)."""

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
    """CGCNN backbone: atom inputs → Linear → ``layers`` gated convolutions → v [N, F], and its
    own readout g = softplus(mean v) (:meth:`encode`).

    Args:
        channels: atom feature width F (CGCNN's ``atom_fea_len``).
        layers: number of convolutions (``n_conv``).
        max_atomic_number: largest atomic number of the learned embedding (without a table).
        rbf_bins, rbf_cutoff, rbf_width: Gaussian distance expansion (count, last centre Å,
            σ Å; CGCNN uses 0–8 Å in 0.2 Å steps, σ = 0.2 Å, i.e. 41 bins).
        atom_table: CGCNN's element table [max_Z + 1, 92]
            (:func:`prdnet.models.atom_features.load_atom_feature_table`), or None for a learned
            embedding of width ``channels``.
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        max_atomic_number: int,
        rbf_bins: int,
        rbf_cutoff: float,
        rbf_width: float,
        atom_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.pooled_channels = channels
        self.rbf_width = rbf_width
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.atom_features = AtomFeatures(atom_table, channels, max_atomic_number)
        self.atom_projection = nn.Linear(self.atom_features.out_channels, channels)
        self.layers = nn.ModuleList(CGCNNConv(channels, rbf_bins) for _ in range(layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings v [N, F] after the last convolution."""
        v = self.atom_projection(self.atom_features(batch.atomic_numbers))
        frac_coords, lattice = crystal_geometry(batch, v.dtype)
        _, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        edge_attr = cgcnn_distance_expansion(distances, self.rbf_centers, self.rbf_width)
        for layer in self.layers:
            v = layer(v, batch.edge_index, edge_attr)
        return v

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Node embeddings v [N, F] and the crystal vector g = softplus(mean_i v_i) [B, F]
        (``cgcnn/model.py`` L155–156: mean pooling, then the softplus before ``conv_to_fc``)."""
        v = self(batch)
        pooled = global_mean_pool(v, batch.batch, size=batch.num_graphs)
        return v, nn.functional.softplus(pooled)
