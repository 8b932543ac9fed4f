"""Pseudo-particle diffraction: a plug-in turning node embeddings into one vector per crystal.

Inputs of both modes: node embeddings h [N, F], fractional coordinates r [N, 3] (unitless),
lattices L [B, 3, 3] (rows a, b, c in Å), the batch vector [N] and the number of crystals B.
Output: d [B, D]. Conventions: F(hkl) = Σ_i f_i exp(+2πi hkl · r_i); the scattering vector of
Miller index hkl is Q = 2π hkl · B with B = (L⁻¹)ᵀ (Å⁻¹, see
:func:`prdnet.geometry.reciprocal_lattice`).

``paper`` mode (PRDNet, ICLR 2026, as published)
    H = {hkl ≠ 0 : |h|, |k|, |l| ≤ C_max, gcd(|h|, |k|, |l|) = 1}      (closed under ± and permutations;
                                                                      |H| = 4,034 for C_max = 8)
    f_i = MLP_form(h_i) ∈ R^|H|
    Re F(hkl) = Σ_i f_i(hkl) cos(2π hkl·r_i),   Im F(hkl) = Σ_i f_i(hkl) sin(2π hkl·r_i)
    d = MLP_diff(Re ⊕ Im)
    Invariant to rotation and atom order only: Re and Im change under an origin shift
    (F → e^{2πi hkl·t} F) and under the r → −r of a mirror image written in a right-handed
    basis (F → F*); the same hkl means another plane in another cell basis or a supercell;
    and MLP_diff sees the hkl in a fixed order.
    Cost: O(N · |H|) time and memory (phases, form factors), O(B · |H| · hidden) for MLP_diff.
    Measured (``benchmarks/bench_models.py --scaling``, 1 CPU thread, float32, forward +
    backward of the module alone): ≈ 10 ns and ≈ 20 bytes kept for backward per
    atom × Miller-index term once N ≳ 100 (C_max 8, 224 atoms: 0.9M terms, 9 ms, 17 MiB).

``invariant`` mode (ours: the paper's f(|Q|, environment, type) taken literally)
    Reflections: R_b = {Q = 2π hkl·B_b : 0 < |Q| ≤ Q_max}, a sphere, so the set of vectors
    does not depend on the cell chosen to describe crystal b.
    Form factors of K pseudo-particles, rank-C in |Q|:
        f_ik(Q) = Σ_c a_ikc φ_c(|Q|),  a_i = MLP_form(h_i) ∈ R^{K·C},  φ_c Gaussian in |Q| (Å⁻¹)
    Structure factors, via per-atom phase sums S_ikc:
        F_k(Q) = Σ_c φ_c(|Q|) Σ_i a_ikc exp(2πi hkl·r_i)
    Readout (only |F|², which an origin shift cannot change; |F(−Q)|² = |F(Q)|², so only half
    of each ±Q pair is computed, counted twice), gathered by smooth |Q| shells:
        P_bsk = (2π)³ / (N_b V_b Ω_s) · Σ_{Q ∈ R_b} w_s(|Q|) c(|Q|) |F_k(Q)|²
        w_s(q) = exp(−(q − q_s)² / 2σ_s²),  Ω_s = ∫ w_s(|q|) d³q,  c = cosine cutoff at Q_max
        d = MLP_diff(log(1 + P))
    (2π)³/V_b is the volume per reflection, so P is the shell average of |F|²/N: a 2×1×1
    supercell doubles N, doubles the reflection density and adds reflections with F = 0, and
    leaves P unchanged. Invariant to rotation, reflection, origin shift, atom order, unimodular
    change of basis and supercells.
    Cost: N_b · |R_b| atom–reflection pairs per crystal, |R_b| ≈ V_b Q_max³ / (12π²) (half
    the sphere), so ∝ N_b² for crystals of similar density (a supercell n×1×1 costs n² times
    the cell; paper mode costs n times).
    How it is computed (issue 13; :class:`InvariantDiffraction`):
    - the reflection list of a crystal depends only on L_b and Q_max: it is enumerated once
      per lattice and kept (:data:`REFLECTIONS`, a bounded least-recently-used cache keyed by
      the lattice's bytes and Q_max); nothing is stored in the shards;
    - the crystals of a batch are cut into groups of similar size (:func:`size_buckets`:
      sorted by (|R_b|, N_b), cut points chosen to minimise padded pairs + a fixed cost per
      group, :data:`BUCKET_COST_PAIRS`); each group g of G crystals is padded to R_g
      reflections and N_g atoms and summed by dense batched products,
          [Re S; Im S] = [cos Φ; sin Φ] · a,   Φ = 2π hkl · rᵀ   ([G, 2R_g, N_g] · [G, N_g, K·C]),
          Σ_Q w_s c |F_k|² = Wᵀ · I                             ([G, S, R_g] · [G, R_g, K]),
      padding atoms carrying a = 0 and padding reflections w = 0.
    Time O(Σ_g G R_g N_g · K·C) (padded pairs, ≈ 1.1–1.2× the pairs on embedded batches) plus a
    fixed ≈ 40 operations per group; memory: the cos and sin of each padded pair kept for
    backward (2 numbers) + O(Σ_b |R_b| · (K·C + S·K)).
    Why dense groups (``benchmarks/bench_models.py --bucket-scan``: the module alone, forward +
    backward, 1 CPU thread, CPU time, float32, warm cache; 64 embedded crystals, 870 atoms,
    Q_max 4 Å⁻¹, 9,327 reflections, 0.33M pairs): the sparse COO product of the reference
    95 ms; dense groups 19–21 ms for 4 to 13 groups (0.35–0.56M padded pairs); one group per
    size (57 groups, no padding) 39 ms, bound by the per-group operations; a single padded group
    for the whole batch 165 ms (5.9M padded pairs, mostly padding).
    In whole models (``benchmarks/bench_models.py``, ``small`` presets, the same 64 crystals,
    forward + backward, CPU time, warm cache): the plug-in adds +3% to CGCNN, +14% to SchNet,
    +19% to MEGNet and ≤ 8% (within the noise) to PRDNet, ALIGNN and Matformer, where the
    reference added +50%, +60%, +73% and up to +19%; with an empty cache (a first epoch)
    +8%, +14%, +23%. At the ``paper`` presets (Q_max 6 Å⁻¹, K·C = 64) it adds +26% (CGCNN),
    +45% (SchNet), +19% (MEGNet) where the reference added +143%, +82%, +64%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from prdnet.geometry import reciprocal_lattice
from prdnet.models.base import mlp
from prdnet.models.basis import cosine_cutoff, gaussian_basis, linear_centers

DiffractionMode = Literal["paper", "invariant"]


def miller_indices(c_max: int) -> torch.Tensor:
    """H = {(h, k, l) ≠ 0 : |h|, |k|, |l| ≤ C_max, gcd(|h|, |k|, |l|) = 1}, [M, 3] long.

    Lexicographic order. The set is closed under sign changes and permutations of h, k, l;
    |H| = 26, 98, 290, 578, 1154, 1730, 2882, 4034 for C_max = 1 … 8.
    """
    axis = torch.arange(-c_max, c_max + 1)
    hkl = torch.cartesian_prod(axis, axis, axis)
    divisor = torch.gcd(torch.gcd(hkl[:, 0], hkl[:, 1]), hkl[:, 2])
    return hkl[divisor == 1]


def structure_factor(
    form_factors: torch.Tensor,
    frac_coords: torch.Tensor,
    hkl: torch.Tensor,
    batch: torch.Tensor,
    num_graphs: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re and Im of F_b(hkl) = Σ_{i ∈ b} f_i(hkl) exp(2πi hkl·r_i), each [B, M].

    ``form_factors`` f [N, M] (one value per atom and reflection, in units of the scattering
    length), ``frac_coords`` r [N, 3], ``hkl`` [M, 3] shared by all crystals, ``batch`` [N].
    Friedel's law F(−hkl) = F(hkl)* holds for real f with f(−hkl) = f(hkl).
    """
    phase = 2.0 * math.pi * frac_coords @ hkl.to(frac_coords.dtype).T
    real = form_factors.new_zeros(num_graphs, hkl.shape[0]).index_add_(0, batch, form_factors * torch.cos(phase))
    imag = form_factors.new_zeros(num_graphs, hkl.shape[0]).index_add_(0, batch, form_factors * torch.sin(phase))
    return real, imag


