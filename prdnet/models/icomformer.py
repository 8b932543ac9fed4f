"""iComFormer backbone (K. Yan, C. Fu, X. Qian, X. Qian and S. Ji, "Complete and Efficient Graph
Transformers for Crystal Material Property Prediction", ICLR 2024): the SE(3)-invariant
ComFormer, as its official code builds it.

Official code: GitHub divelab/AIRS, commit 4a16c68, OpenMat/ComFormer/comformer/
(``comformer.py`` = models/comformer.py, ``transformer.py`` = models/transformer.py,
``graphs.py`` = graphs.py, scripts/train_jarvis.py, scripts/train_mp.py).

Graph (graph recipe ``icomformer`` of config/models.yaml, built by the featurizer; this model
takes the edges as given): for every atom its 25 nearest periodic neighbours, the search
starting at 4 Å (``scripts/train_jarvis.py`` L39: ``max_neighbors=25, cutoff=4.0,
use_lattice=True``; ``graphs.py`` L212-307), plus lattice self-edges i → i along ±l_1, ±l_2, ±l_3
(``graphs.py`` L302-305 adds the images l_1, l_2, l_3 once per atom, ``build_undirected_edgedata``
L348-351 makes each two-way: 6 per atom, not counted in k). l_1, l_2, l_3 are a canonical lattice
basis (``graphs.py`` L245-275): the shortest self-image of atom 0, the next shortest not collinear
with it, the next not coplanar with both; l_2 and l_3 turned to make an acute angle with l_1, and
all three negated if the frame is left-handed. The recipe's canonical cell (Niggli-reduced,
right-handed) has the three shortest non-coplanar lattice vectors as rows; :func:`lattice_frame`
applies the official sign rules to them, so the model sees the official l_1, l_2, l_3.

Features (``comformer.py`` L167-188, L219-226), with r_ij = x_i − x_j the bond vector pointing
from the neighbour j to the centre i (the official ``edge_attr``, ``graphs.py`` L345-351):
    x_i    = CGCNN's 92 element features,  h_i = W_atom x_i + b        (Linear 92 → F)
    e_ij   = softplus(W_d RBF(−0.75/|r_ij|) + b)                        (RBF centres on [−4, 0])
    λ_ijk  = softplus(W_d RBF(−0.75/|l_k|) + b)                         (k = 1, 2, 3; same map)
    θ_ijk  = softplus(W_a RBF(cos∠(r_ij, l_k)) + b)                     (RBF centres on [−1, 1])
RBF: ``bins`` equally spaced centres μ_c, φ_c(x) = exp(−(x − μ_c)²/Δμ) (models/utils.py
RBFExpansion). With a learned embedding instead (``atom_table`` None) the embedding has width F
and no projection follows.

Node-wise layer (``transformer.py`` ComformerConv L17-96; heads H of width D = F; messages j → i):
    q_i = W_q h_i,  k_i = W_k h_i,  v_i = W_v h_i,  ε_ij = W_e e_ij + b
    α_ij = q_i ⊙ ξ_K(k_i ‖ k_j ‖ ε_ij) / √D                      (ξ: Linear 3D→D, SiLU, Linear D→D)
    m_ij = σ(BN(α_ij)) ⊙ ξ_V(v_i ‖ v_j ‖ ε_ij)
    h_i ← softplus(h_i + BN(W_c ‖_heads Σ_j m_ij))
Edge-wise layer (``transformer.py`` ComformerConv_edge L99-187; once, after the first node-wise
layer, ``comformer.py`` L228-229), each edge attending to its three lattice vectors, with a key
and a value map of its own for each lattice vector k (L131-136, L167-172):
    q = W_q e_ij,  κ = W_k e_ij,  ν = W_v e_ij,  κ'_k = W_kλ^(k) λ_ijk,  ν'_k = W_vλ^(k) λ_ijk,
    t_k = W_θ θ_ijk (no bias)
    α_k = q ⊙ ξ_K(κ ‖ κ'_k ‖ t_k) / √D,   m_k = σ(BN(α_k)) ⊙ ξ_V(ν ‖ ν'_k ‖ t_k)
    e_ij ← softplus(e_ij + BN(Σ_k W_c m_k + b_c))          (W_c per k, then the sum, L182-187)
No dropout. Readout (``comformer.py`` L235-239): mean pooling, then Linear(F, 256) + SiLU +
Linear(256, 1): the shared head of :mod:`prdnet.models.base` with ``head: {hidden: 256, layers:
1, activation: silu}``.

Default size (``paper`` preset, ``iComformerConfig`` ``comformer.py`` L16-37): 4 node-wise layers,
1 edge-wise layer, F = 256, 256 RBF centres for lengths and angles, 1 head, head 256.
Parameters: 4,892,417 here with CGCNN inputs; the official ``iComformer()`` holds 4,966,497
(counted by instantiating the official module), of which 74,080 sit in two modules of the edge
layer that its forward never calls (``lemb`` 96 and ``lin_edge_len`` 73,984, ``transformer.py``
L125, L139): the rest is the same layer for layer (tests/test_model_transformers.py).

Deliberate deviations:
- The unused official modules (above) are not built.
- Graph (the recipe's business, not the model's): the official code trains with
  ``use_canonize=True`` (comformer/config.py L170), which stores each neighbour pair once and makes
  it two-way (``graphs.py`` canonize_edge, build_undirected_edgedata): j → i exists when j is
  among i's 25 nearest or i among j's, as in our recipe (``undirected: true``); but there an atom's
  own image among its 25 nearest appears twice in each direction, here once (ties within 1e-3 Å
  are kept).
- ``lattice_frame`` resolves a tie between equally long lattice vectors by the canonical cell's
  order, and keeps the sign of a vector at a right angle to l_1 (within
  :data:`RIGHT_ANGLE_TOLERANCE`); in both cases the official choice is left to the order of its
  neighbour search or to float rounding.
Cost: O(E · H · D²) per node-wise layer, O(3E · D²) for the edge-wise layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.atom_features import AtomFeatures
from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, inverse_distance, linear_centers, spacing_width

INVERSE_LENGTH_RANGE = (-4.0, 0.0)
"""Range of the RBF centres of −0.75/length (``comformer.py`` L170-178)."""

COSINE_RANGE = (-1.0, 1.0)
"""Range of the RBF centres of cos∠(r_ij, l_k) (``comformer.py`` L180-188)."""

RIGHT_ANGLE_TOLERANCE = 1e-6
"""|cos∠(l_1, l)| below which :func:`lattice_frame` counts the angle as right and keeps l as it is:
the official test ``angle > 90°`` (``graphs.py`` L267-270) is decided there by float rounding, so
a rotated copy of an orthogonal cell could otherwise get another frame."""


def lattice_frame(lattice: torch.Tensor) -> torch.Tensor:
    """iComFormer's lattice vectors l_1, l_2, l_3 from cells [B, 3, 3] (rows a, b, c in Å).

    l_1 = a;  l_2 = b, negated if cos∠(a, b) < −ε;  l_3 = c, negated if cos∠(a, c) < −ε (each then
    makes an angle of at most 90° with l_1, ε = :data:`RIGHT_ANGLE_TOLERANCE`); then all three
    negated if (l_1 × l_2)·l_3 < 0, so the frame is right-handed (``graphs.py`` L266-275).
    Returns [B, 3, 3] in Å, rows l_1, l_2, l_3.
    """
    first = lattice[:, 0]

    def acute_to_first(vector: torch.Tensor) -> torch.Tensor:
        lengths = first.norm(dim=-1, keepdim=True) * vector.norm(dim=-1, keepdim=True)
        cosine = (first * vector).sum(-1, keepdim=True) / lengths
        return torch.where(cosine < -RIGHT_ANGLE_TOLERANCE, -vector, vector)

    second, third = acute_to_first(lattice[:, 1]), acute_to_first(lattice[:, 2])
    frame = torch.stack([first, second, third], dim=1)
    handedness = (torch.linalg.cross(first, second) * third).sum(-1)
    return torch.where((handedness < 0).view(-1, 1, 1), -frame, frame)


def xi(channels: int) -> nn.Sequential:
    """ComFormer's two-layer update ξ: Linear(3D → D), SiLU, Linear(D → D) (``transformer.py`` L55-62)."""
    return nn.Sequential(nn.Linear(3 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))


