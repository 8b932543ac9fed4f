"""PRDNet's attention layers as they were before issue 13: the reference that
benchmarks/bench_attention.py times the package's layers against, and that
tests/test_prdnet_fast_equivalence.py compares them with.

A frozen copy of the two layer classes of prdnet/models/prdnet.py at the faithful-baselines
rework (issue 10), kept out of the package on purpose: every product of the layer is done per
edge (W_msg on the concatenated [E, H, 3D] values, the query repeated three times), and all
these per-edge tensors are kept for the backward pass. Parameter names are the package's, so a
state dict loads into either; :func:`reference_like` gives a model whose attention layers are
these. Formulas: the package module's docstring.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from prdnet.models import prdnet as fast


class CrystalAttentionLayer(nn.Module):
    """One attention layer of ``variant: paper`` (formulas in the module docstring).

    Args:
        channels: node width F.
        heads: number of heads H.
        head_dim: width D of each of the three slots of a head.
        edge_dim: width of e_ij (ignored when ``use_edge_features`` is false).
        use_edge_features: include the W_e e_ij slot in key and value (false = NoEdge).
        residual: learned gated residual update (false = NoRes).
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        edge_dim: int,
        use_edge_features: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.slots = 3 if use_edge_features else 2
        inner = heads * head_dim
        self.query = nn.Linear(channels, inner)
        self.key = nn.Linear(channels, inner)
        self.value = nn.Linear(channels, inner)
        self.edge = nn.Linear(edge_dim, inner, bias=False) if use_edge_features else None
        self.score_norm = nn.LayerNorm(self.slots * head_dim)
        self.message = nn.Linear(self.slots * head_dim, self.slots * head_dim)
        self.concat = nn.Linear(heads * self.slots * head_dim, channels)
        self.norm = nn.BatchNorm1d(channels)
        self.gate = nn.Linear(3 * channels, channels) if residual else None

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        """Updated node embeddings [N, F] from h [N, F], edges [2, E] and e_ij [E, edge_dim]."""
        neighbour, centre = edge_index[0], edge_index[1]
        shape = (-1, self.heads, self.head_dim)
        q, k, v = self.query(h).view(shape), self.key(h).view(shape), self.value(h).view(shape)
        keys, values = [k[centre], k[neighbour]], [v[centre], v[neighbour]]
        if self.edge is not None:
            e = self.edge(edge_attr).view(shape)
            keys.append(e)
            values.append(e)
        key, value = torch.cat(keys, dim=-1), torch.cat(values, dim=-1)
        query = q[centre].repeat(1, 1, self.slots)
        alpha = query * key / math.sqrt(self.slots * self.head_dim)
        messages = self.message(value) * torch.sigmoid(self.score_norm(alpha))
        aggregated = h.new_zeros(h.shape[0], *messages.shape[1:]).index_add_(0, centre, messages)
        update = nn.functional.silu(self.norm(self.concat(aggregated.flatten(1))))
        if self.gate is None:
            return update
        beta = torch.sigmoid(self.gate(torch.cat([update, h, update - h], dim=-1)))
        return beta * h + (1.0 - beta) * update


class ReferenceAttentionLayer(nn.Module):
    """One attention layer of ``variant: reference``: u_i = SiLU(BN(W_concat Σ_j m_ij)) + W_skip h_i
    (official ``PrdnetConv``, Bin-Cao/PRDNet prdnet/transformer.py L20-158; formulas in the
    module docstring). The block's residual, LayerNorm and dropout are the backbone's.

    Args:
        channels: node width F.
        heads: number of heads H.
        head_dim: width D of each of the three slots of a head (official: D = F).
        edge_dim: width of e_ij (ignored when ``use_edge_features`` is false).
        use_edge_features: include the W_e e_ij slot in key and value (false = NoEdge).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, edge_dim: int, use_edge_features: bool = True) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.slots = 3 if use_edge_features else 2
        inner = heads * head_dim
        self.query = nn.Linear(channels, inner)
        self.key = nn.Linear(channels, inner)
        self.value = nn.Linear(channels, inner)
        self.edge = nn.Linear(edge_dim, inner, bias=False) if use_edge_features else None
        self.score_norm = nn.LayerNorm(self.slots * head_dim)
        self.message = nn.Linear(self.slots * head_dim, self.slots * head_dim)
        self.message_out = nn.Sequential(nn.Linear(self.slots * head_dim, head_dim), nn.LayerNorm(head_dim))
        self.concat = nn.Linear(inner, channels)
        self.norm = nn.BatchNorm1d(channels)
        self.skip = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        """u [N, F] from h [N, F], edges [2, E] and e_ij [E, edge_dim]."""
        neighbour, centre = edge_index[0], edge_index[1]
        shape = (-1, self.heads, self.head_dim)
        q, k, v = self.query(h).view(shape), self.key(h).view(shape), self.value(h).view(shape)
        keys, values = [k[centre], k[neighbour]], [v[centre], v[neighbour]]
        if self.edge is not None:
            e = self.edge(edge_attr).view(shape)
            keys.append(e)
            values.append(e)
        key, value = torch.cat(keys, dim=-1), torch.cat(values, dim=-1)
        query = q[centre].repeat(1, 1, self.slots)
        alpha = query * key / math.sqrt(self.slots * self.head_dim)
        messages = self.message_out(self.message(value) * torch.sigmoid(self.score_norm(alpha)))
        aggregated = h.new_zeros(h.shape[0], self.heads, self.head_dim).index_add_(0, centre, messages)
        return nn.functional.silu(self.norm(self.concat(aggregated.flatten(1)))) + self.skip(h)


def reference_like(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a PRDNet backbone, or a model holding one as ``backbone``) whose
    attention layers are this module's, with the same parameters and buffers."""
    reference = copy.deepcopy(model)
    backbone = reference.backbone if hasattr(reference, "backbone") else reference
    if not isinstance(backbone, fast.PRDNet):
        raise TypeError(f"reference_like needs a PRDNet backbone, not {type(backbone).__name__}")
    for index, layer in enumerate(backbone.layers):
        backbone.layers[index] = _reference_layer(layer)
    return reference


def _reference_layer(layer: nn.Module) -> nn.Module:
    """This module's layer with the same constructor arguments and state as the package's ``layer``."""
    channels = layer.query.in_features
    edge_dim = layer.edge.in_features if layer.edge is not None else 1
    use_edge_features = layer.edge is not None
    if isinstance(layer, fast.CrystalAttentionLayer):
        old = CrystalAttentionLayer(
            channels, layer.heads, layer.head_dim, edge_dim, use_edge_features, residual=layer.gate is not None
        )
    elif isinstance(layer, fast.ReferenceAttentionLayer):
        old = ReferenceAttentionLayer(channels, layer.heads, layer.head_dim, edge_dim, use_edge_features)
    else:
        raise TypeError(f"not a PRDNet attention layer: {type(layer).__name__}")
    old.to(next(layer.parameters())).load_state_dict(layer.state_dict())
    return old.train(layer.training)
