"""SchNet backbone (K. T. Schütt, H. E. Sauceda, P.-J. Kindermans, A. Tkatchenko and K.-R. Müller,
"SchNet – A deep learning architecture for molecules and materials", J. Chem. Phys. 148,
241722, 2018), as kgcnn v2.1.0 builds it for crystals.

Which code is "official" here: the ``paper`` preset is the kgcnn v2.1.0 SchNet that produced the
MatBench v0.1 leaderboard row "SchNet (kgcnn v2.1.0)" (the row issue 11 calibrates against):
model code aimat-lab/gcnn_keras tag v2.1.0, ``kgcnn/literature/Schnet.py`` (``make_crystal_model``,
L169-L274) and ``kgcnn/layers/conv/schnet_conv.py`` (``SchNetCFconv`` L9-L79, ``SchNetInteraction``
L93-L165); its MatBench configuration materialsproject/matbench
``benchmarks/matbench_v0.1_SchNet_kgcnn_v2.1.0/run.py`` (``hyper_1``, L41-L109, used for every
regression task but mp_gap, L180-L190). kgcnn's layers are those of SchNetPack, the reference
implementation of the paper (info.json: "Original code from .../schnetpack").

For messages j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i) over the periodic edges of
the graph recipe ``schnet`` (every neighbour image within 5 Å, run.py L99 ``set_range_periodic``
``max_distance: 5``; kgcnn/graph/geom.py L172-L363: no cap on the count, periodic images of the
atom itself included, only the zero-distance self-pair left out):

    x_i⁰ = W_emb a_i + b                        a_i = Embedding_64(Z_i) (run.py L54-L56), W_emb 64 → F
                                                (Schnet.py L253, ``DenseEmbedding(units)``, linear)
    e_k(d_ij) = exp(−(d_ij − μ_k)² / (2σ²)),    μ_k = k·D/K, k = 0..K−1  (kgcnn/layers/geom.py
                                                L478-L535, ``GaussBasisLayer``: K = 25, D = 5 Å, σ = 0.4 Å,
                                                so the last centre is 4.8 Å)
    W_ij = W_f2 ssp(W_f1 e(d_ij) + b_f1) + b_f2                      (filter, schnet_conv.py L50-L51, L74-L75)
    m_i  = Σ_j (W_in x_j) ⊙ W_ij                                     (W_in without bias, L137, L160-L161)
    x_i ← x_i + W_3 ssp(W_2 m_i + b_2) + b_3                          (L138-L139, L162-L164)
    h_i  = ssp(W_r2 ssp(W_r1 x_i + b_r1) + b_r2)                     ([N, 64]; run.py L63 ``last_mlp``
                                                                      units [128, 64, 1], Schnet.py L257)

ssp(x) = softplus(x) − ln 2. kgcnn's readout ends with a per-atom Linear(64, 1) and a mean over the
crystal's atoms (run.py L60 ``pooling_method: mean``, L63, ``use_output_mlp: False``, L66). Both
are linear, so mean_i(W h_i + b) = W mean_i(h_i) + b: the shared mean pooling of
:class:`prdnet.models.base.CrystalPropertyModel` followed by its head with ``layers: 0`` (one
Linear(64, 1)) computes exactly kgcnn's output. With the diffraction plug-in, the mean of h is
fused with d as for every backbone.

Initialisation follows Keras' defaults, as kgcnn leaves them (:func:`keras_initialization`:
Glorot-uniform weights, zero biases, embedding uniform on [−0.05, 0.05]); the head's Linear(64, 1)
(:mod:`prdnet.models.base`) keeps PyTorch's default. (Glorot gain 2, as MEGNet here, makes the
neighbour sums of a fresh SchNet large and slows its fit: not used.)

Differences from other SchNet code, and our deviations:
- kgcnn has no cosine cutoff on the filter; PyG's ``CFConv`` (torch_geometric 2.8.1,
  ``nn/models/schnet.py`` L419) and SchNetPack multiply W_ij by ½(cos(π d/r_c) + 1). We follow kgcnn.
- PyG's defaults (L93-L102: F = 128, 6 interactions, 50 Gaussians on [0, 10] Å, radius graph of
  10 Å with at most 32 neighbours, sum readout) are its QM9 setting, not the MatBench one.
- Atom inputs: ``atom_input: embedding`` (kgcnn's learned Embedding(95, 64)); with
  ``atom_input: cgcnn`` the 92-d table replaces the embedding and W_emb becomes 92 → F. Our
  embedding has ``max_atomic_number + 1`` rows (101 at 100, kgcnn 95): +6·64 = 384 parameters,
  so that elements up to Fm are accepted.

Parameters, ``paper`` preset, regression: 316,609 (ours) against kgcnn's 316,225, the embedding rows
above being the whole difference (counted in tests/test_model_schnet_megnet.py).

Invariant by construction (distances only). Cost per block: O(E · F²).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional
from torch_geometric.data import Batch

from prdnet.models.atom_features import AtomFeatures
from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis


class ShiftedSoftplus(nn.Module):
    """ssp(x) = softplus(x) − ln 2 (kgcnn ``shifted_softplus`` / ``softplus2``): 0 at 0, slope ½ there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.softplus(x) - math.log(2.0)


