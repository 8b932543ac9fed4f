"""The fast `invariant` plug-in (issue 13) computes what the pre-issue-13 implementation computed.

The reference (benchmarks/reference_diffraction.py) enumerates the reflections at every pass
and sums phases through a sparse matrix; the package caches the reflection lists per lattice
and sums phases with dense products per size group. Same weights, float64: outputs, patterns
and gradients agree to 1e-6 on embedded crystals of several sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from model_data import torch_single_thread  # noqa: F401
from prdnet.audit import embedded_data_path, sample_structures
from prdnet.data.loader import structure_to_data
from prdnet.models.base import crystal_geometry
from prdnet.models.diffraction import (
    InvariantDiffraction,
    ReflectionCache,
    padded_phase_sums,
    padded_rows,
    reciprocal_sphere,
    size_buckets,
    structure_factor,
)
from prdnet.models.registry import load_presets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_diffraction import reference_like  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def structures():
    """48 embedded MP crystals of at most 120 atoms (seeded; 1 to 32 atoms), smallest first."""
    chosen = [s for _, s, _ in sample_structures(embedded_data_path(), 48, 120, pool=500, seed=3)]
    return sorted(chosen, key=len)


def _batch(structures) -> Batch:
    return Batch.from_data_list([structure_to_data(s, dtype=torch.float64) for s in structures])


def _modules(preset: str, in_channels: int = 16):
    torch.manual_seed(0)
    module = InvariantDiffraction(in_channels, **load_presets()["diffraction"][preset]["invariant"]).double().train()
    return module, reference_like(module)


def _run(module, h, batch):
    frac_coords, lattice = crystal_geometry(batch, torch.float64)
    h = h.clone().requires_grad_(True)
    d = module(h, frac_coords, lattice, batch.batch, batch.num_graphs)
    d.square().sum().backward()
    with torch.no_grad():
        pattern = module.pattern(h, frac_coords, lattice, batch.batch, batch.num_graphs)
    gradients = {name: p.grad.clone() for name, p in module.named_parameters()}
    module.zero_grad(set_to_none=True)
    return d.detach(), pattern, h.grad, gradients


def _assert_close(actual, expected):
    scale = expected.abs().max().clamp(min=1e-300)
    assert float((actual - expected).abs().max() / scale) <= TOLERANCE


@pytest.mark.parametrize(
    "preset, part",
    [("small", slice(0, 16)), ("small", slice(16, 32)), ("small", slice(32, 48)), ("small", slice(0, 48)),
     ("paper", slice(0, 24))],
    ids=["small-crystals", "medium-crystals", "large-crystals", "mixed-48", "paper-preset"],
)
def test_invariant_plugin_equals_the_reference_implementation(preset, part, structures):
    batch = _batch(structures[part])
    module, reference = _modules(preset)
    h = torch.randn(batch.num_nodes, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d, pattern, grad_h, gradients = _run(module, h, batch)
    d_ref, pattern_ref, grad_h_ref, gradients_ref = _run(reference, h, batch)
    assert pattern_ref.abs().max() > 0
    _assert_close(pattern, pattern_ref)
    _assert_close(d, d_ref)
    _assert_close(grad_h, grad_h_ref)
    for name, gradient in gradients_ref.items():
        _assert_close(gradients[name], gradient)


def test_invariant_plugin_equals_the_reference_on_supercells(structures):
    supercells = [structures[20] * (2, 2, 1), structures[-1] * (2, 2, 1)]  # the second > 100 atoms
    assert len(supercells[1]) > 100
    batch = _batch([structures[0], supercells[0], structures[5], supercells[1]])
    module, reference = _modules("small")
    h = torch.randn(batch.num_nodes, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _assert_close(_run(module, h, batch)[0], _run(reference, h, batch)[0])


def test_a_crystal_without_reflections_gets_a_zero_pattern_like_the_reference(structures):
    batch = _batch(structures[:3])
    module, reference = _modules("small")
    # Q_max below every crystal's shortest reciprocal vector: no reflection at all.
    module.q_max = reference.q_max = 0.1
    h = torch.randn(batch.num_nodes, 16, dtype=torch.float64)
    frac_coords, lattice = crystal_geometry(batch, torch.float64)
    with torch.no_grad():
        pattern = module.pattern(h, frac_coords, lattice, batch.batch, batch.num_graphs)
        pattern_ref = reference.pattern(h, frac_coords, lattice, batch.batch, batch.num_graphs)
    assert pattern.shape == pattern_ref.shape
    assert torch.equal(pattern, torch.zeros_like(pattern)) and torch.equal(pattern_ref, torch.zeros_like(pattern_ref))


def test_unsorted_batch_vector_is_rejected(structures):
    batch = _batch(structures[:2])
    module, _ = _modules("small")
    frac_coords, lattice = crystal_geometry(batch, torch.float64)
    with pytest.raises(ValueError, match="sorted"):
        module(torch.randn(batch.num_nodes, 16, dtype=torch.float64), frac_coords, lattice,
               batch.batch.flip(0), batch.num_graphs)


# --- the reflection cache ---------------------------------------------------------------------


def test_cached_reflections_are_those_of_the_sphere_for_each_crystal(structures):
    _, lattice = crystal_geometry(_batch(structures[:12]), torch.float64)
    cached = ReflectionCache().lookup(lattice, 4.0)
    hkl, crystal = reciprocal_sphere(lattice, 4.0, friedel_half=True)
    for b, rows in enumerate(cached):
        assert np.array_equal(rows, hkl[crystal == b].numpy())
        assert rows.dtype == np.int16


def test_reflections_are_enumerated_once_per_lattice(structures):
    _, lattice = crystal_geometry(_batch(structures[:12]), torch.float64)
    cache = ReflectionCache()
    first = cache.lookup(lattice, 4.0)
    assert (cache.misses, cache.hits) == (12, 0)
    again = cache.lookup(lattice.flip(0), 4.0)  # same crystals, another order
    assert (cache.misses, cache.hits) == (12, 12)
    assert all(a is b for a, b in zip(again, reversed(first)))
    cache.lookup(lattice[:3], 5.0)  # another Q_max is another list
    assert cache.misses == 15


def test_a_full_reflection_cache_keeps_what_it_holds_and_computes_the_rest(structures):
    _, lattice = crystal_geometry(_batch(structures[:12]), torch.float64)
    expected = ReflectionCache().lookup(lattice, 4.0)
    cache = ReflectionCache(capacity=sum(len(rows) for rows in expected[:4]))
    found = cache.lookup(lattice, 4.0)
    assert all(np.array_equal(a, b) for a, b in zip(found, expected))
    assert cache.size <= cache.capacity and len(cache) == 4
    cache.lookup(lattice, 4.0)  # the first four are hits, the others enumerated again
    assert (cache.hits, cache.misses) == (4, 20)


# --- size groups and padded products ----------------------------------------------------------


def test_size_buckets_place_every_crystal_in_exactly_one_group():
    rng = np.random.default_rng(0)
    reflections, atoms = rng.integers(0, 900, 40).tolist(), rng.integers(1, 80, 40).tolist()
    for cost in (0, 10_000, 10**12):
        groups = size_buckets(reflections, atoms, cost)
        assert sorted(b for group in groups for b in group) == list(range(40))
    assert len(size_buckets(reflections, atoms, 10**12)) == 1
    assert len(size_buckets(reflections, atoms, 0)) > len(size_buckets(reflections, atoms, 10_000)) > 1


def test_size_buckets_minimise_padded_pairs_plus_group_cost():
    # Two tiny crystals and two large ones: apart, 2·(1·1) + 2·(100·50) + 2 groups beats one group.
    groups = size_buckets([1, 100, 1, 100], [1, 50, 1, 50], bucket_cost=10)
    assert sorted(map(sorted, groups)) == [[0, 2], [1, 3]]


def test_padded_rows_point_padding_at_the_zero_row():
    rows = padded_rows(np.array([2, 3, 1]), [2, 0])
    assert rows.tolist() == [[5, 6], [0, 1]]


def test_padded_phase_sums_equal_the_structure_factor_and_ignore_padding_atoms():
    generator = torch.Generator().manual_seed(1)
    frac = torch.rand(5, 3, generator=generator, dtype=torch.float64)
    coefficients = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    hkl, _ = reciprocal_sphere(torch.eye(3, dtype=torch.float64)[None] * 4.0, 5.0)
    padded_frac = torch.cat([frac, torch.rand(3, 3, generator=generator, dtype=torch.float64)])
    padded_coefficients = torch.cat([coefficients, torch.zeros(3, 2, dtype=torch.float64)])
    sums = padded_phase_sums(padded_coefficients[None], padded_frac[None], hkl.double()[None])[0]
    for channel in range(2):
        f = coefficients[:, channel : channel + 1].expand(5, len(hkl))
        real, imag = structure_factor(f, frac, hkl, torch.zeros(5, dtype=torch.long), 1)
        torch.testing.assert_close(sums[0, :, channel], real[0])
        torch.testing.assert_close(sums[1, :, channel], imag[0])
