"""What every model shares: backbone → mean pool g → [fusion with diffraction d] → property head.

A backbone maps a batch to node embeddings h [N, F] (and says its width F as
``out_channels``). :class:`CrystalPropertyModel` wraps any backbone:

    g = (1/N_b) Σ_{i ∈ b} h_i                                  (mean pooling, [B, G], G = F)
    d = Diffraction(h, r, L, batch)                            (optional plug-in, [B, D])
    z = MLP_fusion(g ⊕ d)   if a diffraction module is given, else z = g    ([B, G])
    y = MLP_head(z)         → [B] (regression) or logits [B, C] (classification)

Backbones with their own readout (MEGNet's Set2Set over atoms and bonds plus its global
state) provide it in one place, :func:`encode`: a backbone that defines
``encode(batch) -> (h, g)`` and the attribute ``pooled_channels`` G gives its own crystal
vector g [B, G] instead of the mean of h; h [N, F] still feeds the diffraction plug-in, and
the fusion and head are sized by G. Every other backbone is pooled by the mean.

so "with and without diffraction" is one constructor argument, identical for every backbone.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_mean_pool

TaskKind = Literal["regression", "classification"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "softplus": nn.Softplus, "relu": nn.ReLU}


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (``silu``, ``softplus`` or ``relu``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(widths: list[int], activation_name: str) -> nn.Sequential:
    """Linear layers widths[0] → … → widths[-1], the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        if index:
            layers.append(activation(activation_name))
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)


def crystal_geometry(batch: Batch, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional coordinates [N, 3] and lattices [B, 3, 3] (Å) of a batch, cast to ``dtype``.

    Shards hold float64 geometry; the model computes in the dtype of its parameters.
    """
    return batch.frac_coords.to(dtype), batch.lattice.reshape(-1, 3, 3).to(dtype)


def encode(backbone: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Node embeddings h [N, F] and crystal vector g [B, G] of a batch.

    ``backbone.encode(batch)`` when the backbone defines it (its own readout, e.g. MEGNet's
    Set2Set ⊕ global state), else h = ``backbone(batch)`` and g = mean of h over each crystal.
    """
    if hasattr(backbone, "encode"):
        return backbone.encode(batch)
    h = backbone(batch)
    return h, global_mean_pool(h, batch.batch, size=batch.num_graphs)


def pooled_channels(backbone: nn.Module) -> int:
    """Width G of the crystal vector g of :func:`encode`: ``pooled_channels`` if the backbone
    has its own readout, else ``out_channels``."""
    return getattr(backbone, "pooled_channels", backbone.out_channels)


class CrystalPropertyModel(nn.Module):
    """A backbone with optional diffraction plug-in, fusion and property head.

    Args:
        backbone: module with ``forward(batch) -> h`` [N, F] and attribute ``out_channels`` F;
            optionally ``encode(batch) -> (h, g)`` and ``pooled_channels`` G (see :func:`encode`).
        task_kind: ``regression`` (output [B]) or ``classification`` (logits [B, num_classes]).
        num_classes: classes for classification.
        head_hidden: width of the head's hidden layers.
        head_layers: number of hidden layers in the head (each Linear + activation).
        activation_name: activation of the head and fusion MLPs.
        diffraction: a module ``(h, frac_coords, lattice, batch, num_graphs) -> d`` [B, D] with
            attribute ``out_channels`` D, or ``None`` for the backbone alone.
    """

    def __init__(
        self,
        backbone: nn.Module,
        task_kind: TaskKind,
        num_classes: int,
        head_hidden: int,
        head_layers: int,
        activation_name: str,
        diffraction: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if task_kind not in ("regression", "classification"):
            raise ValueError(f"task_kind must be 'regression' or 'classification', not {task_kind!r}")
        width = pooled_channels(backbone)
        self.task_kind = task_kind
        self.backbone = backbone
        self.diffraction = diffraction
        self.fusion = (
            mlp([width + diffraction.out_channels, width, width], activation_name) if diffraction is not None else None
        )
        out = 1 if task_kind == "regression" else num_classes
        self.head = mlp([width] + [head_hidden] * head_layers + [out], activation_name)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Predictions [B] (regression) or logits [B, C] (classification)."""
        h, z = encode(self.backbone, batch)
        if self.diffraction is not None:
            frac_coords, lattice = crystal_geometry(batch, h.dtype)
            d = self.diffraction(h, frac_coords, lattice, batch.batch, batch.num_graphs)
            z = self.fusion(torch.cat([z, d], dim=-1))
        out = self.head(z)
        return out.squeeze(-1) if self.task_kind == "regression" else out