class NodeLayer(nn.Module):
    """iComFormer's node-wise transformer layer (module docstring; ``transformer.py`` L17-96)."""

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
        """Updated h [N, F] from h [N, F], ``edge_index`` [2, E] and e [E, F]."""
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
    """iComFormer's edge-wise transformer layer: each edge attends to its 3 lattice vectors
    (module docstring; ``transformer.py`` L99-187)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, channels
        inner = heads * channels
        self.query, self.key, self.value = (nn.Linear(channels, inner) for _ in range(3))
        self.length_keys = nn.ModuleList(nn.Linear(channels, inner) for _ in range(3))
        self.length_values = nn.ModuleList(nn.Linear(channels, inner) for _ in range(3))
        self.angle = nn.Linear(channels, inner, bias=False)
        self.key_update, self.value_update = xi(channels), xi(channels)
        self.score_norm = nn.BatchNorm1d(channels)
        self.concat = nn.Linear(inner, channels)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, e: torch.Tensor, lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Updated e [E, F] from e [E, F], λ [E, 3, F] and θ [E, 3, F]."""
        shape = (-1, 3, self.heads, self.head_dim)
        own = lambda linear: linear(e).view(-1, 1, self.heads, self.head_dim).expand(shape)  # noqa: E731
        query, key, value = own(self.query), own(self.key), own(self.value)
        length_key = torch.stack([linear(lengths[:, k]) for k, linear in enumerate(self.length_keys)], 1).view(shape)
        length_value = torch.stack([linear(lengths[:, k]) for k, linear in enumerate(self.length_values)], 1)
        length_value = length_value.view(shape)
        angle = self.angle(angles).view(shape)
        alpha = query * self.key_update(torch.cat([key, length_key, angle], dim=-1)) / math.sqrt(self.head_dim)
        value = self.value_update(torch.cat([value, length_value, angle], dim=-1))
        gate = torch.sigmoid(self.score_norm(alpha.reshape(-1, self.head_dim)).view(shape))
        messages = self.concat((gate * value).flatten(2)).sum(1)
        return nn.functional.softplus(e + self.norm(messages))


