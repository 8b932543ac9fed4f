"""MEGNet backbone (C. Chen, W. Ye, Y. Zuo, C. Zheng and S. P. Ong, "Graph Networks as a
Universal Machine Learning Framework for Molecules and Crystals", Chem. Mater. 31, 3564, 2019).

Graph network with bond (e_k), atom (v_i) and global-state (u) attributes, on our periodic
graph: bond k is the edge j → i (``edge_index[0]`` = s_k = j, ``edge_index[1]`` = r_k = i), so
every periodic image of a neighbour is its own bond. ssp(x) = softplus(x) − ln 2 ("softplus2"),
and every dense layer below is Linear + ssp.

Inputs
    e_k⁰ = exp(−(d_k − μ_c)² / σ²),  μ_c on [0, rbf_cutoff] Å         (Gaussian bond expansion)
    v_i⁰ = Embedding(Z_i)                                             (learned atom embedding)
    u⁰   = 0 ∈ R^{state_dim}                                          (no state input, as for MP)

MEGNet block (``layers`` of them), with pre-block dense layers D_e, D_v, D_u ([hidden, width]):
    ê = D_e(e),  v̂ = D_v(v),  û = D_u(u)
    e_k' = φ_e(v̂_{s_k} ⊕ v̂_{r_k} ⊕ ê_k ⊕ û_b)                        (bond update)
    v_i' = φ_v(mean_{k : r_k = i} e_k' ⊕ v̂_i ⊕ û_b)                     (atom update)
    u_b' = φ_u(mean_{k ∈ b} e_k' ⊕ mean_{i ∈ b} v_i' ⊕ û_b)             (state update)
    e ← ê + e',  v ← v̂ + v',  u ← û + u'                                (skip connections)
    φ_e, φ_v, φ_u: dense [hidden, hidden, width]

Readout (MEGNet's own, provided through ``encode``; see :func:`prdnet.models.base.encode`)
    g_b = Set2Set_T(v) ⊕ Set2Set_T(e) ⊕ u_b                            ([B, 5·width])
The dense layers after the readout (paper: 32 → 16 → 1) are the shared head of
:class:`prdnet.models.base.CrystalPropertyModel` (``paper`` preset: 32 → 32 → 1), and with the
diffraction plug-in g is fused with d exactly as the mean-pooled g of the other backbones.
The node embeddings h = v (width ``width``) feed the diffraction plug-in.

Invariant by construction: distances only; means and Set2Set (softmax-attention sums) are
independent of atom and bond order and unchanged by a supercell, which repeats every atom
and bond the same number of times.

Default size (``paper`` preset, paper's Methods): atom embedding 16, 100 Gaussians on
[0, 5] Å with σ = 0.5 Å, state of width 2, 3 blocks, pre-block dense [64, 32], φ dense
[64, 64, 32], Set2Set with T = 3 steps. (The paper's bond graph is all pairs within 5 Å;
ours is the 12-nearest-neighbour graph, whose bonds beyond 5 Å fall on the tails of the
Gaussians: the ``small`` preset spreads them on [0, 8] Å.) Dropout is left out.
Cost per block: O(E · hidden · (3·width + hidden)).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_mean_pool
from torch_geometric.nn.aggr import Set2Set
from torch_geometric.nn.models.schnet import ShiftedSoftplus

from prdnet.models.base import crystal_geometry
from prdnet.models.basis import edge_geometry, gaussian_basis, linear_centers


def dense(widths: list[int]) -> nn.Sequential:
    """MEGNet dense stack: Linear + softplus2 for every consecutive pair of ``widths``.

    Weights are Glorot-uniform with gain 2 and biases zero (ours; the reference Keras code
    uses gain 1): softplus2 has slope ½ at 0, so at gain 1 (or PyTorch's default) the signal
    halves at each of the 15 dense layers on an atom's path to the readout (paper preset) and a fresh
    model predicts nearly one value for every crystal; gain 2 keeps its scale.
    """
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        linear = nn.Linear(width_in, width_out)
        nn.init.xavier_uniform_(linear.weight, gain=2.0)
        nn.init.zeros_(linear.bias)
        layers += [linear, ShiftedSoftplus()]
    return nn.Sequential(*layers)


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of the rows of ``values`` [M, C] per group ``index`` [M] → [size, C] (0 for an empty group)."""
    return global_mean_pool(values, index, size=size)


class MEGNetBlock(nn.Module):
    """One MEGNet block: pre-block dense layers, bond → atom → state updates, skip connections."""

    def __init__(self, edge_in: int, node_in: int, state_in: int, hidden: int, width: int) -> None:
        super().__init__()
        self.pre_edge = dense([edge_in, hidden, width])
        self.pre_node = dense([node_in, hidden, width])
        self.pre_state = dense([state_in, hidden, width])
        self.phi_edge = dense([4 * width, hidden, hidden, width])
        self.phi_node = dense([3 * width, hidden, hidden, width])
        self.phi_state = dense([3 * width, hidden, hidden, width])

    def forward(
        self,
        e: torch.Tensor,
        v: torch.Tensor,
        u: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        edge_batch: torch.Tensor,
        num_graphs: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Updated (e [E, W], v [N, W], u [B, W])."""
        sender, receiver = edge_index[0], edge_index[1]
        e, v, u = self.pre_edge(e), self.pre_node(v), self.pre_state(u)
        e_new = self.phi_edge(torch.cat([v[sender], v[receiver], e, u[edge_batch]], dim=-1))
        v_new = self.phi_node(torch.cat([scatter_mean(e_new, receiver, v.shape[0]), v, u[batch]], dim=-1))
        u_new = self.phi_state(
            torch.cat(
                [scatter_mean(e_new, edge_batch, num_graphs), scatter_mean(v_new, batch, num_graphs), u], dim=-1
            )
        )
        return e + e_new, v + v_new, u + u_new


class MEGNet(nn.Module):
    """MEGNet backbone: blocks of bond/atom/state updates; Set2Set ⊕ state readout in ``encode``.

    Args:
        embedding_dim: width of the learned atom embedding (paper: 16).
        hidden: first width of the dense stacks (paper: 64).
        width: block output width (paper: 32); h has this width, g has 5 × width.
        layers: number of MEGNet blocks (paper: 3).
        state_dim: width of the (zero) input state (paper: 2).
        set2set_steps: Set2Set processing steps T (paper: 3).
        max_atomic_number: largest atomic number the embedding table holds.
        rbf_bins, rbf_cutoff, rbf_width: Gaussian bond expansion (count, last centre Å, σ Å).
    """

    def __init__(
        self,
        embedding_dim: int,
        hidden: int,
        width: int,
        layers: int,
        state_dim: int,
        set2set_steps: int,
        max_atomic_number: int,
        rbf_bins: int,
        rbf_cutoff: float,
        rbf_width: float,
    ) -> None:
        super().__init__()
        self.out_channels = width
        self.pooled_channels = 5 * width
        self.state_dim = state_dim
        self.rbf_width = rbf_width
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        self.embedding = nn.Embedding(max_atomic_number + 1, embedding_dim)
        self.blocks = nn.ModuleList(
            MEGNetBlock(
                rbf_bins if index == 0 else width,
                embedding_dim if index == 0 else width,
                state_dim if index == 0 else width,
                hidden,
                width,
            )
            for index in range(layers)
        )
        self.node_set2set = Set2Set(width, set2set_steps)
        self.edge_set2set = Set2Set(width, set2set_steps)

    def _blocks(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.embedding(batch.atomic_numbers)
        frac_coords, lattice = crystal_geometry(batch, v.dtype)
        _, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        # MEGNet's exp(−(d − μ)²/σ²) is the 2σ'² Gaussian with σ' = σ/√2.
        e = gaussian_basis(distances, self.rbf_centers, self.rbf_width / 2**0.5)
        u = v.new_zeros(batch.num_graphs, self.state_dim)
        edge_batch = batch.batch[batch.edge_index[1]]
        for block in self.blocks:
            e, v, u = block(e, v, u, batch.edge_index, batch.batch, edge_batch, batch.num_graphs)
        return v, e, u, edge_batch

    def forward(self, batch: Batch) -> torch.Tensor:
        """Atom embeddings h = v [N, width]."""
        return self._blocks(batch)[0]

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Atom embeddings h [N, width] and MEGNet's readout g = Set2Set(v) ⊕ Set2Set(e) ⊕ u [B, 5·width]."""
        v, e, u, edge_batch = self._blocks(batch)
        size = batch.num_graphs
        nodes = self.node_set2set(v, batch.batch, dim_size=size)
        edges = self.edge_set2set(e, edge_batch, dim_size=size)
        g = torch.cat([nodes, edges, u], dim=-1)
        return v, g
