"""ALIGNN backbone (K. Choudhary and B. DeCost, "Atomistic Line Graph Neural Network for improved
materials property predictions", npj Comput. Mater. 7, 185, 2021), as its official code builds
it (usnistgov/alignn at a8be0be: ``alignn/models/alignn.py``, ``alignn/models/utils.py``,
``alignn/graphs.py``; the model is unchanged since the paper's release v2021.11.16).

Two graphs, both built from the shard's edges without loops over atoms or crystals:
- the bond graph G: atoms, with the edges j → i of the graph recipe ``alignn``
  (``edge_index[0]`` = j, ``edge_index[1]`` = i), bond vector v_ji = r_j + n − r_i, d = |v_ji| (Å);
- its line graph L(G), as DGL's ``g.line_graph(shared=True)`` (graphs.py L588; backtracking on,
  DGL's default): one node per bond, and one line edge (k → j) ⇒ (j → i) for every bond into j
  paired with every bond out of j (:func:`line_graph_pairs`), the reverse bond included. It
  carries the angle at the shared atom j, cos θ = (r_k − r_j)·(r_i − r_j) / (|·||·|)
  (``compute_bond_cosines``, graphs.py L847–864; :func:`line_graph_cosines`).

Features (RBF(x)_c = exp(−(x − μ_c)²/Δμ), centres equally spaced Δμ apart, ``RBFExpansion``
with γ = 1/Δμ, utils.py L26–44):
    h_i⁰ = MLP(x_i),  x_i = atom_init[Z_i] (92-d)                     (alignn.py L201–203, L307–309)
    e⁰ = MLP(MLP(RBF(d))),   80 centres on [0, 8] Å                    (L205–213, L313–314)
    t⁰ = MLP(MLP(RBF(cos θ))),  40 centres on [−1, 1]                  (L214–222, L298)
    MLP(x) = SiLU(BN(W x + b)) (``MLPLayer``, L170–184); the inner width is ``embedding_dim``.

Edge-gated graph convolution EGGC(nodes h, edges e) (``EdgeGatedGraphConv``, L48–129), for each
edge j → i (DGL's src j, dst i):
    m_ji = W_src h_j + W_dst h_i + W_e e_ji                             (L98–101)
    σ_ji = sigmoid(m_ji)                                                (L103)
    h_i ← h_i + SiLU(BN(U h_i + Σ_j σ_ji ⊙ V h_j / (Σ_j σ_ji + 10⁻⁶)))  (L104–110, L122, L126)
    e_ji ← e_ji + SiLU(BN(m_ji))                                        (L123, L127)
(U is the official ``src_update``, applied to the receiving node; V is ``dst_update``, applied to
the sending node, L104, L110.)

ALIGNN layer (``ALIGNNConv``, L132–167): first EGGC on G with atoms h and bonds e (updates atoms
and bonds, L162), then EGGC on L(G) with the updated bonds as nodes and the angles t as edges
(updates bonds and angles, L165). ``alignn_layers`` of them, then ``gcn_layers`` EGGC on G alone
(L233–240, L321–322). Readout: mean of h (``AvgPooling``, L242, L325), then one Linear (``fc``,
L248, L341): the shared head with ``layers: 0``.

Default size (``paper`` preset = ``ALIGNNConfig`` defaults, L19–32): 4 ALIGNN layers, 4 GCN
layers, hidden 256, embedding 64, 80 distance and 40 angle RBFs, 92-d atom inputs. Official:
4,026,753 parameters (the official ``ALIGNN(ALIGNNConfig(name="alignn"))`` instantiated with dgl
stubbed out, and the same sum by hand); ours 4,025,729: 1,024 fewer, the two BatchNorm(256) whose
output nothing reads (the angle update of the last ALIGNN layer and the bond update of the last
GCN layer; the official model holds them without ever giving them a gradient).

Graph (recipe ``alignn`` in ``config/models.yaml``): the official k-nearest graph
(graphs.py L155–227 ``nearest_neighbor_edges``: the 12 nearest within 8 Å, the cutoff widened
until every atom has 12, every neighbour as close as the 12th kept; ``TrainingConfig`` cutoff 8,
max_neighbors 12, use_canonize, config.py L191–196). The official graph is then made undirected
(``build_undirected_edgedata``, graphs.py L230–264: each found pair is stored once, canonized,
and added in both directions), so an atom also receives from atoms that hold it among their 12
nearest; the recipe does the same (``undirected: true``: the reverse of every k-NN edge is added,
about 5% more edges on embedded MP crystals). The line graph pairs, for a bond j → i, the bonds
into j.

Other deliberate deviations:
- The two unread BatchNorms above are not built (every parameter then gets a gradient).
- A bond from an atom to its own periodic image appears twice in each direction in the
  official graph (the images +n and −n both canonize to the key (i, i) and each is then added
  in both directions, graphs.py L218-225, L253-257), which doubles its weight in the gated
  means; our graph holds each such bond once per direction, like every other bond.
- ``atom_input: embedding`` (not the official input) replaces the table by a learned embedding.

Single-element crystals (issue 11): the official model, in its own layer order, cannot see
geometry when every atom is the same element. All atoms start from one vector h⁰ (one element,
one table row). In the atom update the neighbours enter only through the normalised gated mean
Σ_j σ_ji ⊙ V h_j / (Σ_j σ_ji + 10⁻⁶); with V h_j the same for every j this is
V h⁰ ⊙ Σσ/(Σσ + 10⁻⁶), i.e. V h⁰ up to a relative 10⁻⁶/Σσ ≈ 10⁻⁷ (Σσ over 12 or more bonds).
The bond lengths and angles reach the gates σ and the bond and angle features (and those keep
changing with geometry through every line-graph update), but the gates are normalised away, so
every atom of every crystal keeps the same vector after every layer (batch norm maps equal
inputs to equal outputs), the mean pool is one vector for all crystals, and the prediction is
one constant. Atom-graph-first (the official order) changes nothing: the bond features only
ever act on atoms through the gates. The one geometric trace is the 10⁻⁶ of the denominator,
−V h⁰ · 10⁻⁶/Σ_j σ_ji, about 10⁻⁷ of the signal; batch norm over atoms that differ only by it
divides by √(var + 10⁻⁵) ≈ 3·10⁻³, so where its variance statistics are that small (training
mode, or eval mode once the running variances have shrunk) each normalisation amplifies the
trace ~300×: the predictions then vary by a numerically fragile amount, not by a learned
function of the structure. With two or more elements the gated mean weighs different h_j and
geometry does reach the atoms. We keep the model faithful; the training guards of issue 11 flag
the constant predictions.

Cost: O((E + T) · F²) per ALIGNN layer, T = Σ_j (bonds into j)(bonds out of j) ≈ 12–20 × E,
so the line graph dominates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch

from prdnet.models.atom_features import AtomFeatures
from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, group_pairs, linear_centers, spacing_width


def line_graph_pairs(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The line graph of a directed bond graph, as DGL's ``line_graph`` with backtracking.

    ``edge_index`` [2, E] holds bonds source j → target i. Returns (sending, receiving) [T]:
    every pair of bonds with ``target[sending] == source[receiving]`` (a bond k → j, then a
    bond j → i), the reverse bond and a self-image bond paired with itself included.
    T = Σ_j (bonds into j) · (bonds out of j). Vectorised (one stable sort, no loop over atoms).
    """
    receiving, sending = group_pairs(edge_index[0], edge_index[1], num_nodes)
    return sending, receiving


