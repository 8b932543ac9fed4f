"""Gaussian bases carry no subnormal floats (prdnet.models.basis.flush_subnormal)."""

from __future__ import annotations

import torch

from prdnet.models.basis import flush_subnormal, gaussian_basis, linear_centers


def test_subnormal_values_become_zero_and_every_other_value_is_kept():
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([0.0, tiny / 2, -tiny / 4, tiny, -tiny, 1e-30, 3.5, -2.0], dtype=torch.float32)
    assert flush_subnormal(x).tolist() == [0.0, 0.0, 0.0, tiny, -tiny, x[5].item(), 3.5, -2.0]


def test_a_narrow_gaussian_basis_has_no_subnormal_entries_but_the_same_normal_ones():
    distances = torch.linspace(0.5, 8.0, 997, dtype=torch.float32)
    centres = linear_centers(0.0, 8.0, 64).float()
    raw = torch.exp(-((distances.unsqueeze(-1) - centres) ** 2) / (2.0 * 0.125**2))
    tiny = torch.finfo(torch.float32).tiny
    subnormal = (raw != 0) & (raw.abs() < tiny)
    assert subnormal.any()  # what the flush is for: PRDNet's paper basis (σ = 0.125 Å) has them
    basis = gaussian_basis(distances, centres, 0.125)
    assert not ((basis != 0) & (basis.abs() < tiny)).any()
    assert torch.equal(basis[~subnormal], raw[~subnormal])