def keras_initialization(module: nn.Module, gain: float = 1.0) -> None:
    """Keras' default initialisation, which kgcnn's SchNet and MEGNet keep: every Linear's weight
    Glorot-uniform (times ``gain``; Keras: 1) and bias zero, every learned Embedding uniform on
    [−0.05, 0.05]."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Embedding):
            nn.init.uniform_(layer.weight, -0.05, 0.05)


def kgcnn_gaussian_centers(bins: int, distance: float) -> torch.Tensor:
    """Centres μ_k = k · distance / bins (Å), k = 0 … bins − 1, of kgcnn's ``GaussBasisLayer``
    (the last centre lies one spacing below ``distance``). float64, cast on use."""
    return torch.arange(bins, dtype=torch.float64) * (distance / bins)


def dense_stack(widths: list[int]) -> nn.Sequential:
    """Linear + ssp for every consecutive pair of ``widths`` (ssp(x) = softplus(x) − ln 2)."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), ShiftedSoftplus()]
    return nn.Sequential(*layers)


class SchNetInteraction(nn.Module):
    """One interaction block: x_i + W_3 ssp(W_2 Σ_j (W_in x_j) ⊙ W_f(e_ij)) (kgcnn ``SchNetInteraction``)."""

    def __init__(self, channels: int, rbf_bins: int) -> None:
        super().__init__()
        self.filter = nn.Sequential(nn.Linear(rbf_bins, channels), ShiftedSoftplus(), nn.Linear(channels, channels))
        self.into_filter = nn.Linear(channels, channels, bias=False)
        self.update = nn.Sequential(nn.Linear(channels, channels), ShiftedSoftplus(), nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, expansion: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Updated atom features [N, F] from x [N, F], the edges' Gaussian expansion [E, K] and edge_index."""
        source, centre = edge_index[0], edge_index[1]
        messages = self.into_filter(x)[source] * self.filter(expansion)
        pooled = torch.zeros_like(x).index_add_(0, centre, messages)
        return x + self.update(pooled)


class SchNet(nn.Module):
    """SchNet backbone (kgcnn v2.1.0 crystal model): atom inputs → Linear → interactions → h [N, readout[-1]].

    Args:
        channels: atom feature and filter width F (kgcnn ``interaction_args.units``, 128).
        embedding_dim: width of the learned atom embedding (kgcnn ``input_embedding.node.output_dim``, 64).
        layers: number of interaction blocks (kgcnn ``depth``, 4).
        rbf_bins, rbf_distance, rbf_width: Gaussian distance expansion, count K, span D in Å
            (centres k·D/K) and σ in Å (kgcnn ``gauss_args`` bins 25, distance 5, sigma 0.4).
        readout_widths: the per-atom dense layers after the interactions, each Linear + ssp
            (kgcnn ``last_mlp`` without its final Linear to 1: [128, 64]).
        max_atomic_number: largest atomic number of the learned embedding.
        atom_table: CGCNN's element table [max_Z + 1, 92], or None for the learned embedding.
    """

    def __init__(
        self,
        channels: int,
        embedding_dim: int,
        layers: int,
        rbf_bins: int,
        rbf_distance: float,
        rbf_width: float,
        readout_widths: list[int],
        max_atomic_number: int,
        atom_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not readout_widths:
            raise ValueError("SchNet needs at least one readout width")
        self.out_channels = readout_widths[-1]
        self.rbf_width = rbf_width
        self.register_buffer("rbf_centers", kgcnn_gaussian_centers(rbf_bins, rbf_distance).float())
        self.atoms = AtomFeatures(atom_table, embedding_dim, max_atomic_number)
        self.input_projection = nn.Linear(self.atoms.out_channels, channels)
        self.interactions = nn.ModuleList(SchNetInteraction(channels, rbf_bins) for _ in range(layers))
        self.readout = dense_stack([channels, *readout_widths])
        keras_initialization(self)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Atom-wise embeddings h [N, readout_widths[-1]]."""
        x = self.input_projection(self.atoms(batch.atomic_numbers))
        frac_coords, lattice = crystal_geometry(batch, x.dtype)
        _, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        expansion = gaussian_basis(distances, self.rbf_centers.to(x.dtype), self.rbf_width)
        for interaction in self.interactions:
            x = interaction(x, expansion, batch.edge_index)
        return self.readout(x)