class IComFormer(nn.Module):
    """iComFormer backbone: atom inputs → node layer → edge layer → node layers → h [N, F].

    Args:
        channels: node and edge width F (official: 256).
        layers: node-wise layers (official: 4; the edge-wise layer follows the first).
        heads: heads of the node- and edge-wise layers (official: 1).
        rbf_bins: RBF centres of −0.75/length on [−4, 0] (official: 256).
        angle_bins: RBF centres of cos∠(r_ij, l_k) on [−1, 1] (official: 256).
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
        angle_bins: int,
        max_atomic_number: int,
        atom_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"iComFormer needs at least one node-wise layer, not {layers}")
        self.out_channels = channels
        self.register_buffer("rbf_centers", linear_centers(*INVERSE_LENGTH_RANGE, rbf_bins).float())
        self.register_buffer("angle_centers", linear_centers(*COSINE_RANGE, angle_bins).float())
        self.rbf_width = spacing_width(*INVERSE_LENGTH_RANGE, rbf_bins)
        self.angle_width = spacing_width(*COSINE_RANGE, angle_bins)
        self.atom_features = AtomFeatures(atom_table, channels, max_atomic_number)
        self.atom_projection: nn.Module = (
            nn.Linear(self.atom_features.out_channels, channels) if atom_table is not None else nn.Identity()
        )
        self.length_embedding = nn.Sequential(nn.Linear(rbf_bins, channels), nn.Softplus())
        self.angle_embedding = nn.Sequential(nn.Linear(angle_bins, channels), nn.Softplus())
        self.node_layers = nn.ModuleList(NodeLayer(channels, heads) for _ in range(layers))
        self.edge_layer = EdgeLayer(channels, heads)

    def embed_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """softplus(W_d RBF(−0.75/ℓ) + b) of lengths ℓ [...] in Å → [..., F]."""
        return self.length_embedding(gaussian_basis(inverse_distance(lengths), self.rbf_centers, self.rbf_width))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings h [N, F]."""
        h = self.atom_projection(self.atom_features(batch.atomic_numbers))
        frac_coords, lattice = crystal_geometry(batch, h.dtype)
        vectors, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        bonds = -vectors  # r_ij = x_i − x_j, from neighbour to centre: the official edge_attr
        e = self.embed_lengths(distances)
        frame = lattice_frame(lattice)[batch.batch[batch.edge_index[1]]]  # [E, 3, 3], rows l_1, l_2, l_3
        frame_lengths = frame.norm(dim=-1)
        cosines = (frame * bonds.unsqueeze(1)).sum(-1) / (frame_lengths * distances.unsqueeze(1))
        angles = self.angle_embedding(gaussian_basis(cosines.clamp(-1.0, 1.0), self.angle_centers, self.angle_width))
        for index, layer in enumerate(self.node_layers):
            h = layer(h, batch.edge_index, e)
            if index == 0:
                e = self.edge_layer(e, self.embed_lengths(frame_lengths), angles)
        return h
