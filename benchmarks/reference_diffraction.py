"""The `invariant` diffraction plug-in as it was before issue 13: the reference the benchmark
times the package's implementation against, and the equivalence tests compare it with.

A frozen copy (of prdnet/models/diffraction.py at commit 988dd36) kept out of the package on
purpose: reflections are enumerated at every forward pass (:func:`reciprocal_sphere`) and the
atom–reflection phase sums go through a sparse COO matrix (:func:`phase_sums`). Its parameters
and buffers have the names of :class:`prdnet.models.diffraction.InvariantDiffraction`, so a
state dict loads into either (:func:`reference_like`). Formulas: the package module's docstring.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prdnet.geometry import reciprocal_lattice
from prdnet.models.base import mlp


def gaussian_basis(x: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """φ_c(x) = exp(−(x − μ_c)² / (2σ²)), [..., C]."""
    return torch.exp(-((x.unsqueeze(-1) - centers) ** 2) / (2.0 * width**2))


def cosine_cutoff(x: torch.Tensor, x_max: float, taper: float) -> torch.Tensor:
    """1 below x_max − taper, ½(1 + cos(π (x − x_max + taper)/taper)) on the taper, 0 above x_max."""
    t = ((x - (x_max - taper)) / taper).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def group_pairs(group_a: torch.Tensor, group_b: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs (a, b) with group_a[a] == group_b[b], ordered by a, then b."""
    order_b = torch.argsort(group_b, stable=True)
    counts_b = torch.bincount(group_b, minlength=num_groups)
    start_b = torch.cumsum(counts_b, 0) - counts_b
    repeats = counts_b[group_a]
    first = torch.arange(group_a.numel(), device=group_a.device).repeat_interleave(repeats)
    repeat_start = (torch.cumsum(repeats, 0) - repeats).repeat_interleave(repeats)
    within = torch.arange(first.numel(), device=group_a.device) - repeat_start
    second = order_b[start_b[group_a[first]] + within]
    return first, second


def scattering_vectors(hkl: torch.Tensor, lattice: torch.Tensor, crystal: torch.Tensor) -> torch.Tensor:
    """Q = 2π hkl · B_b (Å⁻¹), [R, 3]."""
    basis = reciprocal_lattice(lattice)[crystal]
    return 2.0 * math.pi * torch.einsum("ri,rij->rj", hkl.to(lattice.dtype), basis)