def scattering_vectors(hkl: torch.Tensor, lattice: torch.Tensor, crystal: torch.Tensor) -> torch.Tensor:
    """Q = 2π hkl · B_b (Å⁻¹), [R, 3], for reflections ``hkl`` [R, 3] of crystals ``crystal`` [R].

    B_b = (L_b⁻¹)ᵀ is the reciprocal lattice of crystal b (rows b1, b2, b3, a_i·b_j = δ_ij).
    """
    basis = reciprocal_lattice(lattice)[crystal]
    return 2.0 * math.pi * torch.einsum("ri,rij->rj", hkl.to(lattice.dtype), basis)


def reciprocal_sphere(
    lattice: torch.Tensor, q_max: float, friedel_half: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """All Miller indices with 0 < |Q| ≤ Q_max for every crystal of a batch, as a flat list.

    Returns ``hkl`` [R, 3] long and ``crystal`` [R] (ascending). Since Q·a_i = 2π h_i,
    |h_i| ≤ Q_max |a_i| / 2π; the box of those bounds is enumerated for all crystals at once
    (mixed-radix decoding of one ``arange``) and cut to the sphere. No gradient flows through
    the selection; the count is ≈ V_b Q_max³ / 6π² per crystal. With ``friedel_half`` only one
    of each pair ±hkl is kept (the one whose first non-zero index is positive): half the count,
    enough for anything even in Q such as |F(Q)|² = |F(−Q)|² for real form factors.
    """
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


REFLECTION_CACHE_CAPACITY = 32_000_000
"""Most reflections (summed over the crystals held) the reflection cache keeps: 6 bytes each
(hkl as int16), so at most ≈ 190 MB. The embedded MP set (36,738 crystals) has ≈ 5M
half-sphere reflections at Q_max 4 Å⁻¹ and ≈ 18M at 6 Å⁻¹ (≈ V_b Q_max³ / 12π² each), so
either fits and every crystal is enumerated once per run."""

BUCKET_COST_PAIRS = {"cpu": 15_000, "cuda": 200_000}
"""Fixed cost of one size group of :meth:`InvariantDiffraction.pattern` (≈ 35 tensor operations,
forward and backward), in padded atom–reflection pairs of equal cost, per device type (other
devices use the ``cuda`` value). CPU: measured with ``benchmarks/bench_models.py --bucket-scan``
on one thread (CPU time): a group ≈ 0.45 ms, a padded pair ≈ 25 ns, so a group ≈ 18,000
pairs; the module's time is flat within 10% for values from 8,000 to 100,000. CUDA: not
measured (no GPU was available to this work); set high because a GPU is bound by kernel
launches rather than padded pairs; re-measure with ``--bucket-scan`` on a GPU."""


class ReflectionCache:
    """The half-sphere reflection list of each crystal, enumerated once per lattice.

    The reflections {hkl : 0 < |Q| ≤ Q_max}, Q = 2π hkl·B, depend only on the lattice L and
    Q_max, so they are kept, keyed by (Q_max, dtype, the 9 numbers of L as bytes), as hkl
    [R_b, 3] integer arrays (int16 where the indices fit; the order and Friedel half of
    :func:`reciprocal_sphere`). The misses of a batch are enumerated together by
    :func:`reciprocal_sphere` on the CPU, in the lattice's dtype. Bounded: once it holds
    ``capacity`` reflections, further lists are computed at every look-up but not kept (an
    epoch visits every crystal in turn, and a least-recently-used policy would then drop
    every list just before its reuse). ``hits`` and ``misses`` count crystals looked up.
    """

    def __init__(self, capacity: int = REFLECTION_CACHE_CAPACITY) -> None:
        self.capacity = capacity
        self.entries: dict[tuple, np.ndarray] = {}
        self.size = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        """Drop every entry (the counters too)."""
        self.entries.clear()
        self.size = self.hits = self.misses = 0

    def lookup(self, lattice: torch.Tensor, q_max: float) -> list[np.ndarray]:
        """hkl [R_b, 3] (0 < |Q| ≤ Q_max, one of each ±hkl pair) of every lattice of ``lattice`` [B, 3, 3] (Å)."""
        rows = lattice.detach().to("cpu").contiguous()
        numbers = rows.numpy()
        keys = [(float(q_max), str(rows.dtype), numbers[b].tobytes()) for b in range(len(numbers))]
        first: dict[tuple, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        missing = [key for key in first if key not in self.entries]
        computed: dict[tuple, np.ndarray] = {}
        if missing:
            hkl, crystal = reciprocal_sphere(rows[[first[key] for key in missing]], q_max, friedel_half=True)
            counts = torch.bincount(crystal, minlength=len(missing)).tolist()
            small = hkl.numel() == 0 or int(hkl.abs().max()) < 2**15
            for key, part in zip(missing, torch.split(hkl, counts)):
                computed[key] = part.numpy().astype(np.int16 if small else np.int32)
                if self.size + len(part) <= self.capacity:
                    self.entries[key] = computed[key]
                    self.size += len(part)
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        return [self.entries[key] if key in self.entries else computed[key] for key in keys]


REFLECTIONS = ReflectionCache()
"""The process-wide reflection cache of the ``invariant`` mode (shared by its modules; keyed
by Q_max, so modules with different Q_max do not collide)."""


def size_buckets(reflections: Sequence[int], atoms: Sequence[int], bucket_cost: float) -> list[list[int]]:
    """Crystals grouped for padded dense products: lists of crystal indices.

    The crystals are sorted by (R_b, N_b) and cut into contiguous groups minimising
    Σ_groups (n_g · max R · max N + ``bucket_cost``): the padded atom–reflection pairs plus a
    fixed cost per group in pair units (dynamic programming over the cut points, O(B²)).
    ``bucket_cost`` 0 gives about one group per size; a large one gives a single group.
    """
    order = sorted(range(len(reflections)), key=lambda b: (reflections[b], atoms[b]))
    r = np.array([reflections[b] for b in order], dtype=np.float64)
    n = np.array([atoms[b] for b in order], dtype=np.float64)
    best = np.zeros(len(order) + 1)
    cut = np.zeros(len(order) + 1, dtype=np.int64)
    for end in range(1, len(order) + 1):
        widest = np.maximum.accumulate(n[:end][::-1])[::-1]  # max N over [start, end)
        cost = best[:end] + (end - np.arange(end)) * r[end - 1] * widest + bucket_cost
        start = int(np.argmin(cost))
        best[end], cut[end] = cost[start], start
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def with_zero_row(table: torch.Tensor) -> torch.Tensor:
    """``table`` [M, ...] with one row of zeros appended, [M + 1, ...]: the row padding entries read."""
    return torch.cat([table, table.new_zeros(1, *table.shape[1:])])


def padded_rows(counts: np.ndarray, members: Sequence[int]) -> np.ndarray:
    """Row indices [G, max count] of a padded group: row j of crystal ``members[g]`` in a flat
    table of all crystals' rows (``counts`` rows each, in order), or the table's length (the zero
    row of :func:`with_zero_row`) for j ≥ its count."""
    members = np.asarray(members, dtype=np.int64)
    first = np.cumsum(counts) - counts
    slots = np.arange(counts[members].max() if len(members) else 0)
    return np.where(slots < counts[members, None], first[members, None] + slots, counts.sum())


def padded_phase_sums(coefficients: torch.Tensor, frac_coords: torch.Tensor, hkl: torch.Tensor) -> torch.Tensor:
    """Re and Im of S_gr = Σ_i c_gi exp(2πi hkl_gr·r_gi) for a group of G crystals, [G, 2, R, C]
    (index 0 of dim 1: Re, 1: Im).

    ``coefficients`` c [G, N, C] per atom (0 on padding atoms, which then add nothing),
    ``frac_coords`` r [G, N, 3] (unitless), ``hkl`` [G, R, 3] Miller indices as floats (any
    value on padding rows). Dense: the [R, N] phase matrix 2π hkl·rᵀ of each crystal, its cos
    and sin stacked into one [2R, N] matrix, and one batched product with c. Autograd keeps the
    cos and sin (2 numbers per padded pair) and, only if r or hkl carry a gradient, the phases.
    """
    size, width = hkl.shape[:2]
    phase = torch.bmm(hkl, (2.0 * math.pi * frac_coords).transpose(1, 2))  # [G, R, N]
    trig = torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)  # [G, 2R, N]
    return torch.bmm(trig, coefficients).view(size, 2, width, coefficients.shape[-1])


def gaussian_shell_volume(centers: torch.Tensor, width: float) -> torch.Tensor:
    """Ω_s = ∫_{R³} exp(−(|q| − μ_s)² / 2σ²) d³q (Å⁻³ for μ, σ in Å⁻¹), [S].

    Closed form: 4πσ [μσ e^{−μ²/2σ²} + (μ² + σ²) √(π/2) (1 + erf(μ / σ√2))].
    """
    mu, sigma = centers, width
    tail = mu * sigma * torch.exp(-(mu**2) / (2 * sigma**2))
    body = (mu**2 + sigma**2) * math.sqrt(math.pi / 2) * (1 + torch.erf(mu / (sigma * math.sqrt(2))))
    return 4 * math.pi * sigma * (tail + body)


def shell_weights(
    q_norm: torch.Tensor, centers: torch.Tensor, width: float, q_max: float, taper: float
) -> torch.Tensor:
    """w_s(|Q|) c(|Q|), [..., S]: Gaussian shells exp(−(|Q| − q_s)² / 2σ_s²) (``centers`` q_s [S]
    and ``width`` σ_s in Å⁻¹) times the cosine cutoff c reaching 0 at ``q_max`` over ``taper`` (Å⁻¹).
    ``q_norm`` |Q| [...] in Å⁻¹."""
    return gaussian_basis(q_norm, centers, width) * cosine_cutoff(q_norm, q_max, taper).unsqueeze(-1)


def shell_normalization(
    atoms_per_crystal: torch.Tensor, volume: torch.Tensor, centers: torch.Tensor, width: float
) -> torch.Tensor:
    """(2π)³ / (N_b V_b Ω_s), [B, S] (Å³ / Å³ · Å³ = unitless per f²): turns the shell sums
    Σ_Q w_s c |F|² into P_bsk, the average of |F|²/N over shell s in reciprocal space.

    ``atoms_per_crystal`` N [B], ``volume`` V [B] (Å³), shell ``centers`` [S] and ``width`` σ_s
    (Å⁻¹). (2π)³/V is the reciprocal volume per reflection, so P is unchanged by a supercell
    (N and the reflection density double, the added reflections have F = 0).
    """
    scale = (2 * math.pi) ** 3 / (atoms_per_crystal.to(volume.dtype) * volume)
    return scale[:, None] / gaussian_shell_volume(centers, width)[None, :]


class PaperDiffraction(nn.Module):
    """The published diffraction module (``paper`` mode; formulas in the module docstring).

    Args:
        in_channels: node embedding width F.
        c_max: Miller index cutoff C_max.
        form_hidden: hidden width of MLP_form (F → form_hidden → |H|).
        diff_hidden: hidden width of MLP_diff (2|H| → diff_hidden → out_channels).
        out_channels: width D of d.
        activation: activation of both MLPs.
    """

    def __init__(
        self, in_channels: int, c_max: int, form_hidden: int, diff_hidden: int, out_channels: int, activation: str
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.register_buffer("hkl", miller_indices(c_max))
        count = self.hkl.shape[0]
        self.form = mlp([in_channels, form_hidden, count], activation)
        self.diff = mlp([2 * count, diff_hidden, out_channels], activation)

    def forward(
        self,
        h: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
    ) -> torch.Tensor:
        """d [B, D]; ``lattice`` is not used (the paper's F depends on fractional coordinates only)."""
        real, imag = structure_factor(self.form(h), frac_coords, self.hkl, batch, num_graphs)
        return self.diff(torch.cat([real, imag], dim=-1))


class InvariantDiffraction(nn.Module):
    """Diffraction in a |Q| ≤ Q_max sphere with |Q|-dependent learned form factors (``invariant`` mode).

    Computed per group of crystals of similar size (:func:`size_buckets`), each padded to its
    largest reflection list and atom count: the reflection lists come from the cache
    (:data:`REFLECTIONS`, enumerated once per lattice), the phase sums from dense batched
    products (:func:`padded_phase_sums`), the shell sums from one more batched product
    [G, S, R]·[G, R, K]; padding atoms carry c = 0 and padding reflections shell weight 0.

    Args:
        in_channels: node embedding width F.
        q_max: radius of the reflection sphere (Å⁻¹).
        q_taper: width of the cosine cutoff below Q_max (Å⁻¹).
        channels: number K of pseudo-particles (independent form factors).
        radial_bins, radial_width: Gaussian basis φ_c(|Q|) of the form factors (count C on
            [0, Q_max], σ in Å⁻¹).
        shells, shell_width: Gaussian |Q| shells of the readout (count S on (0, Q_max], σ_s Å⁻¹).
        form_hidden: hidden width of MLP_form (F → form_hidden → K·C).
        diff_hidden: hidden width of MLP_diff (S·K → diff_hidden → out_channels).
        out_channels: width D of d.
        activation: activation of both MLPs.
    """

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
        self.activation = activation
        self.register_buffer("radial_centers", linear_centers(0.0, q_max, radial_bins).float())
        self.register_buffer("shell_centers", linear_centers(q_max / shells, q_max, shells).float())
        self.form = mlp([in_channels, form_hidden, channels * radial_bins], activation)
        self.diff = mlp([shells * channels, diff_hidden, out_channels], activation)

    def pattern(
        self,
        h: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
    ) -> torch.Tensor:
        """Shell-averaged intensities P [B, S, K] (dimension of f²).

        ``batch`` [N] must be sorted (each crystal's atoms contiguous, as in a PyG batch).
        Everything that depends on one reflection only (|Q|, φ_c(|Q|), w_s(|Q|) c(|Q|)) is
        computed once on the flat list; each size group then gathers its padded rows.
        """
        if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("the batch vector must be sorted: each crystal's atoms contiguous, as in a PyG Batch")
        device = h.device
        coefficients = self.form(h)  # [N, K·C]
        atoms = torch.bincount(batch, minlength=num_graphs)
        atom_counts = np.asarray(atoms.tolist(), dtype=np.int64)
        reflections = REFLECTIONS.lookup(lattice, self.q_max)
        reflection_counts = np.array([len(hkl) for hkl in reflections], dtype=np.int64)
        hkl = torch.from_numpy(np.concatenate(reflections)).to(device=device, dtype=torch.long)  # [R, 3]
        crystal = torch.repeat_interleave(torch.from_numpy(reflection_counts).to(device))  # [R]
        q_norm = scattering_vectors(hkl, lattice, crystal).norm(dim=-1)  # [R], Å⁻¹
        # Each table gets one zero row past its end, which padding entries read (c = 0, w = 0).
        radial = with_zero_row(gaussian_basis(q_norm, self.radial_centers, self.radial_width))  # [R + 1, C]
        weights = with_zero_row(
            shell_weights(q_norm, self.shell_centers, self.shell_width, self.q_max, self.q_taper)
        )  # [R + 1, S]
        hkl = with_zero_row(hkl.to(coefficients.dtype))
        frac_coords = with_zero_row(frac_coords.to(coefficients.dtype))
        coefficients = with_zero_row(coefficients)
        bucket_cost = BUCKET_COST_PAIRS.get(device.type, BUCKET_COST_PAIRS["cuda"])
        groups = size_buckets(reflection_counts.tolist(), atom_counts.tolist(), bucket_cost)
        sums = []
        for members in groups:
            atom_rows = torch.from_numpy(padded_rows(atom_counts, members)).to(device)  # [G, N_max]
            reflection_rows = torch.from_numpy(padded_rows(reflection_counts, members)).to(device)  # [G, R_max]
            phase_sums = padded_phase_sums(coefficients[atom_rows], frac_coords[atom_rows], hkl[reflection_rows])
            sums.append(self.group_shell_sums(phase_sums, radial[reflection_rows], weights[reflection_rows]))
        order = torch.as_tensor(np.concatenate(groups), dtype=torch.long, device=device)
        summed = torch.cat(sums)[torch.argsort(order)]  # [B, S, K], crystals in batch order
        volume = torch.linalg.det(lattice).abs()
        scale = shell_normalization(atoms, volume, self.shell_centers, self.shell_width)
        return summed * scale.unsqueeze(-1)

    def group_shell_sums(self, phase_sums: torch.Tensor, radial: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Σ_{Q ∈ R_g} w_s(|Q|) c(|Q|) · 2 |F_k(Q)|² for a group of G padded crystals, [G, S, K].

        ``phase_sums``: Re and Im of S [G, 2, R, K·C]; ``radial`` φ_c(|Q|) [G, R, C];
        ``weights`` w_s c [G, R, S] (0 on padding rows). F_k(Q) = Σ_c φ_c(|Q|) S_kc(Q); the 2
        counts the −Q each kept Q stands for (|F(−Q)|² = |F(Q)|²).
        """
        size, width = radial.shape[:2]
        phase_sums = phase_sums.view(size, 2, width, self.channels, self.radial_bins)
        structure = (phase_sums * radial.view(size, 1, width, 1, self.radial_bins)).sum(-1)  # [G, 2, R, K]
        intensity = 2.0 * structure.square().sum(1)  # [G, R, K]
        return torch.bmm(weights.transpose(1, 2), intensity)

    def forward(
        self,
        h: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
    ) -> torch.Tensor:
        """d [B, D]."""
        return self.diff(torch.log1p(self.pattern(h, frac_coords, lattice, batch, num_graphs)).flatten(1))


DIFFRACTION_MODULES: dict[str, type[nn.Module]] = {"paper": PaperDiffraction, "invariant": InvariantDiffraction}
"""The plug-in's modes by name: the one list the registry, schemas and workflow read."""


def build_diffraction(mode: DiffractionMode, in_channels: int, params: dict) -> nn.Module:
    """The diffraction module of ``mode`` (``paper`` or ``invariant``) with hyperparameters ``params``."""
    if mode not in DIFFRACTION_MODULES:
        raise ValueError(f"unknown diffraction mode {mode!r}; known: {', '.join(DIFFRACTION_MODULES)}")
    return DIFFRACTION_MODULES[mode](in_channels, **params)
