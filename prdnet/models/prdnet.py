"""PRDNet's real-space branch in two variants: the paper's text, and the released code.

Why two. The published PRDNet numbers (ICLR 2026) were produced by the released code,
GitHub Bin-Cao/PRDNet (commit a422056; built on Matformer's code), whose backbone is not the
one the paper describes, and whose diffraction branch never runs: ``Prdnet.forward`` calls it
only ``if hasattr(data, 'pos')`` (prdnet/model.py L296), and the graphs it builds carry no
``pos`` (prdnet/graphs.py L466). So

* ``variant: reference`` is the backbone that produced the published numbers (preset
  ``reference``, on the released trainer's graph as it ran; preset ``reference_invariant``, the
  same backbone on an invariant graph: see the graph bullet below), and
* ``variant: paper`` is the paper's text, section "Crystal Attention Structure Modeling"
  (presets ``small`` and ``paper``),

and either takes the diffraction plug-in (:mod:`prdnet.models.diffraction`) the same way,
through ``out_channels`` and h [N, F]. Messages run j → i (``edge_index[0]`` = j,
``edge_index[1]`` = centre i); per head h of width D, H heads; ‖ is concatenation.

``variant: paper`` (the paper's equations)
    atoms      h_i = E[Z_i]  (learned embedding; with ``atom_input: cgcnn``, W_in x_i of CGCNN's
               92 element features)
    edges      e_ij = RBF(d_ij) ⊕ SBF_ij ⊕ d_ij
               RBF_c(d) = exp(−(d − μ_c)² / 2σ_r²),            μ_c on [0, rbf_cutoff] Å
               SBF_ij = mean_{k ≠ j} φ(cos θ_ijk),  φ_c(x) = exp(−(x − ν_c)² / 2σ_a²), ν_c on [−1, 1]
               where θ_ijk is the angle at centre i between bonds ij and ik (all other edges into i)
    layer      q_ij = [W_q h_i ‖ W_q h_i ‖ W_q h_i]
               k_ij = [W_k h_i ‖ W_k h_j ‖ W_e e_ij],   v_ij = [W_v h_i ‖ W_v h_j ‖ W_e e_ij]
               α_ij = q_ij ⊙ k_ij / √(3D)                      (element-wise, [3D] per head)
               m_ij = (W_msg v_ij) ⊙ σ(LayerNorm(α_ij))        ([3D] per head)
               m_i  = Σ_j m_ij,   u_i = SiLU(BN(W_concat m_i))
               β_i  = σ(W_β [u_i ‖ h_i ‖ u_i − h_i]),   h_i ← β_i ⊙ h_i + (1 − β_i) ⊙ u_i

``variant: reference`` (Bin-Cao/PRDNet, prdnet/model.py and prdnet/transformer.py)
    atoms      h_i = W₂ Dropout(SiLU(LN(W₁ x_i))),  x_i CGCNN's 92 element features
               (``atom_embedding``, model.py L74-80; ``atom_features: cgcnn``, trainer.py L889)
    edges      e_ij = W₃ SiLU(LN(W₂ Dropout(SiLU(LN(W₁ RBF(d_ij))))))   (``rbf``, model.py L83-97)
               RBF_c(d) = exp(−(d − μ_c)²/Δμ): ``rbf_bins`` = 256 centres on [0, 8] Å, spacing
               Δμ (model_utils.py L15-48, γ = 1/Δμ), i.e. σ = √(Δμ/2); no angles (use_angle
               False, model.py L50; the angle modules of model.py L136-148 are never called)
    layer      (``PrdnetConv``, transformer.py L20-158; head width D = F: transformer.py
               L52-57 with out_channels = node_features, model.py L153)
               q, k, v, α_ij as in the paper variant (L103-105, L150-152; W_e without bias, L57)
               m_ij = LN_D(W_out ((W_msg v_ij) ⊙ σ(LN_3D(α_ij))))   (W_msg 3D → 3D, W_out 3D → D,
                      L75-76, L156-157; shared by the heads)
               m_i  = Σ_j m_ij  (aggr 'add', L36),   u_i = SiLU(BN(W_concat m_i)) + W_skip h_i
                      (L119-130; ``beta`` is False, so there is no gate)
    block      h_i ← h_i + Dropout(LN(u_i))  (model.py L266-283; dropout 0.1, model.py L38)

    Parameters at the official size (F = D = 256, H = 8, 6 layers, 256 RBF bins): each
    ``PrdnetConv`` 3,483,648, the 6 layers 20,901,888 (the paper's "20.9M"); counted on the
    official module itself, instantiated from Bin-Cao/PRDNet a422056. Our layer stack
    (``layers``) holds exactly that many; the per-layer LayerNorms sit beside it in
    ``layer_norms`` as in the official ``Prdnet`` (model.py L159-162). Checked once (not a
    test: the official code needs torch_scatter and torch_sparse): with the official module's
    weights copied into ours, at small widths, both give the same predictions to 4e-7 on 8
    embedded MP crystals, in eval and in training mode.

Ablations (paper Table "Ablation"), in both variants: SingleHead sets H = 1; NoEdge drops the
W_e e_ij slot from k and v (α then uses √(2D)) and no edge features are computed; NoRes
replaces the paper's gated update by h_i ← u_i, and in the reference removes the block's
residual (h_i ← Dropout(LN(u_i)), the official ``use_residual_connections: False``, model.py
L282). NoDiff is the backbone without the diffraction plug-in (:mod:`prdnet.models.base`).

Deliberate deviations of ``variant: reference`` from the official code:
    * the readout is not here: :class:`prdnet.models.base.CrystalPropertyModel` pools and
      applies the head. The official head (``fc_layers: 2``) is Linear(F, 512) → Linear(512, 1)
      with nothing between them (its LayerNorm and SiLU are applied only ``if i <
      len(self.fc_layers) - 1``, model.py L320, never true for one hidden layer), an affine map
      of the pooled vector; the ``reference`` preset uses ``head.layers: 0``, one Linear(F, 1):
      the same function class, 131,840 parameters fewer.
    * modules the official model builds but never calls are not built: ``edge_init``,
      ``angle_init_layers`` (model.py L136-148), ``fc_norms`` (L186) and the diffraction
      branch ``DiffractionIntegration`` (L214-221, 1,498,796 parameters). The official model
      counts 23,184,813 parameters, of which 21,325,569 take part in a forward pass.
    * the graph is the graph recipe's; the model adds no edges itself. Preset ``reference``
      reads ``prdnet_reference`` (config/models.yaml), the graph the released trainer builds,
      edge for edge (trainer.py L600-610, prdnet/graphs.py L242-384: the 12 nearest in the
      stored cell, exact ties, 12 lattice self-edges ±a, ±b, ±c, ±(a+b), ±(a+c), ±(b+c) but
      none in a crystal whose search radius was widened, mutual neighbours twice each way), so
      it reproduces the released model as it ran; its self-edges and multiplicities follow the
      stored cell, so it is not invariant to the choice of cell. Preset ``reference_invariant``
      reads ``prdnet_reference_invariant``: the same rule in the canonical cell, each edge
      once, 12 self-edges (:mod:`prdnet.data.graphs`).

How the layers compute it (issue 13; outputs as the direct per-edge evaluation to float
rounding, tests/test_prdnet_fast_equivalence.py). W_msg v_ij = W_a W_v h_i + W_b W_v h_j +
W_c W_e e_ij, with W_msg = [W_a | W_b | W_c] split by slot, so the first two products are
made once per atom (N rows) and gathered, and the third through W_c W_e^h, formed once per
head (:func:`split_message_projection`); q_i is scaled by 1/√(3D) once per atom, and q_i ⊙ k_i is
a per-atom product. The per-edge element-wise work (gathers, α, LayerNorm, σ, products, sum into
the centre) runs on blocks of edges and is recomputed block by block in the backward pass
(:class:`EdgeMessageSum`), so a layer keeps for backward, per edge, only W_e e_ij and
W_c W_e e_ij. ``checkpoint_layers: true`` recomputes these too (activation checkpointing of
the messages; BatchNorm, gate and residual stay outside, so batch statistics update once).

Cost per layer, N atoms, E edges, edge-feature width d_e: time O(N·F·H·D + N·H·D·3D) per atom,
O(E·d_e·H·4D) for the per-edge products W_e e_ij and W_c W_e e_ij, O(E·H·3D) element-wise; the
reference adds W_out per edge, O(E·H·3D·D), done twice (forward, and its recomputation in the
backward pass). Memory kept for the backward pass: O(E·H·4D) (none per edge under
``checkpoint_layers``) plus O(N·H·3D). At the ``paper`` preset (d_e = 81, D = 256, H = 8,
E ≈ 13 N) that is 0.66M multiply-adds per edge (plus 3.1M per atom for the two per-atom
parts) instead of 4.9M per edge (W_msg on the concatenated [E, H, 3D] values, O(E·H·(3D)²),
before), and 4D instead of 22D floats kept per edge and head. The paper variant's angular
summary costs O(Σ_i c_i²) once per forward, for c_i edges into atom i.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.utils.checkpoint
from torch import nn
from torch.autograd.function import once_differentiable
from torch_geometric.data import Batch

from prdnet.models.atom_features import AtomFeatures
from prdnet.models.base import crystal_geometry
from prdnet.models.basis import (
    angular_summary,
    edge_geometry,
    gaussian_basis,
    linear_centers,
    spacing_width,
)

VARIANTS = ("paper", "reference")
"""Values of the backbone hyperparameter ``variant``."""

PAPER_ONLY = ("rbf_width", "sbf_bins", "sbf_width")
"""Hyperparameters of ``variant: paper`` only (its Gaussian widths and angular basis)."""

REFERENCE_ONLY = ("dropout",)
"""Hyperparameters of ``variant: reference`` only."""


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
    """Paper variant: e_ij = RBF(d_ij) ⊕ SBF_ij ⊕ d_ij, [E, n_rbf + n_sbf + 1]; d in Å.

    SBF_ij is the mean over the other edges ik into the same centre i of a Gaussian basis of
    cos θ_ijk (:func:`prdnet.models.basis.angular_summary`).
    """
    radial = gaussian_basis(distances, rbf_centers, rbf_width)
    angular = angular_summary(vectors, centre, num_nodes, sbf_centers, sbf_width)
    return torch.cat([radial, angular, distances.unsqueeze(-1)], dim=-1)


def reference_distance_basis(distances: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Reference variant's RBF: exp(−(d − μ_c)² / Δμ), [E, C], for C equally spaced centres μ
    (Å) with spacing Δμ (Å), i.e. a Gaussian of σ = √(Δμ/2) (official ``RBFExpansion`` with
    γ = 1/Δμ, Bin-Cao/PRDNet prdnet/model_utils.py L34-48)."""
    width = spacing_width(float(centers[0]), float(centers[-1]), centers.numel())
    return gaussian_basis(distances, centers, width)


