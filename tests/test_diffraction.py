"""The diffraction plug-in: Miller indices, structure factors, reflections, and invariance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from model_data import torch_single_thread  # noqa: F401
from prdnet.audit import TRANSFORMS, embedded_data_path, sample_structures
from prdnet.models.diffraction import (
    InvariantDiffraction,
    PaperDiffraction,
    gaussian_shell_volume,
    miller_indices,
    padded_phase_sums,
    reciprocal_sphere,
    scattering_vectors,
    structure_factor,
)
from prdnet.models.registry import load_presets

pytestmark = pytest.mark.usefixtures("torch_single_thread")

F_NA, F_CL = 11.0, 17.0


def conventional_rock_salt(a: float = 5.64) -> Structure:
    """Conventional cubic NaCl: Na on the fcc sites, Cl shifted by (½, 0, 0)."""
    na = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    cl = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    return Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4, na + cl)


def hkl_box(c: int) -> torch.Tensor:
    axis = torch.arange(-c, c + 1)
    return torch.cartesian_prod(axis, axis, axis)


TRICLINIC = torch.tensor([[4.1, 0.0, 0.0], [1.3, 3.7, 0.0], [-0.8, 0.9, 5.2]], dtype=torch.float64)


def brute_force_sphere(lattice: torch.Tensor, q_max: float, c: int = 12) -> set[tuple[int, int, int]]:
    hkl = hkl_box(c)
    q = scattering_vectors(hkl, lattice[None], torch.zeros(len(hkl), dtype=torch.long)).norm(dim=-1)
    keep = (q <= q_max) & hkl.ne(0).any(-1)
    return {tuple(row) for row in hkl[keep].tolist()}


# --- Miller indices (paper mode) -------------------------------------------------------


def test_miller_indices_with_c_max_8_number_4034():
    assert miller_indices(8).shape == (4034, 3)


def test_miller_indices_are_primitive_nonzero_and_closed_under_signs_and_permutations():
    hkl = miller_indices(4)
    rows = {tuple(row) for row in hkl.tolist()}
    assert len(rows) == len(hkl)
    assert (0, 0, 0) not in rows
    assert all(math.gcd(*row) == 1 and max(map(abs, row)) <= 4 for row in rows)
    for row in rows:
        for perm in itertools.permutations(row):
            for signs in itertools.product([1, -1], repeat=3):
                assert tuple(s * x for s, x in zip(signs, perm)) in rows


# --- Structure factor ------------------------------------------------------------------


def test_rock_salt_structure_factor_follows_the_extinction_rule():
    nacl = conventional_rock_salt()
    hkl = hkl_box(4)
    frac = torch.tensor(nacl.frac_coords, dtype=torch.float64)
    f = torch.tensor([F_NA] * 4 + [F_CL] * 4, dtype=torch.float64)[:, None].expand(8, len(hkl))
    real, imag = structure_factor(f, frac, hkl, torch.zeros(8, dtype=torch.long), 1)
    parity = hkl % 2
    all_even = (parity == 0).all(-1)
    all_odd = (parity == 1).all(-1)
    mixed = ~(all_even | all_odd)
    assert torch.allclose(real[0, all_even], torch.tensor(4 * (F_NA + F_CL), dtype=torch.float64))
    assert torch.allclose(real[0, all_odd].abs(), torch.tensor(4 * abs(F_NA - F_CL), dtype=torch.float64))
    assert all_even.sum() > 1 and all_odd.sum() > 1
    assert real[0, mixed].abs().max() < 1e-12
    assert imag[0].abs().max() < 1e-12


def test_structure_factor_obeys_friedels_law():
    generator = torch.Generator().manual_seed(0)
    frac = torch.rand(7, 3, generator=generator, dtype=torch.float64)
    f = torch.randn(7, 1, generator=generator, dtype=torch.float64)
    hkl = miller_indices(3)
    real, imag = structure_factor(f.expand(7, len(hkl)), frac, hkl, torch.zeros(7, dtype=torch.long), 1)
    real_minus, imag_minus = structure_factor(f.expand(7, len(hkl)), frac, -hkl, torch.zeros(7, dtype=torch.long), 1)
    torch.testing.assert_close(real_minus, real)
    torch.testing.assert_close(imag_minus, -imag)


def test_padded_phase_sums_of_a_reflection_list_equal_the_dense_structure_factor():
    generator = torch.Generator().manual_seed(1)
    frac = torch.rand(5, 3, generator=generator, dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1, 1])
    lattice = torch.stack([TRICLINIC, 1.3 * TRICLINIC])
    hkl, crystal = reciprocal_sphere(lattice, 3.0)
    coefficients = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    for b, atoms in enumerate([slice(0, 2), slice(2, 5)]):
        rows = hkl[crystal == b]
        sums = padded_phase_sums(coefficients[None, atoms], frac[None, atoms], rows.double()[None])[0]
        for channel in range(2):
            f = coefficients[:, channel : channel + 1].expand(5, len(rows))
            dense_real, dense_imag = structure_factor(f, frac, rows, batch, 2)
            torch.testing.assert_close(sums[0, :, channel], dense_real[b])
            torch.testing.assert_close(sums[1, :, channel], dense_imag[b])


# --- Reflections in a |Q| sphere (invariant mode) ----------------------------------------


def test_scattering_vector_of_a_cubic_cell_has_length_2pi_sqrt_h2k2l2_over_a():
    hkl = torch.tensor([[1, 0, 0], [1, 1, 1], [2, -1, 3]])
    lattice = 4.0 * torch.eye(3, dtype=torch.float64)[None]
    q = scattering_vectors(hkl, lattice, torch.zeros(3, dtype=torch.long)).norm(dim=-1)
    torch.testing.assert_close(q, 2 * math.pi * hkl.double().norm(dim=-1) / 4.0)


def test_reciprocal_sphere_finds_exactly_the_reflections_inside_q_max_for_every_crystal():
    lattices = torch.stack([TRICLINIC, 4.0 * torch.eye(3, dtype=torch.float64), 0.7 * TRICLINIC])
    hkl, crystal = reciprocal_sphere(lattices, 5.0)
    assert torch.all(crystal[1:] >= crystal[:-1])
    for b in range(3):
        found = {tuple(row) for row in hkl[crystal == b].tolist()}
        assert len(found) == int((crystal == b).sum())
        assert found == brute_force_sphere(lattices[b], 5.0)


def test_friedel_half_of_the_sphere_keeps_one_of_each_plus_minus_pair():
    full, _ = reciprocal_sphere(TRICLINIC[None], 5.0)
    half, _ = reciprocal_sphere(TRICLINIC[None], 5.0, friedel_half=True)
    half_set = {tuple(row) for row in half.tolist()}
    minus_set = {tuple(row) for row in (-half).tolist()}
    assert not half_set & minus_set
    assert half_set | minus_set == {tuple(row) for row in full.tolist()}


def test_reciprocal_sphere_is_the_same_set_of_vectors_in_any_cell_basis():
    unimodular = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    q_sets = []
    for lattice in (TRICLINIC, unimodular @ TRICLINIC):
        hkl, crystal = reciprocal_sphere(lattice[None], 5.0)
        q = scattering_vectors(hkl, lattice[None], crystal)
        q_sets.append({tuple(np.round(row, 8)) for row in q.tolist()})
    assert q_sets[0] == q_sets[1]


def test_reflection_count_grows_as_volume_times_q_max_cubed():
    volume = float(torch.linalg.det(TRICLINIC))
    for q_max in (6.0, 9.0):
        hkl, _ = reciprocal_sphere(TRICLINIC[None], q_max)
        expected = volume * q_max**3 / (6 * math.pi**2)
        assert abs(len(hkl) - expected) / expected < 0.05


def test_gaussian_shell_volume_equals_its_radial_integral():
    centers = torch.tensor([0.0, 0.3, 1.0, 4.0], dtype=torch.float64)
    q = torch.linspace(0, 8, 200001, dtype=torch.float64)
    integrand = 4 * math.pi * q[:, None] ** 2 * torch.exp(-((q[:, None] - centers) ** 2) / (2 * 0.25**2))
    torch.testing.assert_close(gaussian_shell_volume(centers, 0.25), torch.trapezoid(integrand, q, dim=0))


# --- The module on its own: invariance and gradients --------------------------------------


def _modules(dtype=torch.float64):
    torch.manual_seed(0)
    params = load_presets()["diffraction"]["small"]
    return (
        InvariantDiffraction(16, **params["invariant"]).to(dtype).eval(),
        PaperDiffraction(16, **params["paper"]).to(dtype).eval(),
    )


EMBEDDING = torch.randn(101, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _plugin_inputs(structures):
    """Node embeddings fixed by element (the same atom gets the same h in every copy)."""
    numbers = torch.tensor([z for s in structures for z in s.atomic_numbers])
    frac = torch.tensor(np.concatenate([s.frac_coords for s in structures]), dtype=torch.float64)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(len(structures)), torch.tensor([len(s) for s in structures]))
    return EMBEDDING[numbers], frac, lattice, batch, len(structures)


@pytest.fixture(scope="module")
def crystals():
    return [conventional_rock_salt()] + [s for _, s, _ in sample_structures(embedded_data_path(), 4, 12)]


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_invariant_mode_output_is_unchanged_by(transform, crystals):
    invariant, _ = _modules()
    rng = np.random.default_rng(0)
    copies = [TRANSFORMS[transform](s, rng) for s in crystals]
    with torch.no_grad():
        pattern = invariant.pattern(*_plugin_inputs(crystals))
        pattern_copy = invariant.pattern(*_plugin_inputs(copies))
        d, d_copy = invariant(*_plugin_inputs(crystals)), invariant(*_plugin_inputs(copies))
    assert pattern.abs().max() > 0
    torch.testing.assert_close(pattern_copy, pattern, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(d_copy, d, rtol=1e-9, atol=1e-12)


def test_paper_mode_output_changes_when_the_origin_moves(crystals):
    _, paper = _modules()
    rng = np.random.default_rng(0)
    shifted = [TRANSFORMS["origin shift"](s, rng) for s in crystals]
    with torch.no_grad():
        change = (paper(*_plugin_inputs(shifted)) - paper(*_plugin_inputs(crystals))).abs().max()
    assert change > 1e-3


@pytest.mark.parametrize("mode", ["invariant", "paper"])
def test_diffraction_module_backpropagates_to_the_node_embeddings(mode, crystals):
    module = dict(zip(["invariant", "paper"], _modules(torch.float64)))[mode].train()
    h, frac, lattice, batch, num_graphs = _plugin_inputs(crystals)
    h = h.clone().requires_grad_(True)
    d = module(h, frac, lattice, batch, num_graphs)
    assert d.shape == (num_graphs, module.out_channels)
    d.square().sum().backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
