"""Matformer backbone (K. Yan, Y. Liu, Y. Lin and S. Ji, "Periodic Graph Transformers for
Crystal Material Property Prediction", NeurIPS 2022), the periodic graph transformer PRDNet
grew from, as its official code builds it.

Official code: GitHub YKQ98/Matformer, commit 9fd3055 (``pyg_att.py`` = matformer/models/pyg_att.py,
``transformer.py`` = matformer/models/transformer.py, ``graphs.py`` = matformer/graphs.py).

Graph (graph recipe ``matformer`` of config/models.yaml, built by the featurizer; this model
takes the edges as given and never adds any): for every atom its 12 nearest periodic neighbours
within 8 Å (ties with the 12th kept) plus 12 lattice self-edges i → i with image offsets ±a, ±b,
±c, ±(a+b), ±(a+c), ±(b+c) (``graphs.py`` L240-302: ``max_neighbors=12``, ``cutoff=8``, and with
``use_lattice`` the images (0,0,1), (0,1,0), (1,0,0), (0,1,1), (1,0,1), (1,1,0), each made
two-way by ``build_undirected_edgedata`` L349-382). A self-edge is an ordinary edge here, as in
the official code, whose length is that of the lattice vector.

Atom inputs (``pyg_att.py`` L54-56, L164): CGCNN's 92 element features x_i, then
h_i = W_atom x_i + b (Linear 92 → F). With a learned embedding instead (``atom_table`` None) the
embedding has width F and no projection follows (a linear map of a learned table is again a
learned table).

Edge features (``pyg_att.py`` L57-66, L165-167): an RBF of the raw bond length d_ij (Å),
``rbf_bins`` centres μ_c equally spaced on [0, ``rbf_cutoff``], φ_c(d) = exp(−(d − μ_c)²/Δμ)
(``utils.py`` RBFExpansion L13-46), then e_ij = W₂ softplus(W₁ φ(d_ij) + b₁) + b₂.

Matformer layer (``transformer.py`` MatformerConv L16-158), per head (H heads of width D = F),
messages j → i (``edge_index[0]`` = j, ``edge_index[1]`` = i, PyG's ``source_to_target``):
    q_i = W_q h_i,  k_i = W_k h_i,  v_i = W_v h_i,  ε_ij = W_e e_ij (no bias, L52-53)
    q̂_ij = q_i ‖ q_i ‖ q_i,  k̂_ij = k_i ‖ k_j ‖ ε_ij,  v̂_ij = v_i ‖ v_j ‖ ε_ij    ([3D], L146-151)
    α_ij = q̂_ij ⊙ k̂_ij / √(3D)                                    (element-wise, L148)
    m_ij = LN(W_m ((W_u v̂_ij) ⊙ σ(LN(α_ij))))                      ([D], L152-153, L71-77)
    h_i ← SiLU(BN(W_c ‖_heads Σ_j m_ij)) + W_skip h_i               (L109-126)
No dropout (``dropout=0.0`` default, L26, and ``pyg_att.py`` L121 passes none), no β gate
(``beta=False``). Readout (``pyg_att.py`` L185-194): mean pooling, then Linear(F, 128) + SiLU +
Linear(128, 1): exactly the shared head of :mod:`prdnet.models.base` with ``head: {hidden: 128,
layers: 1, activation: silu}``.

Default size (``paper`` preset, ``MatformerConfig`` ``pyg_att.py`` L17-32): 5 layers, F = 128,
H = 4 heads, 128 RBF bins on 0-8 Å, head 128. Parameters: 2,782,849 here with CGCNN inputs,
which is the official module's count less its two modules built but never called
(``edge_init`` 65,792 and ``angle_init_layers`` 32,000, marked "module not used" in ``pyg_att.py``
L105, L113): the official ``Matformer()`` holds 2,880,641 (counted by instantiating the official
module; tests/test_model_transformers.py derives both numbers from the layer shapes).

Deliberate deviations:
- The unused official modules (above) are not built: they take no part in the prediction.
- Graph (the recipe's business, not the model's): the official code trains with
  ``use_canonize=True`` (matformer/config.py L170), which stores each neighbour pair once and makes
  it two-way (``graphs.py`` canonize_edge, build_undirected_edgedata): j → i exists when j is
  among i's 12 nearest or i among j's, as in our recipe (``undirected: true``); but there an atom's
  own image among its 12 nearest appears twice in each direction, here once (ties within 1e-3 Å
  are kept).
- The official self-edges are those of the cell as stored in the data set (``graphs.py`` L251,
  ``atoms.lattice``), so their lengths |a|, |b|, |c|, |a+b|, ... and the prediction depend on how
  the cell was written down; the recipe's canonical cell (Niggli-reduced, right-handed) makes them
  a property of the crystal (one crystal, one prediction).
Cost per layer: O(E · H · D · 3D).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.atom_features import AtomFeatures
from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, linear_centers, spacing_width


class MatformerLayer(nn.Module):
    """One Matformer attention layer (formulas in the module docstring; ``transformer.py`` L16-158)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, channels
        inner = heads * channels
        self.query = nn.Linear(channels, inner)
        self.key = nn.Linear(channels, inner)
        self.value = nn.Linear(channels, inner)
        self.edge = nn.Linear(channels, inner, bias=False)
        self.score_norm = nn.LayerNorm(3 * channels)
        self.value_update = nn.Linear(3 * channels, 3 * channels)
        self.message = nn.Sequential(nn.Linear(3 * channels, channels), nn.LayerNorm(channels))
        self.concat = nn.Linear(inner, channels)
        self.norm = nn.BatchNorm1d(channels)
        self.skip = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """Updated h [N, F] from h [N, F], ``edge_index`` [2, E] and edge features [E, F]."""
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
        return nn.functional.silu(self.norm(self.concat(aggregated.flatten(1)))) + self.skip(h)


class Matformer(nn.Module):
    """Matformer backbone: atom inputs → ``layers`` attention layers → h [N, F].

    Args:
        channels: node width F (official: 128).
        layers: attention layers (official: 5).
        heads: heads H (official: 4).
        rbf_bins: RBF centres of the bond length (official: 128).
        rbf_cutoff: last RBF centre in Å (official: 8.0; the first is 0).
        max_atomic_number: largest atomic number of the learned embedding.
        atom_table: CGCNN's element table [max_Z + 1, 92] (then Linear(92, F), the official
            input), or None for a learned embedding of width F.
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        heads: int,
        rbf_bins: int,
        rbf_cutoff: float,
        max_atomic_number: int,
        atom_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.rbf_width = spacing_width(0.0, rbf_cutoff, rbf_bins)
        self.atom_features = AtomFeatures(atom_table, channels, max_atomic_number)
        self.atom_projection: nn.Module = (
            nn.Linear(self.atom_features.out_channels, channels) if atom_table is not None else nn.Identity()
        )
        self.edge_embedding = nn.Sequential(
            nn.Linear(rbf_bins, channels), nn.Softplus(), nn.Linear(channels, channels)
        )
        self.layers = nn.ModuleList(MatformerLayer(channels, heads) for _ in range(layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings h [N, F]."""
        h = self.atom_projection(self.atom_features(batch.atomic_numbers))
        frac_coords, lattice = crystal_geometry(batch, h.dtype)
        _, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        edge_attr = self.edge_embedding(gaussian_basis(distances, self.rbf_centers, self.rbf_width))
        for layer in self.layers:
            h = layer(h, batch.edge_index, edge_attr)
        return h
