"""Invariant basis expansions and edge geometry shared by the models.

Small pure functions, each with its formula and units. Lengths are in Å, reciprocal
lengths in Å⁻¹, angles enter only through their cosine (dimensionless).
"""

from __future__ import annotations

import math

import torch

from prdnet.geometry import edge_vectors


def gaussian_basis(x: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian expansion φ_c(x) = exp(−(x − μ_c)² / (2σ²)).

    ``x`` has any shape [...]; ``centers`` μ is [C] in the units of ``x``; ``width`` σ is in
    the same units. Returns [..., C]. Used for distances (Å), bond-angle cosines (unitless)
    and scattering-vector magnitudes |Q| (Å⁻¹). Values too small for a normal float of the
    dtype are returned as 0 (:func:`flush_subnormal`).
    """
    return flush_subnormal(torch.exp(-((x.unsqueeze(-1) - centers) ** 2) / (2.0 * width**2)))


def flush_subnormal(x: torch.Tensor) -> torch.Tensor:
    """``x`` with every subnormal value (0 < |x| < ``torch.finfo(dtype).tiny``: 1.2e-38 in
    float32, 2.2e-308 in float64) set to 0.

    A narrow Gaussian basis is subnormal for centres a few widths away (for PRDNet's ``paper``
    edge features, 2.9% of all entries on a batch of 16 embedded crystals). Such a value is
    below 2^-23 of the smallest normal number, so it does not change a float32 sum that also
    holds a normal term; but on many Intel cores a multiplication with a subnormal operand or
    result goes through a microcode assist, of the order of a hundred cycles instead of one,
    while AMD Zen cores take them at full speed. Zeroing them keeps the models' matrix
    products at the same speed on both.
    """
    return x.masked_fill(x.abs() < torch.finfo(x.dtype).tiny, 0.0)


def linear_centers(start: float, stop: float, count: int) -> torch.Tensor:
    """``count`` equally spaced basis centres μ_c on [start, stop] (float64, cast on use)."""
    return torch.linspace(start, stop, count, dtype=torch.float64)


def cosine_cutoff(x: torch.Tensor, x_max: float, taper: float) -> torch.Tensor:
    """Smooth envelope c(x): 1 for x ≤ x_max − taper, ½(1 + cos(π (x − x_max + taper)/taper))
    on the taper, 0 for x ≥ x_max.

    Continuous with zero slope at both ends, so an item whose x sits at the cutoff
    contributes nothing, whichever side of it rounding puts it.
    """
    t = ((x - (x_max - taper)) / taper).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def edge_geometry(
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    edge_index: torch.Tensor,
    edge_offset: torch.Tensor,
    batch: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bond vectors v_ij = (r_j + n_ij − r_i)·L (Å, [E, 3]) and lengths d_ij = |v_ij| (Å, [E]).

    The length is recomputed from the vector (rather than read from ``edge_distance``) so that
    it is differentiable and exactly consistent with the angles. Geometry is always computed in
    the inputs' precision: mixed-precision autocast (bf16/fp16) is switched off here, so bond
    vectors, lengths and angles never lose digits to a low-precision matmul.
    """
    with torch.autocast(device_type=frac_coords.device.type, enabled=False):
        vectors = edge_vectors(frac_coords, lattice, edge_index, edge_offset, batch)
        return vectors, vectors.norm(dim=-1)


def group_pairs(
    group_a: torch.Tensor, group_b: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs (a, b) of items in the same group: group_a[a] == group_b[b].

    ``group_a`` [A] and ``group_b`` [M] give each item's group (atom, crystal, ...). Returns two
    index tensors [P], P = Σ_g n_a(g) n_b(g), ordered by a (ascending), then by b (ascending).
    Vectorised: the b-items are grouped with one stable sort and every a-item is repeated
    once per b-item of its group; no Python loop over groups.
    """
    order_b = torch.argsort(group_b, stable=True)
    counts_b = torch.bincount(group_b, minlength=num_groups)
    start_b = torch.cumsum(counts_b, 0) - counts_b
    repeats = counts_b[group_a]
    first = torch.arange(group_a.numel(), device=group_a.device).repeat_interleave(repeats)
    repeat_start = (torch.cumsum(repeats, 0) - repeats).repeat_interleave(repeats)
    within = torch.arange(first.numel(), device=group_a.device) - repeat_start
    second = order_b[start_b[group_a[first]] + within]
    return first, second


def edge_pairs(centre: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (e, e') of distinct edges that share a centre atom.

    ``centre`` [E] is the centre (target) atom of every edge. Returns two index tensors
    [P] with centre[e] == centre[e'] and e ≠ e', P = Σ_i c_i (c_i − 1) for c_i incoming edges
    at atom i.
    """
    first, second = group_pairs(centre, centre, num_nodes)
    keep = first != second
    return first[keep], second[keep]


def bond_angle_cosines(vectors: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """cos θ_ijk = v_ij · v_ik / (|v_ij| |v_ik|) for edge pairs (e = ij, e' = ik) at centre i."""
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    return (unit[first] * unit[second]).sum(-1).clamp(-1.0, 1.0)


def angular_summary(
    vectors: torch.Tensor,
    centre: torch.Tensor,
    num_nodes: int,
    centers: torch.Tensor,
    width: float,
) -> torch.Tensor:
    """Per-edge invariant summary of its bond angles: a_ij = mean_{k ≠ j} φ(cos θ_ijk).

    φ is a Gaussian basis of cos θ (``centers`` on [−1, 1], ``width`` σ, unitless), θ_ijk
    the angle at centre i between edge ij and every other edge ik into i. Returns [E, C].
    Invariant to rotation, reflection and translation (only cosines enter) and to the
    order of atoms and edges (a mean over a set). Costs O(Σ_i c_i²) for c_i edges at atom i.
    """
    num_edges, num_basis = vectors.shape[0], centers.numel()
    first, second = edge_pairs(centre, num_nodes)
    phi = gaussian_basis(bond_angle_cosines(vectors, first, second), centers, width)
    total = vectors.new_zeros(num_edges, num_basis).index_add_(0, first, phi)
    count = torch.bincount(first, minlength=num_edges).clamp(min=1).to(vectors.dtype)
    return total / count.unsqueeze(-1)


def spacing_width(start: float, stop: float, count: int) -> float:
    """σ of the RBF of ALIGNN, Matformer and ComFormer, exp(−(x − μ)²/Δμ) = exp(−(x − μ)²/2σ²):
    σ = √(Δμ/2) for ``count`` centres equally spaced on [start, stop]."""
    return ((stop - start) / max(count - 1, 1) / 2) ** 0.5


def inverse_distance(distances: torch.Tensor, scale: float = 0.75) -> torch.Tensor:
    """x = −c/d (c in Å, d in Å; unitless, in [−4, 0) for d > 0.19 Å): Matformer's and
    ComFormer's transform of a length before its RBF, which spreads the short bonds out."""
    return -scale / distances
