"""SchNet backbone (K. T. Schütt, H. E. Sauceda, P.-J. Kindermans, A. Tkatchenko and K.-R. Müller,
"SchNet – A deep learning architecture for molecules and materials", J. Chem. Phys. 148,
241722, 2018), on our periodic graph.

Continuous-filter convolutions, for messages j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i)
over the periodic k-NN edges (each periodic image of j is its own edge, with its own d_ij):

    x_i⁰ = Embedding(Z_i)                                             ([N, F])
    e_k(d_ij) = exp(−γ (d_ij − μ_k)²),  μ_k on [0, cutoff] Å, γ = ½/Δμ²  (GaussianSmearing)
    W_ij = MLP_filter(e(d_ij)) · ½(cos(π min(d_ij, r_c)/r_c) + 1)     (filter with cosine cutoff)
    cfconv_i = Σ_j (W₁ x_j) ⊙ W_ij
    v_i = W₃ ssp(W₂ cfconv_i)                                         (ssp(x) = softplus(x) − ln 2)
    x_i ← x_i + v_i                                                   (interaction block, residual)
    h_i = ssp(W_out x_i)                                              (first atom-wise layer of the
                                                                       SchNet readout, [N, F/2])

The interaction block, continuous-filter convolution and Gaussian smearing are
torch_geometric's (``torch_geometric.nn.models.schnet``); only the graph is ours: PyG's SchNet
builds a radius graph on Cartesian positions of one cell and so ignores periodicity, while
here the distances come from the shard's periodic edges (:func:`prdnet.models.basis.edge_geometry`).
The distance passed to the cosine cutoff is clamped at r_c, so an edge that the k-NN graph
reaches beyond r_c (an atom whose neighbour shell is wider) gets a zero filter instead of the
rising branch of the cosine. SchNet's readout ends with an atom-wise layer to one value and
a sum (or mean, for intensive targets); here h goes to the shared mean pooling and head of
:class:`prdnet.models.base.CrystalPropertyModel`.

Invariant by construction (distances only).

Default size (``paper`` preset): F = 128 atom features, 128 filters, 6 interaction blocks,
50 Gaussians on [0, 10] Å, r_c = 10 Å: torch_geometric's SchNet defaults, which are the
QM9 setting of SchNetPack (the reference implementation of the paper). The Matformer paper's
retrained SchNet (our published scores) does not state its size. Cost per block: O(E · F · filters).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock, ShiftedSoftplus

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry


class SchNet(nn.Module):
    """SchNet backbone on the periodic graph: embedding → interaction blocks → h [N, F/2].

    Args:
        channels: atom feature width F (``hidden_channels``).
        filters: width of the continuous filters (``num_filters``).
        layers: number of interaction blocks.
        gaussians: number of Gaussians of the distance expansion on [0, cutoff].
        cutoff: r_c in Å, the cosine cutoff and the last Gaussian centre.
        max_atomic_number: largest atomic number the embedding table holds.
    """

    def __init__(
        self, channels: int, filters: int, layers: int, gaussians: int, cutoff: float, max_atomic_number: int
    ) -> None:
        super().__init__()
        self.out_channels = channels // 2
        self.cutoff = cutoff
        self.embedding = nn.Embedding(max_atomic_number + 1, channels)
        self.smearing = GaussianSmearing(0.0, cutoff, gaussians)
        self.interactions = nn.ModuleList(InteractionBlock(channels, gaussians, filters, cutoff) for _ in range(layers))
        self.output = nn.Sequential(nn.Linear(channels, channels // 2), ShiftedSoftplus())

    def forward(self, batch: Batch) -> torch.Tensor:
        """Atom-wise embeddings h [N, F/2]."""
        x = self.embedding(batch.atomic_numbers)
        frac_coords, lattice = crystal_geometry(batch, x.dtype)
        _, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        expansion = self.smearing(distances).to(x.dtype)
        clamped = distances.clamp(max=self.cutoff)
        for interaction in self.interactions:
            x = x + interaction(x, batch.edge_index, clamped, expansion)
        return self.output(x)