def line_graph_cosines(vectors: torch.Tensor, sending: torch.Tensor, receiving: torch.Tensor) -> torch.Tensor:
    """cos θ at the shared atom j of each line-graph edge (k → j) ⇒ (j → i), unitless, [T].

    ``vectors`` [E, 3] are the bond vectors r_source + n − r_target (Å): for the bond k → j that
    is r_k − r_j, for the bond j → i it is r_j − r_i = −(r_i − r_j); so
    cos θ = −v_kj · v_ji / (|v_kj| |v_ji|), clamped to [−1, 1].
    """
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    return -(unit[sending] * unit[receiving]).sum(-1).clamp(-1.0, 1.0)


def mlp_layer(width_in: int, width_out: int) -> nn.Sequential:
    """ALIGNN's ``MLPLayer``: SiLU(BN(W x + b))."""
    return nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.SiLU())


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution with residual node and edge updates (module docstring).

    ``update_edges=False`` for a convolution whose edge output nothing reads: it returns e
    unchanged and has no edge BatchNorm, so every parameter gets a gradient.
    """

    def __init__(self, channels: int, update_edges: bool = True) -> None:
        super().__init__()
        self.gate_centre = nn.Linear(channels, channels)  # official dst_gate
        self.gate_neighbour = nn.Linear(channels, channels)  # official src_gate
        self.gate_edge = nn.Linear(channels, channels)  # official edge_gate
        self.update_centre = nn.Linear(channels, channels)  # official src_update (applied to dst)
        self.update_neighbour = nn.Linear(channels, channels)  # official dst_update (applied to src)
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
    """EGGC on the bond graph (atoms, bonds), then EGGC on the line graph (bonds, angles), the
    order of the official ``ALIGNNConv`` (alignn.py L162, L165)."""

    def __init__(self, channels: int, last: bool = False) -> None:
        super().__init__()
        self.bond = EdgeGatedGraphConv(channels)
        self.line = EdgeGatedGraphConv(channels, update_edges=not last)

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        t: torch.Tensor,
        edge_index: torch.Tensor,
        line_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Updated atoms h [N, F], bonds e [E, F] and angles t [T, F]."""
        h, e = self.bond(h, edge_index, e)
        e, t = self.line(e, line_index, t)
        return h, e, t