CPU_EDGE_CHUNK_ELEMENTS = 2**18
"""Size (elements) of one block of per-edge messages [edges, H, S·D] on the CPU: the edge stage
runs block by block so that its element-wise work (gathers, LayerNorm, σ, products) stays in
the processor's cache (1 MiB in float32). Measured on one thread, `paper` sizes, the 2,938
edges of 16 embedded crystals: that forward work 5× faster in blocks of 2^16 to 2^18 elements
than in one pass; whole layers, forward + backward, within noise from 2^16 to 2^22. The result
does not depend on it (each atom sums its edges in the same order)."""

ACCELERATOR_EDGE_CHUNK_ELEMENTS = 2**26
"""Size of one block of per-edge messages on a GPU (256 MiB in float32): large, so that the
block loop adds few kernel launches, while it bounds the transient memory of the edge stage.
Not tuned: no GPU was at hand when this was written."""


def edge_chunk_rows(device: torch.device, row_elements: int) -> int:
    """Edges per block of the edge stage for messages of ``row_elements`` elements per edge."""
    budget = CPU_EDGE_CHUNK_ELEMENTS if device.type == "cpu" else ACCELERATOR_EDGE_CHUNK_ELEMENTS
    return max(1, budget // max(1, row_elements))


def split_message_projection(
    message: nn.Linear, edge: nn.Linear | None, values: torch.Tensor, edge_attr: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """W_msg v_ij + b split by slot, v_ij = [W_v h_i ‖ W_v h_j ‖ W_e e_ij] per head:
    W_msg v_ij + b = (W_a W_v h_i + b) + W_b W_v h_j + (W_c W_e) e_ij,  W_msg = [W_a | W_b | W_c]
    (its columns by slot; shared by the heads).

    Returns (W_a W_v h + b, W_b W_v h) per atom, [N, H, S·D] each, computed once per atom instead
    of once per edge, and (W_c W_e) e_ij per edge, [E, H, S·D], through the product W_c W_e^h
    formed once per head (H·S·D × d_e: cheaper than W_c applied per edge when d_e < D, as
    in the paper variant, and as cheap when d_e = D, the reference; None under NoEdge).
    ``values`` [N, H, D] is W_v h; ``edge_attr`` [E, d_e] the edge features.
    """
    width = values.shape[-1]
    weight = message.weight
    centre_part = nn.functional.linear(values, weight[:, :width], message.bias)
    neighbour_part = nn.functional.linear(values, weight[:, width : 2 * width])
    if edge is None:
        return centre_part, neighbour_part, None
    heads = values.shape[1]
    folded = torch.matmul(weight[:, 2 * width :], edge.weight.view(heads, width, -1))  # [H, S·D, d_e]
    edge_part = nn.functional.linear(edge_attr, folded.flatten(0, 1)).view(-1, heads, weight.shape[0])
    return centre_part, neighbour_part, edge_part


def attention_scores(
    query_centre: torch.Tensor, key_neighbour: torch.Tensor, query_key_centre: torch.Tensor, edge: torch.Tensor | None
) -> torch.Tensor:
    """α_ij = [q_i ⊙ k_i ‖ q_i ⊙ k_j ‖ q_i ⊙ W_e e_ij], [n, H, S·D], for queries q already scaled
    by 1/√(S·D) (``edge`` = W_e e_ij; that slot absent under NoEdge)."""
    slots = [query_key_centre, query_centre * key_neighbour]
    if edge is not None:
        slots.append(query_centre * edge)
    return torch.cat(slots, dim=-1)


def paper_message(
    query_centre: torch.Tensor,
    key_neighbour: torch.Tensor,
    query_key_centre: torch.Tensor,
    edge: torch.Tensor | None,
    value_message: torch.Tensor,
    score_norm_weight: torch.Tensor,
    score_norm_bias: torch.Tensor,
    *,
    eps: float,
) -> torch.Tensor:
    """m_ij = (W_msg v_ij) ⊙ σ(LN(α_ij)), [n, H, S·D], from the gathered per-edge inputs
    (``value_message`` = W_msg v_ij + b)."""
    alpha = attention_scores(query_centre, key_neighbour, query_key_centre, edge)
    gate = torch.sigmoid(nn.functional.layer_norm(alpha, alpha.shape[-1:], score_norm_weight, score_norm_bias, eps))
    return value_message * gate


def reference_message(
    query_centre: torch.Tensor,
    key_neighbour: torch.Tensor,
    query_key_centre: torch.Tensor,
    edge: torch.Tensor | None,
    value_message: torch.Tensor,
    score_norm_weight: torch.Tensor,
    score_norm_bias: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
    out_norm_weight: torch.Tensor,
    out_norm_bias: torch.Tensor,
    *,
    eps: float,
    out_eps: float,
) -> torch.Tensor:
    """m_ij = LN_D(W_out ((W_msg v_ij) ⊙ σ(LN_3D(α_ij)))), [n, H, D]."""
    gated = paper_message(
        query_centre, key_neighbour, query_key_centre, edge, value_message, score_norm_weight, score_norm_bias, eps=eps
    )
    projected = nn.functional.linear(gated, out_weight, out_bias)
    return nn.functional.layer_norm(projected, projected.shape[-1:], out_norm_weight, out_norm_bias, out_eps)


class EdgeMessageSum(torch.autograd.Function):
    """Σ_{j → i} m_ij per centre i, computed edge block by edge block, with
    m_ij = ``message``(q_i, k_j, q_i ⊙ k_i, W_e e_ij, M_ij, *parameters) and M_ij = W_msg v_ij + b
    assembled from its per-atom and per-edge parts (:func:`split_message_projection`).

    Forward keeps for the backward pass only its inputs: per atom q, k, q ⊙ k and the two
    per-atom parts of M; per edge W_e e_ij [E, H, D] and (W_c W_e) e_ij [E, H, S·D]. Backward
    recomputes each block's messages, differentiates them (autograd on the block), and scatters
    the gradients of the gathered inputs back to their atoms. So no other [E, H, S·D] tensor is
    kept (the layer before issue 13 kept seven), and the element-wise work (gathers, LayerNorm,
    σ, products) runs on cache-sized blocks (:func:`edge_chunk_rows`).
    """

    @staticmethod
    def forward(ctx, message, centre, neighbour, rows, width, query, key, query_key,
                centre_part, neighbour_part, edge, edge_part, *parameters):
        """[N, H, width] sums of the messages over the edges into each atom."""
        ctx.message, ctx.rows = message, rows
        # under mixed precision (training.precision bf16 | fp16) the backward pass recomputes the
        # messages with the forward's autocast state, as torch.amp.custom_bwd does
        ctx.device_type = query.device.type
        ctx.autocast = torch.is_autocast_enabled(ctx.device_type), torch.get_autocast_dtype(ctx.device_type)
        ctx.save_for_backward(centre, neighbour, query, key, query_key, centre_part, neighbour_part, edge, edge_part,
                              *parameters)
        total = None
        for block in _edge_blocks(centre.numel(), rows):
            inputs = _block_inputs(block, centre, neighbour, query, key, query_key, centre_part, neighbour_part,
                                   edge, edge_part)
            messages = message(*inputs, *parameters)
            if total is None:  # the messages' dtype (float32 for the reference's LayerNorm under autocast)
                total = messages.new_zeros(query.shape[0], query.shape[1], width)
            total.index_add_(0, centre[block], messages)
        return total if total is not None else query.new_zeros(query.shape[0], query.shape[1], width)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total):
        """Gradients of the tensor inputs, block by block (recomputed messages)."""
        enabled, autocast_dtype = ctx.autocast
        centre, neighbour, query, key, query_key, centre_part, neighbour_part, edge, edge_part, *parameters = (
            ctx.saved_tensors
        )
        grad_query, grad_key, grad_query_key = (torch.zeros_like(t) for t in (query, key, query_key))
        grad_centre_part, grad_neighbour_part = torch.zeros_like(centre_part), torch.zeros_like(neighbour_part)
        grad_edge = torch.empty_like(edge) if edge is not None else None
        grad_edge_part = torch.empty_like(edge_part) if edge_part is not None else None
        grad_parameters = [torch.zeros_like(parameter) for parameter in parameters]
        for block in _edge_blocks(centre.numel(), ctx.rows):
            block_centre, block_neighbour = centre[block], neighbour[block]
            inputs = _block_inputs(block, centre, neighbour, query, key, query_key, centre_part, neighbour_part,
                                   edge, edge_part)
            leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
            leaf_parameters = [parameter.detach().requires_grad_() for parameter in parameters]
            with torch.enable_grad(), torch.autocast(ctx.device_type, dtype=autocast_dtype, enabled=enabled):
                messages = ctx.message(*leaves, *leaf_parameters)
            wrt = [t for t in leaves if t is not None] + leaf_parameters
            grads = iter(torch.autograd.grad(messages, wrt, grad_total.index_select(0, block_centre)))
            grad_query.index_add_(0, block_centre, next(grads))
            grad_key.index_add_(0, block_neighbour, next(grads))
            grad_query_key.index_add_(0, block_centre, next(grads))
            if edge is not None:
                grad_edge[block] = next(grads)
            grad_message = next(grads)
            grad_centre_part.index_add_(0, block_centre, grad_message)
            grad_neighbour_part.index_add_(0, block_neighbour, grad_message)
            if edge_part is not None:
                grad_edge_part[block] = grad_message
            for total, grad in zip(grad_parameters, grads):
                total += grad
        return (None, None, None, None, None, grad_query, grad_key, grad_query_key, grad_centre_part,
                grad_neighbour_part, grad_edge, grad_edge_part, *grad_parameters)


def _edge_blocks(edges: int, rows: int) -> list[slice]:
    """Consecutive slices of ``rows`` edges covering ``edges``."""
    return [slice(start, min(start + rows, edges)) for start in range(0, edges, rows)]


def _block_inputs(block, centre, neighbour, query, key, query_key, centre_part, neighbour_part, edge, edge_part):
    """The gathered per-edge inputs of one block: q_i, k_j, q_i ⊙ k_i, W_e e_ij, M_ij."""
    block_centre, block_neighbour = centre[block], neighbour[block]
    value_message = centre_part.index_select(0, block_centre) + neighbour_part.index_select(0, block_neighbour)
    if edge_part is not None:
        value_message += edge_part[block]
    return (
        query.index_select(0, block_centre),
        key.index_select(0, block_neighbour),
        query_key.index_select(0, block_centre),
        None if edge is None else edge[block],
        value_message,
    )


class EdgeAttention(nn.Module):
    """What both variants' attention layers share: the projections q, k, v, e (``query``,
    ``key``, ``value``, ``edge``), LN_{S·D} of the scores (``score_norm``) and W_msg (``message``);
    :meth:`summed_messages` gives Σ_j m_ij per atom, optionally under activation checkpointing.

    Args:
        channels: node width F.
        heads: number of heads H.
        head_dim: width D of each of the slots of a head.
        edge_dim: width of e_ij (ignored when ``use_edge_features`` is false).
        use_edge_features: include the W_e e_ij slot in key and value (false = NoEdge).
        checkpoint: recompute the layer's messages in the backward pass instead of keeping
            its per-edge tensors W_e e_ij and (W_c W_e) e_ij (activation checkpointing; for the
            largest models). BatchNorm and the gate are outside the recomputed part, so the
            batch statistics are updated once per pass.
    """

    def __init__(
        self, channels: int, heads: int, head_dim: int, edge_dim: int, use_edge_features: bool, checkpoint: bool
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.slots = 3 if use_edge_features else 2
        self.checkpoint = checkpoint
        inner = heads * head_dim
        self.query = nn.Linear(channels, inner)
        self.key = nn.Linear(channels, inner)
        self.value = nn.Linear(channels, inner)
        self.edge = nn.Linear(edge_dim, inner, bias=False) if use_edge_features else None
        self.score_norm = nn.LayerNorm(self.slots * head_dim)
        self.message = nn.Linear(self.slots * head_dim, self.slots * head_dim)

    def message_function(self) -> tuple[object, tuple[torch.Tensor, ...], int]:
        """(message function, its parameters, width of m_ij); see :class:`EdgeMessageSum`."""
        raise NotImplementedError

    def summed_messages(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None
    ) -> torch.Tensor:
        """Σ_j m_ij per atom, [N, H, width], under activation checkpointing if ``checkpoint``."""
        if self.checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(
                self._summed_messages, h, edge_index, edge_attr, use_reentrant=False
            )
        return self._summed_messages(h, edge_index, edge_attr)

    def _summed_messages(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None
    ) -> torch.Tensor:
        """Σ_j m_ij per atom: projections per atom, W_e e_ij and (W_c W_e) e_ij per edge, then
        :class:`EdgeMessageSum`."""
        shape = (-1, self.heads, self.head_dim)
        query = self.query(h).view(shape) / math.sqrt(self.slots * self.head_dim)
        key, values = self.key(h).view(shape), self.value(h).view(shape)
        centre_part, neighbour_part, edge_part = split_message_projection(self.message, self.edge, values, edge_attr)
        edge = self.edge(edge_attr).view(shape) if self.edge is not None else None
        message, parameters, width = self.message_function()
        rows = edge_chunk_rows(h.device, self.heads * self.slots * self.head_dim)
        return EdgeMessageSum.apply(
            message, edge_index[1], edge_index[0], rows, width, query, key, query * key,
            centre_part, neighbour_part, edge, edge_part, *parameters,
        )


class CrystalAttentionLayer(EdgeAttention):
    """One attention layer of ``variant: paper`` (formulas in the module docstring).

    Args:
        channels: node width F.
        heads: number of heads H.
        head_dim: width D of each of the three slots of a head.
        edge_dim: width of e_ij (ignored when ``use_edge_features`` is false).
        use_edge_features: include the W_e e_ij slot in key and value (false = NoEdge).
        residual: learned gated residual update (false = NoRes).
        checkpoint: activation checkpointing of the messages (:class:`EdgeAttention`).
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        edge_dim: int,
        use_edge_features: bool = True,
        residual: bool = True,
        checkpoint: bool = False,
    ) -> None:
        super().__init__(channels, heads, head_dim, edge_dim, use_edge_features, checkpoint)
        self.concat = nn.Linear(heads * self.slots * head_dim, channels)
        self.norm = nn.BatchNorm1d(channels)
        self.gate = nn.Linear(3 * channels, channels) if residual else None

    def message_function(self) -> tuple[object, tuple[torch.Tensor, ...], int]:
        """m_ij = (W_msg v_ij) ⊙ σ(LN(α_ij)) (:func:`paper_message`), width S·D."""
        norm = self.score_norm
        return partial(paper_message, eps=norm.eps), (norm.weight, norm.bias), self.slots * self.head_dim

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        """Updated node embeddings [N, F] from h [N, F], edges [2, E] and e_ij [E, edge_dim]."""
        aggregated = self.summed_messages(h, edge_index, edge_attr)
        update = nn.functional.silu(self.norm(self.concat(aggregated.flatten(1))))
        if self.gate is None:
            return update
        beta = torch.sigmoid(self.gate(torch.cat([update, h, update - h], dim=-1)))
        return beta * h + (1.0 - beta) * update


class ReferenceAttentionLayer(EdgeAttention):
    """One attention layer of ``variant: reference``: u_i = SiLU(BN(W_concat Σ_j m_ij)) + W_skip h_i
    (official ``PrdnetConv``, Bin-Cao/PRDNet prdnet/transformer.py L20-158; formulas in the
    module docstring). The block's residual, LayerNorm and dropout are the backbone's.

    Args:
        channels: node width F.
        heads: number of heads H.
        head_dim: width D of each of the three slots of a head (official: D = F).
        edge_dim: width of e_ij (ignored when ``use_edge_features`` is false).
        use_edge_features: include the W_e e_ij slot in key and value (false = NoEdge).
        checkpoint: activation checkpointing of the messages (:class:`EdgeAttention`).
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        edge_dim: int,
        use_edge_features: bool = True,
        checkpoint: bool = False,
    ) -> None:
        super().__init__(channels, heads, head_dim, edge_dim, use_edge_features, checkpoint)
        self.message_out = nn.Sequential(nn.Linear(self.slots * head_dim, head_dim), nn.LayerNorm(head_dim))
        self.concat = nn.Linear(heads * head_dim, channels)
        self.norm = nn.BatchNorm1d(channels)
        self.skip = nn.Linear(channels, channels)

    def message_function(self) -> tuple[object, tuple[torch.Tensor, ...], int]:
        """m_ij = LN_D(W_out ((W_msg v_ij) ⊙ σ(LN_3D(α_ij)))) (:func:`reference_message`), width D."""
        out, out_norm, norm = self.message_out[0], self.message_out[1], self.score_norm
        message = partial(reference_message, eps=norm.eps, out_eps=out_norm.eps)
        parameters = (norm.weight, norm.bias, out.weight, out.bias, out_norm.weight, out_norm.bias)
        return message, parameters, self.head_dim

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        """u [N, F] from h [N, F], edges [2, E] and e_ij [E, edge_dim]."""
        aggregated = self.summed_messages(h, edge_index, edge_attr)
        return nn.functional.silu(self.norm(self.concat(aggregated.flatten(1)))) + self.skip(h)


def reference_input_mlp(in_channels: int, channels: int, dropout: float) -> nn.Sequential:
    """Reference atom encoder after the element features: W₂ Dropout(SiLU(LN(W₁ x)))
    (official ``atom_embedding``, prdnet/model.py L74-80)."""
    return nn.Sequential(
        nn.Linear(in_channels, channels),
        nn.LayerNorm(channels),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(channels, channels),
    )


def reference_edge_mlp(rbf_bins: int, channels: int, dropout: float) -> nn.Sequential:
    """Reference edge encoder after the RBF: W₃ SiLU(LN(W₂ Dropout(SiLU(LN(W₁ x)))))
    (official ``rbf``, prdnet/model.py L83-97)."""
    return nn.Sequential(
        nn.Linear(rbf_bins, channels),
        nn.LayerNorm(channels),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(channels, channels),
        nn.LayerNorm(channels),
        nn.SiLU(),
        nn.Linear(channels, channels),
    )


def _check_variant_keys(variant: str, given: dict[str, object]) -> None:
    """Raise ``ValueError`` for an unknown variant, a key the variant does not take, or a
    missing key it needs."""
    if variant not in VARIANTS:
        raise ValueError(f"prdnet variant must be one of {list(VARIANTS)}, not {variant!r}")
    foreign = REFERENCE_ONLY if variant == "paper" else PAPER_ONLY
    wrong = sorted(key for key in foreign if given[key] is not None)
    if wrong:
        raise ValueError(f"prdnet variant {variant!r} takes no hyperparameter(s) {wrong}")
    needed = PAPER_ONLY if variant == "paper" else REFERENCE_ONLY
    missing = sorted(key for key in needed if given[key] is None)
    if missing:
        raise ValueError(f"prdnet variant {variant!r} needs hyperparameter(s) {missing}")


class PRDNet(nn.Module):
    """PRDNet crystal-attention backbone: atom inputs → L attention layers → h [N, F].

    Args:
        channels: node width F.
        layers: number of attention layers L.
        heads: heads H per layer (1 = SingleHead ablation).
        head_dim: width D of each head slot (the official code uses D = F).
        rbf_bins, rbf_cutoff: distance basis, centres on [0, rbf_cutoff] Å.
        variant: ``paper`` (the paper's text) or ``reference`` (the released code); see the
            module docstring.
        max_atomic_number: largest atomic number of a learned embedding.
        rbf_width: σ of the distance basis, Å (paper only; the reference derives it from the
            spacing of the centres, as its official code does).
        sbf_bins, sbf_width: Gaussian basis of cos θ_ijk (paper only; count on [−1, 1], σ).
        dropout: dropout rate of the atom and edge encoders and of every block (reference only).
        use_edge_features: false = NoEdge ablation.
        residual: false = NoRes ablation.
        checkpoint_layers: activation checkpointing in every attention layer: the backward pass
            recomputes each layer's messages instead of keeping its per-edge tensors (less
            memory, about one more forward pass of the messages in time; for the largest models).
        atom_table: CGCNN's element table [max_Z + 1, 92] (``atom_input: cgcnn``), or None
            for a learned embedding of width F.
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        heads: int,
        head_dim: int,
        rbf_bins: int,
        rbf_cutoff: float,
        variant: str = "paper",
        max_atomic_number: int = 100,
        rbf_width: float | None = None,
        sbf_bins: int | None = None,
        sbf_width: float | None = None,
        dropout: float | None = None,
        use_edge_features: bool = True,
        residual: bool = True,
        checkpoint_layers: bool = False,
        atom_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        _check_variant_keys(
            variant, {"rbf_width": rbf_width, "sbf_bins": sbf_bins, "sbf_width": sbf_width, "dropout": dropout}
        )
        self.variant = variant
        self.out_channels = channels
        self.use_edge_features = use_edge_features
        self.residual = residual
        self.atom_features = AtomFeatures(atom_table, channels, max_atomic_number)
        self.register_buffer("rbf_centers", linear_centers(0.0, rbf_cutoff, rbf_bins).float())
        if variant == "paper":
            self.input_projection = (
                nn.Linear(self.atom_features.out_channels, channels) if atom_table is not None else nn.Identity()
            )
            self.rbf_width, self.sbf_width = rbf_width, sbf_width
            self.register_buffer("sbf_centers", linear_centers(-1.0, 1.0, sbf_bins).float())
            edge_dim = rbf_bins + sbf_bins + 1
            self.layers = nn.ModuleList(
                CrystalAttentionLayer(
                    channels, heads, head_dim, edge_dim, use_edge_features, residual, checkpoint_layers
                )
                for _ in range(layers)
            )
        else:
            self.input_projection = reference_input_mlp(self.atom_features.out_channels, channels, dropout)
            self.edge_encoder = reference_edge_mlp(rbf_bins, channels, dropout) if use_edge_features else None
            self.layers = nn.ModuleList(
                ReferenceAttentionLayer(channels, heads, head_dim, channels, use_edge_features, checkpoint_layers)
                for _ in range(layers)
            )
            self.layer_norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
            self.block_dropout = nn.Dropout(dropout)

    def edge_attributes(self, batch: Batch, dtype: torch.dtype) -> torch.Tensor:
        """e_ij [E, ·] of the batch's edges: the paper's RBF ⊕ SBF ⊕ d, or the reference's
        encoded RBF of d (module docstring)."""
        frac_coords, lattice = crystal_geometry(batch, dtype)
        vectors, distances = edge_geometry(frac_coords, lattice, batch.edge_index, batch.edge_offset, batch.batch)
        if self.variant == "reference":
            return self.edge_encoder(reference_distance_basis(distances, self.rbf_centers))
        return edge_features(
            vectors,
            distances,
            batch.edge_index[1],
            batch.num_nodes,
            self.rbf_centers,
            self.rbf_width,
            self.sbf_centers,
            self.sbf_width,
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Node embeddings h [N, F]."""
        h = self.input_projection(self.atom_features(batch.atomic_numbers))
        edge_attr = self.edge_attributes(batch, h.dtype) if self.use_edge_features else None
        if self.variant == "paper":
            for layer in self.layers:
                h = layer(h, batch.edge_index, edge_attr)
            return h
        for layer, norm in zip(self.layers, self.layer_norms):
            update = self.block_dropout(norm(layer(h, batch.edge_index, edge_attr)))
            h = h + update if self.residual else update
        return h
