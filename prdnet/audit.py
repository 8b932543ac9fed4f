"""Invariance audit: does a model's prediction change when the same crystal is described differently?

For crystals of the embedded Materials Project set (float64), each copy below describes the
same physical crystal (or its mirror image), and its graph is rebuilt from the transformed
structure with :func:`prdnet.data.loader.structure_to_data`:

- rotation: lattice rows L → L Rᵀ for a random proper rotation R;
- reflection: the mirror image x → M x, M = diag(−1, 1, 1), written in the right-handed basis
  L' = −L Mᵀ with r' = −r (mod 1);
- origin shift: r → r + t (mod 1) for a random t;
- permutation: sites listed in a random order;
- basis change: L' = U L, r' = r U⁻¹ (mod 1) for the unimodular U = [[1,1,0],[0,1,0],[0,0,1]];
- supercell: the 2×1×1 supercell.

For each model (randomly initialised, seeded, eval mode so BatchNorm uses its running
statistics) and diffraction mode it reports max over crystals of |y' − y| / |y|, next to the
spread (max − min) / mean |y| of its predictions over the crystals, which shows that a small
change is not a constant output.

Models (:data:`AUDITED`): every backbone of the registry at its published design, and
Matformer without its lattice edges. Two published designs read the cell basis, and the audit
shows it rather than hiding it (:data:`BASIS_DEPENDENT`, the transforms each one is expected
to fail, asserted by ``tests/test_audit.py``):
- Matformer's self-connecting edges have lengths |a|, |b|, |c| of the stored cell: another
  basis (a' = a + b) or the 2×1×1 supercell (|2a|) changes them;
- iComFormer's edge features use the angles between each bond and the stored lattice vectors:
  a basis change or supercell changes the vectors, and the mirror image written in a
  right-handed basis (l → −M l while v → M v) flips the sign of every such cosine.
The others (CGCNN, SchNet, MEGNet, ALIGNN, PRDNet, Matformer without lattice edges) use only
distances and bond angles, and are invariant to every transform to float64 rounding.
Run: ``python -m prdnet.audit --n-crystals 8``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from pymatgen.core import Structure
from torch_geometric.data import Batch

from prdnet.data.loader import structure_to_data
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.models.registry import build_model, load_presets

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
DEFAULT_DATASET = "mp_2018_cgcnn36k"
TOLERANCE = 1e-5
"""Largest relative change (float64) counted as invariant."""
BASIS_CHANGE = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
MIRROR = np.diag([-1.0, 1.0, 1.0])
AUDITED: dict[str, dict] = {
    "cgcnn": {"name": "cgcnn"},
    "schnet": {"name": "schnet"},
    "megnet": {"name": "megnet"},
    "alignn": {"name": "alignn"},
    "matformer": {"name": "matformer"},
    "matformer (no lattice edges)": {
        "name": "matformer",
        "hyperparameters": {"backbone": {"lattice_edges": False}},
    },
    "icomformer": {"name": "icomformer"},
    "prdnet": {"name": "prdnet"},
}
"""Audited models: row label → model spec (preset and diffraction are set by the audit)."""
MODELS = tuple(AUDITED)
BASIS_DEPENDENT: dict[str, tuple[str, ...]] = {
    "matformer": ("basis change", "supercell 2×1×1"),
    "icomformer": ("reflection", "basis change", "supercell 2×1×1"),
}
"""The transforms a model without diffraction is expected to fail (module docstring); every
model not listed is invariant by construction."""
DIFFRACTION_MODES = (None, "paper", "invariant")


def embedded_data_path(config_path: str | Path = DEFAULT_CONFIG, dataset: str = DEFAULT_DATASET) -> Path:
    """Path of the embedded MP file from the config (``datasets.<dataset>.path``, relative to the repo root)."""
    with open(config_path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    path = Path(config["datasets"][dataset]["path"])
    return path if path.is_absolute() else REPO_ROOT / path


def sample_structures(
    path: str | Path, n_crystals: int, max_atoms: int, pool: int = 500, seed: int = 0
) -> list[tuple[str, Structure, dict]]:
    """``n_crystals`` (id, structure, targets) drawn at random (seeded) among the first ``pool``
    parseable entries with at most ``max_atoms`` sites."""
    candidates = [
        (entry.id, entry.structure, entry.targets)
        for entry in read_mp_embedded(path, limit=pool)
        if entry.structure is not None and len(entry.structure) <= max_atoms
    ]
    if len(candidates) < n_crystals:
        raise ValueError(f"only {len(candidates)} crystals with ≤ {max_atoms} atoms among the first {pool}")
    rows = np.random.default_rng(seed).choice(len(candidates), size=n_crystals, replace=False)
    return [candidates[row] for row in sorted(rows)]


def _wrap(frac_coords: np.ndarray) -> np.ndarray:
    """Fractional coordinates brought into [0, 1)."""
    wrapped = np.mod(frac_coords, 1.0)
    return np.where(wrapped >= 1.0, wrapped - 1.0, wrapped)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random proper rotation matrix (det = +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rotated(structure: Structure, rng: np.random.Generator) -> Structure:
    """The crystal rotated rigidly: rows of L → L Rᵀ, same fractional coordinates."""
    rotation = random_rotation(rng)
    return Structure(structure.lattice.matrix @ rotation.T, structure.species, structure.frac_coords)


def reflected(structure: Structure, rng: np.random.Generator) -> Structure:
    """The mirror image x → M x in a right-handed basis: L' = −L Mᵀ, r' = −r (mod 1)."""
    return Structure(-structure.lattice.matrix @ MIRROR.T, structure.species, _wrap(-structure.frac_coords))


def origin_shifted(structure: Structure, rng: np.random.Generator) -> Structure:
    """Every atom moved by the same random fractional t: r → r + t (mod 1)."""
    return Structure(structure.lattice, structure.species, _wrap(structure.frac_coords + rng.random(3)))


def permuted(structure: Structure, rng: np.random.Generator) -> Structure:
    """The same sites listed in a random order."""
    order = rng.permutation(len(structure))
    return Structure(structure.lattice, [structure.species[i] for i in order], structure.frac_coords[order])


def basis_changed(structure: Structure, rng: np.random.Generator) -> Structure:
    """Another primitive basis of the same lattice: L' = U L, r' = r U⁻¹ (mod 1), det U = 1."""
    inverse = np.linalg.inv(BASIS_CHANGE)
    return Structure(
        BASIS_CHANGE @ structure.lattice.matrix, structure.species, _wrap(structure.frac_coords @ inverse)
    )


def supercell(structure: Structure, rng: np.random.Generator) -> Structure:
    """The 2×1×1 supercell (twice the atoms, twice the volume)."""
    return structure * (2, 1, 1)


TRANSFORMS: dict[str, Callable[[Structure, np.random.Generator], Structure]] = {
    "rotation": rotated,
    "reflection": reflected,
    "origin shift": origin_shifted,
    "permutation": permuted,
    "basis change": basis_changed,
    "supercell 2×1×1": supercell,
}


@dataclass
class AuditRow:
    """Largest relative prediction change of one model under each transform."""

    model: str
    diffraction: str | None
    changes: dict[str, float]
    spread: float
    """(max − min) / mean |y| of the original predictions: how much the model tells crystals apart."""

    @property
    def worst(self) -> float:
        return max(self.changes.values())


def _batch(structures: Sequence[Structure]) -> Batch:
    return Batch.from_data_list([structure_to_data(s, dtype=torch.float64) for s in structures])


def relative_change(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max_c |y'_c − y_c| / |y_c| over crystals c."""
    return float(((other - reference).abs() / reference.abs().clamp(min=1e-12)).max())