class ALIGNN(nn.Module):
    """ALIGNN backbone: ALIGNN layers on bond graph + line graph, then GCN layers → h [N, F].

    Args:
        channels: hidden width F (``hidden_features``, official 256).
        alignn_layers: ALIGNN layers (official 4).
        gcn_layers: edge-gated convolutions on the bond graph alone (official 4).
        embedding_dim: inner width of the bond and angle embeddings (``embedding_features``, 64).
        max_atomic_number: largest atomic number of the learned embedding (without a table).
        rbf_bins, rbf_cutoff: distance RBF (count on [0, rbf_cutoff] Å; official 80, 8 Å).
        angle_bins: angle-cosine RBF (count on [−1, 1]; official 40).
        atom_table: CGCNN's element table [max_Z + 1, 92], or None for a learned embedding of
            width ``channels``.
    The RBF widths follow the centre spacing as in the official code (σ = √(Δμ/2)).
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
        atom_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.register_buffer("angle_centers", linear_centers(-1.0, 1.0, angle_bins).float())
        self.rbf_width = spacing_width(0.0, rbf_cutoff, rbf_bins)
        self.angle_width = spacing_width(-1.0, 1.0, angle_bins)
        self.atom_features = AtomFeatures(atom_table, channels, max_atomic_number)
        self.atom_embedding = mlp_layer(self.atom_features.out_channels, channels)
        self.edge_embedding = nn.Sequential(mlp_layer(rbf_bins, embedding_dim), mlp_layer(embedding_dim, channels))
        self.angle_embedding = nn.Sequential(mlp_layer(angle_bins, embedding_dim), mlp_layer(embedding_dim, channels))
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(channels, last=index == alignn_layers - 1) for index in range(alignn_layers)
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(channels, update_edges=index < gcn_layers - 1) for index in range(gcn_layers)
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Atom embeddings h [N, F]."""
        h = self.atom_embedding(self.atom_features(batch.atomic_numbers))
        frac_coords, lattice = crystal_geometry(batch, h.dtype)
        vectors, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        e = self.edge_embedding(gaussian_basis(distances, self.rbf_centers, self.rbf_width))
        if self.alignn_layers:
            sending, receiving = line_graph_pairs(batch.edge_index, h.shape[0])
            line_index = torch.stack([sending, receiving])
            cosines = line_graph_cosines(vectors, sending, receiving)
            t = self.angle_embedding(gaussian_basis(cosines, self.angle_centers, self.angle_width))
            for layer in self.alignn_layers:
                h, e, t = layer(h, e, t, batch.edge_index, line_index)
        for layer in self.gcn_layers:
            h, e = layer(h, batch.edge_index, e)
        return h
