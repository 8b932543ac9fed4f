"""Small pure functions for crystal geometry.

Conventions used everywhere in the package:

- ``lattice`` is a 3×3 matrix whose *rows* are the lattice vectors a, b, c in Å.
- Fractional coordinates ``r`` (dimensionless) map to Cartesian positions (Å) as
  ``x = r @ lattice``.
- A periodic edge j → i with integer image offset ``n`` joins centre atom i to the
  neighbour j displaced by ``n`` cells: ``x_j + n @ lattice``.
"""

from __future__ import annotations

import numpy as np
import torch


def cartesian_positions(frac_coords: torch.Tensor, lattice: torch.Tensor) -> torch.Tensor:
    """Cartesian positions x = r · L (Å) of atoms with fractional coordinates r.

    ``frac_coords`` is [N, 3]; ``lattice`` is [N, 3, 3] (each atom's own cell, as in a
    batch after ``lattice[batch]``) or a single [3, 3] matrix.
    """
    if lattice.dim() == 2:
        return frac_coords @ lattice
    return torch.einsum("ni,nij->nj", frac_coords, lattice)


def edge_vectors(
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    edge_index: torch.Tensor,
    edge_offset: torch.Tensor,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cartesian vectors (Å) from each centre atom i to its periodic neighbour j.

    v_ij = (r_j + n_ij − r_i) · L, where ``edge_index[0]`` holds the neighbour (source) j,
    ``edge_index[1]`` the centre (target) i and ``edge_offset`` the integer image n_ij.
    ``lattice`` is [B, 3, 3] with ``batch`` giving each atom's crystal, or [3, 3] / [1, 3, 3]
    for a single crystal. The fractional difference is formed first, so the result is
    exact for any choice of origin.
    """
    source, target = edge_index[0], edge_index[1]
    frac_delta = frac_coords[source] + edge_offset.to(frac_coords.dtype) - frac_coords[target]
    if lattice.dim() == 2:
        return frac_delta @ lattice
    if batch is None:
        batch = torch.zeros(frac_coords.shape[0], dtype=torch.long, device=frac_coords.device)
    return torch.einsum("ei,eij->ej", frac_delta, lattice[batch[target]])


def reciprocal_lattice(lattice: torch.Tensor) -> torch.Tensor:
    """Reciprocal lattice B = (L⁻¹)ᵀ without the 2π, in Å⁻¹, rows b1, b2, b3.

    Satisfies a_i · b_j = δ_ij, so the scattering vector of Miller index hkl is
    Q = 2π · hkl · B. Works on [3, 3] or batched [B, 3, 3] inputs.
    """
    return torch.linalg.inv(lattice).transpose(-1, -2)


def cell_volume(lattice: np.ndarray) -> float:
    """Cell volume V = |det L| in Å³."""
    return float(abs(np.linalg.det(lattice)))