def reciprocal_sphere(
    lattice: torch.Tensor, q_max: float, friedel_half: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """All Miller indices with 0 < |Q| ≤ Q_max of every crystal, enumerated from the box
    |h_i| ≤ Q_max |a_i| / 2π: ``hkl`` [R, 3], ``crystal`` [R] (ascending)."""
    with torch.no_grad():
        bound = torch.floor(q_max * lattice.norm(dim=-1) / (2.0 * math.pi)).long()  # [B, 3]
        sizes = 2 * bound + 1
        box = sizes.prod(dim=-1)
        crystal = torch.repeat_interleave(torch.arange(lattice.shape[0], device=lattice.device), box)
        local = torch.arange(crystal.numel(), device=lattice.device) - (torch.cumsum(box, 0) - box)[crystal]
        size, low = sizes[crystal], bound[crystal]
        l_index = local % size[:, 2] - low[:, 2]
        rest = local // size[:, 2]
        k_index = rest % size[:, 1] - low[:, 1]
        h_index = rest // size[:, 1] - low[:, 0]
        hkl = torch.stack([h_index, k_index, l_index], dim=-1)
        q_norm = scattering_vectors(hkl, lattice, crystal).norm(dim=-1)
        keep = (q_norm <= q_max) & hkl.ne(0).any(dim=-1)
        if friedel_half:
            first_nonzero = hkl.gather(1, hkl.ne(0).long().argmax(dim=1, keepdim=True)).squeeze(1)
            keep &= first_nonzero > 0
    return hkl[keep], crystal[keep]


def phase_sums(
    coefficients: torch.Tensor,
    frac_coords: torch.Tensor,
    batch: torch.Tensor,
    hkl: torch.Tensor,
    crystal: torch.Tensor,
    num_graphs: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re and Im of S_r = Σ_{i ∈ crystal(r)} c_i exp(2πi hkl_r·r_i), [R, C] each, through a
    sparse [R, N] matrix of the atom–reflection phases."""
    reflection, atom = group_pairs(crystal, batch, num_graphs)
    phase = 2.0 * math.pi * (hkl[reflection].to(frac_coords.dtype) * frac_coords[atom]).sum(-1)
    indices = torch.stack([reflection, atom])
    shape = (hkl.shape[0], frac_coords.shape[0])
    cosine = torch.sparse_coo_tensor(indices, torch.cos(phase), shape, is_coalesced=True, check_invariants=False)
    sine = torch.sparse_coo_tensor(indices, torch.sin(phase), shape, is_coalesced=True, check_invariants=False)
    return torch.sparse.mm(cosine, coefficients), torch.sparse.mm(sine, coefficients)


def gaussian_shell_volume(centers: torch.Tensor, width: float) -> torch.Tensor:
    """Ω_s = ∫ exp(−(|q| − μ_s)² / 2σ²) d³q (Å⁻³), [S]."""
    mu, sigma = centers, width
    tail = mu * sigma * torch.exp(-(mu**2) / (2 * sigma**2))
    body = (mu**2 + sigma**2) * math.sqrt(math.pi / 2) * (1 + torch.erf(mu / (sigma * math.sqrt(2))))
    return 4 * math.pi * sigma * (tail + body)


def shell_average(intensity, q_norm, crystal, atoms_per_crystal, volume, centers, width, q_max, taper):
    """P_bsk = (2π)³ / (N_b V_b Ω_s) Σ_{r ∈ b} w_s(|Q_r|) c(|Q_r|) I_rk, [B, S, K]."""
    weights = gaussian_basis(q_norm, centers, width) * cosine_cutoff(q_norm, q_max, taper).unsqueeze(-1)
    summed = intensity.new_zeros(volume.shape[0], centers.numel(), intensity.shape[-1])
    summed.index_add_(0, crystal, weights.unsqueeze(-1) * intensity.unsqueeze(1))
    scale = (2 * math.pi) ** 3 / (atoms_per_crystal.to(volume.dtype) * volume)
    return summed * scale[:, None, None] / gaussian_shell_volume(centers, width)[None, :, None]


class ReferenceInvariantDiffraction(nn.Module):
    """The `invariant` mode before issue 13 (same constructor, parameters and outputs)."""

    def __init__(
        self,
        in_channels: int,
        q_max: float,
        q_taper: float,
        channels: int,
        radial_bins: int,
        radial_width: float,
        shells: int,
        shell_width: float,
        form_hidden: int,
        diff_hidden: int,
        out_channels: int,
        activation: str,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.q_max, self.q_taper = q_max, q_taper
        self.channels, self.radial_bins = channels, radial_bins
        self.radial_width, self.shell_width = radial_width, shell_width
        self.register_buffer("radial_centers", torch.linspace(0.0, q_max, radial_bins, dtype=torch.float64).float())
        self.register_buffer(
            "shell_centers", torch.linspace(q_max / shells, q_max, shells, dtype=torch.float64).float()
        )
        self.form = mlp([in_channels, form_hidden, channels * radial_bins], activation)
        self.diff = mlp([shells * channels, diff_hidden, out_channels], activation)

    def pattern(self, h, frac_coords, lattice, batch, num_graphs) -> torch.Tensor:
        """Shell-averaged intensities P [B, S, K]."""
        hkl, crystal = reciprocal_sphere(lattice, self.q_max, friedel_half=True)
        q_norm = scattering_vectors(hkl, lattice, crystal).norm(dim=-1)
        coefficients = self.form(h)
        real, imag = phase_sums(coefficients, frac_coords, batch, hkl, crystal, num_graphs)
        radial = gaussian_basis(q_norm, self.radial_centers, self.radial_width).unsqueeze(1)
        shape = (-1, self.channels, self.radial_bins)
        f_real = (real.view(shape) * radial).sum(-1)
        f_imag = (imag.view(shape) * radial).sum(-1)
        intensity = 2.0 * (f_real**2 + f_imag**2)
        atoms = torch.bincount(batch, minlength=num_graphs)
        volume = torch.linalg.det(lattice).abs()
        return shell_average(
            intensity, q_norm, crystal, atoms, volume, self.shell_centers, self.shell_width, self.q_max, self.q_taper
        )

    def forward(self, h, frac_coords, lattice, batch, num_graphs) -> torch.Tensor:
        """d [B, D]."""
        return self.diff(torch.log1p(self.pattern(h, frac_coords, lattice, batch, num_graphs)).flatten(1))


def reference_like(module: nn.Module) -> ReferenceInvariantDiffraction:
    """A reference module with the hyperparameters, weights, dtype and device of ``module``
    (an :class:`~prdnet.models.diffraction.InvariantDiffraction`)."""
    reference = ReferenceInvariantDiffraction(
        module.form[0].in_features,
        **{name: getattr(module, name) for name in ("q_max", "q_taper", "channels", "radial_bins",
                                                      "radial_width", "shell_width")},
        shells=module.shell_centers.numel(),
        form_hidden=module.form[0].out_features,
        diff_hidden=module.diff[0].out_features,
        out_channels=module.out_channels,
        activation=module.activation,
    )
    reference.load_state_dict(module.state_dict())
    parameter = next(module.parameters())
    return reference.to(device=parameter.device, dtype=parameter.dtype).train(module.training)