def run_audit(
    structures: Sequence[Structure],
    preset: str = "small",
    seed: int = 0,
    models: Sequence[str] = MODELS,
    diffraction_modes: Sequence[str | None] = DIFFRACTION_MODES,
) -> list[AuditRow]:
    """Audit every (model, diffraction mode) on ``structures`` under every transform in :data:`TRANSFORMS`."""
    rng = np.random.default_rng(seed)
    batches = {"original": _batch(structures)}
    for name, transform in TRANSFORMS.items():
        batches[name] = _batch([transform(structure, rng) for structure in structures])
    presets = load_presets()
    rows = []
    for model_name in models:
        for mode in diffraction_modes:
            torch.manual_seed(seed)
            spec = {**AUDITED[model_name], "preset": preset, "diffraction": mode}
            model = build_model(spec, "regression", presets=presets)
            model = model.double().eval()
            with torch.no_grad():
                predictions = {name: model(batch) for name, batch in batches.items()}
            reference = predictions.pop("original")
            changes = {name: relative_change(reference, value) for name, value in predictions.items()}
            spread = float((reference.max() - reference.min()) / reference.abs().mean())
            rows.append(AuditRow(model_name, mode, changes, spread))
    return rows


def format_table(rows: Sequence[AuditRow], tolerance: float = TOLERANCE) -> str:
    """Markdown table of the audit: one row per (model, diffraction), one column per transform."""
    transforms = list(rows[0].changes)
    header = ["model", "diffraction", "prediction spread", *transforms, f"invariant (≤ {tolerance:g})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.model, row.diffraction or "none", f"{row.spread:.2f}"]
        cells += [f"{row.changes[name]:.1e}" for name in transforms]
        failing = [name for name in transforms if row.changes[name] > tolerance]
        cells.append("yes" if not failing else "no: " + ", ".join(failing))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the audit table for ``--n-crystals`` embedded crystals."""
    parser = argparse.ArgumentParser(prog="python -m prdnet.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--n-crystals", type=int, default=8)
    parser.add_argument("--max-atoms", type=int, default=12, help="largest cell drawn (the supercell doubles it)")
    parser.add_argument("--preset", default="small", help="model preset from config/models.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="config holding datasets.<dataset>.path")
    parser.add_argument("--data", default=None, help="embedded MP file (overrides --config)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the graphs are small)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                        help=f"models to audit (default all: {', '.join(MODELS)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = Path(args.data) if args.data else embedded_data_path(args.config)
    crystals = sample_structures(path, args.n_crystals, args.max_atoms, seed=args.seed)
    structures = [structure for _, structure, _ in crystals]
    rows = run_audit(structures, preset=args.preset, seed=args.seed, models=args.models)
    print(f"Invariance audit: {len(crystals)} crystals ({', '.join(c[0] for c in crystals)}), "
          f"preset {args.preset}, float64, largest relative change of the prediction\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
