"""Invariance audit: does a model's prediction change when the same crystal is described differently?

For crystals of the embedded Materials Project set (float64), each copy below describes the
same physical crystal (or its mirror image):

- rotation: lattice rows L → L Rᵀ for a random proper rotation R;
- reflection: the mirror image x → M x, M = diag(−1, 1, 1), written in the right-handed basis
  L' = −L Mᵀ with r' = −r (mod 1);
- origin shift: r → r + t (mod 1) for a random t;
- permutation: sites listed in a random order;
- basis change: L' = U L, r' = r U⁻¹ (mod 1) for the unimodular U = [[1,1,0],[0,1,0],[0,0,1]];
- left-handed cell: the same lattice in the left-handed basis (a, b, −c): L' = D L, r' = r D,
  D = diag(1, 1, −1) (det −1);
- supercell: the 2×1×1 supercell.

Each model's input is built from the transformed structure exactly as the shards are built:
:func:`prdnet.data.loader.structure_to_data` with the model's graph recipe
(:func:`prdnet.data.recipes.graph_recipe_for`), i.e. :func:`prdnet.data.graphs.featurize_crystal`,
the function :mod:`prdnet.data.shards` calls. With the recipes' canonical cell
(:mod:`prdnet.data.cell`), a rotated, basis-changed, left-handed or permuted copy becomes the
same cell and coordinates, so every model, including those that read the cell vectors
(Matformer's and iComFormer's lattice self-edges, iComFormer's lattice angles, the paper's
diffraction plug-in), gives the same prediction to float rounding: these rows are the audit's
promise (:data:`PROMISED`, ≤ :data:`TOLERANCE`). The origin is not canonicalized, a mirror image
is another crystal and a supercell another cell: the reflection, origin-shift and supercell rows
are reported as they come out.

The crystals (:func:`sample_audit_structures`) are drawn across sizes (1–4, 5–12, 13–30 and
31–60 atoms) and cell shapes (right-angled cells and oblique ones), not only small cells.

For each model (randomly initialised, seeded, eval mode so BatchNorm uses its running
statistics) and diffraction mode it reports max over crystals of |y' − y| / |y|, next to the
spread (max − min) / mean |y| of its predictions over the crystals, which shows that a small
change is not a constant output. Models: every backbone of the registry at the chosen preset,
and every model's ``reference`` preset where it has one (PRDNet's released code).
Run: ``python -m prdnet.audit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pymatgen.core import Structure
from torch_geometric.data import Batch

from prdnet.data.graphs import GraphParams
from prdnet.data.loader import structure_to_data
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.models.registry import BACKBONES, DIFFRACTION_MODES as PLUGIN_MODES, build_model, load_presets

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
DEFAULT_DATASET = "mp_2018_cgcnn36k"
TOLERANCE = 1e-6
"""Largest relative change (float64) counted as invariant."""
BASIS_CHANGE = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
LEFT_HANDED = np.diag([1, 1, -1])
MIRROR = np.diag([-1.0, 1.0, 1.0])
PROMISED = ("rotation", "permutation", "basis change", "left-handed cell")
"""Transforms every model must pass with canonical-cell recipes (module docstring)."""
REPORTED = ("reflection", "origin shift", "supercell 2×1×1")
"""Transforms reported as they come out."""
SIZE_BUCKETS = ((1, 4), (5, 12), (13, 30), (31, 60))
"""Atom-count ranges the audit draws crystals from."""
EXTRA_PRESETS = ("reference",)
"""Presets audited besides the chosen one, for the models that have them."""
DIFFRACTION_MODES: tuple[str | None, ...] = (None, *PLUGIN_MODES)


def audited_models(preset: str = "small", presets: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Row label → model spec: every registry backbone at ``preset``, and each model's
    :data:`EXTRA_PRESETS` where its presets have them (label ``name (preset)``)."""
    presets = load_presets() if presets is None else presets
    models = {}
    for name in BACKBONES:
        available = presets["models"].get(name, {})
        if preset in available:
            models[name] = {"name": name, "preset": preset}
        for extra in EXTRA_PRESETS:
            if extra != preset and extra in available:
                models[f"{name} ({extra})"] = {"name": name, "preset": extra}
    return models


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


def is_oblique(structure: Structure, tolerance_degrees: float = 1.0) -> bool:
    """Whether some angle of the stored cell is more than ``tolerance_degrees`` from 90°."""
    return any(abs(angle - 90.0) > tolerance_degrees for angle in structure.lattice.angles)


def sample_audit_structures(
    path: str | Path, per_kind: int = 1, pool: int = 3000, seed: int = 0,
    buckets: Sequence[tuple[int, int]] = SIZE_BUCKETS,
) -> list[tuple[str, Structure, dict]]:
    """``per_kind`` crystals (seeded) of each size bucket × cell shape (right-angled, oblique)
    among the first ``pool`` parseable entries; a kind with no crystal in the pool is skipped."""
    kinds: dict[tuple[int, bool], list] = {}
    for entry in read_mp_embedded(path, limit=pool):
        if entry.structure is None:
            continue
        size = len(entry.structure)
        for bucket, (low, high) in enumerate(buckets):
            if low <= size <= high:
                kind = (bucket, is_oblique(entry.structure))
                kinds.setdefault(kind, []).append((entry.id, entry.structure, entry.targets))
    rng = np.random.default_rng(seed)
    chosen = []
    for kind in sorted(kinds):
        candidates = kinds[kind]
        rows = rng.choice(len(candidates), size=min(per_kind, len(candidates)), replace=False)
        chosen += [candidates[row] for row in sorted(rows)]
    return chosen


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


def left_handed(structure: Structure, rng: np.random.Generator) -> Structure:
    """The same crystal in the left-handed basis (a, b, −c): L' = D L, r' = r D (mod 1), D = diag(1, 1, −1)."""
    lattice = LEFT_HANDED @ structure.lattice.matrix
    return Structure(lattice, structure.species, _wrap(structure.frac_coords @ LEFT_HANDED))


def supercell(structure: Structure, rng: np.random.Generator) -> Structure:
    """The 2×1×1 supercell (twice the atoms, twice the volume), coordinates wrapped to [0, 1)."""
    doubled = structure * (2, 1, 1)
    return Structure(doubled.lattice, doubled.species, _wrap(doubled.frac_coords))


TRANSFORMS: dict[str, Callable[[Structure, np.random.Generator], Structure]] = {
    "rotation": rotated,
    "reflection": reflected,
    "origin shift": origin_shifted,
    "permutation": permuted,
    "basis change": basis_changed,
    "left-handed cell": left_handed,
    "supercell 2×1×1": supercell,
}
assert set(TRANSFORMS) == set(PROMISED) | set(REPORTED)


@dataclass
class AuditRow:
    """Largest relative prediction change of one model under each transform."""

    model: str
    diffraction: str | None
    recipe: GraphParams
    changes: dict[str, float]
    spread: float
    """(max − min) / mean |y| of the original predictions: how much the model tells crystals apart."""

    @property
    def worst(self) -> float:
        return max(self.changes.values())

    def failing(self, names: Sequence[str], tolerance: float = TOLERANCE) -> list[str]:
        """The transforms among ``names`` whose change exceeds ``tolerance``."""
        return [name for name in names if self.changes[name] > tolerance]


def model_inputs(structures: Sequence[Structure], recipe: GraphParams) -> Batch:
    """A float64 batch of the structures as the shards of ``recipe`` hold them (same function)."""
    return Batch.from_data_list([structure_to_data(s, params=recipe, dtype=torch.float64) for s in structures])


def relative_change(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max_c |y'_c − y_c| / |y_c| over crystals c."""
    return float(((other - reference).abs() / reference.abs().clamp(min=1e-12)).max())


def run_audit(
    structures: Sequence[Structure],
    preset: str = "small",
    seed: int = 0,
    models: Sequence[str] | None = None,
    diffraction_modes: Sequence[str | None] = DIFFRACTION_MODES,
    presets: Mapping[str, Any] | None = None,
) -> list[AuditRow]:
    """Audit every (model, diffraction mode) on ``structures`` under every transform in :data:`TRANSFORMS`.

    ``models`` are labels of :func:`audited_models` (default all). Each model reads the graphs
    of its own recipe; batches are built once per recipe.
    """
    presets = load_presets() if presets is None else presets
    specs = audited_models(preset, presets)
    rng = np.random.default_rng(seed)
    copies = {"original": list(structures)}
    for name, transform in TRANSFORMS.items():
        copies[name] = [transform(structure, rng) for structure in structures]
    batches: dict[GraphParams, dict[str, Batch]] = {}
    rows = []
    for label in models or list(specs):
        recipe = graph_recipe_for(specs[label], presets)
        if recipe not in batches:
            batches[recipe] = {name: model_inputs(group, recipe) for name, group in copies.items()}
        for mode in diffraction_modes:
            torch.manual_seed(seed)
            model = build_model({**specs[label], "diffraction": mode}, "regression", presets=presets)
            model = model.double().eval()
            with torch.no_grad():
                predictions = {name: model(batch) for name, batch in batches[recipe].items()}
            reference = predictions.pop("original")
            changes = {name: relative_change(reference, value) for name, value in predictions.items()}
            spread = float((reference.max() - reference.min()) / reference.abs().mean())
            rows.append(AuditRow(label, mode, recipe, changes, spread))
    return rows


def recipe_summary(recipe: GraphParams) -> str:
    """Short text of a recipe, e.g. ``knn 12, 8 Å, 12 self, canonical``."""
    rule = f"knn {recipe.k}" if recipe.neighbours == "knn" else (
        f"radius ≤{recipe.max_neighbours}" if recipe.max_neighbours else "radius")
    return f"{rule}, {recipe.cutoff:g} Å, {recipe.lattice_self_edges} self, {recipe.cell}"


def format_table(rows: Sequence[AuditRow], tolerance: float = TOLERANCE) -> str:
    """Markdown table of the audit: one row per (model, diffraction), one column per transform;
    the last column checks the promised transforms (:data:`PROMISED`) against ``tolerance``."""
    transforms = list(rows[0].changes)
    header = ["model", "diffraction", "graph recipe", "prediction spread", *transforms,
              f"promised rows ≤ {tolerance:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.model, row.diffraction or "none", recipe_summary(row.recipe), f"{row.spread:.2f}"]
        cells += [f"{row.changes[name]:.1e}" for name in transforms]
        failing = row.failing(PROMISED, tolerance)
        cells.append("yes" if not failing else "NO: " + ", ".join(failing))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the audit table for crystals drawn across sizes and cell shapes."""
    parser = argparse.ArgumentParser(prog="python -m prdnet.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=1, help="crystals per size bucket × cell shape")
    parser.add_argument("--max-atoms", type=int, default=SIZE_BUCKETS[-1][1],
                        help="largest cell drawn (buckets above it are dropped; the supercell doubles it)")
    parser.add_argument("--preset", default="small", help="model preset from config/models.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="config holding datasets.<dataset>.path")
    parser.add_argument("--data", default=None, help="embedded MP file (overrides --config)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the graphs are small)")
    labels = list(audited_models(parser.parse_known_args(argv)[0].preset))
    parser.add_argument("--models", nargs="+", default=None, choices=labels, metavar="MODEL",
                        help=f"models to audit (default all: {', '.join(labels)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = Path(args.data) if args.data else embedded_data_path(args.config)
    buckets = [(low, min(high, args.max_atoms)) for low, high in SIZE_BUCKETS if low <= args.max_atoms]
    crystals = sample_audit_structures(path, args.per_kind, seed=args.seed, buckets=buckets)
    structures = [structure for _, structure, _ in crystals]
    rows = []
    for label in args.models or labels:
        started = time.perf_counter()
        rows += run_audit(structures, preset=args.preset, seed=args.seed, models=[label])
        print(f"audited {label} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    described = ", ".join(f"{c[0]} ({len(c[1])} atoms{', oblique' if is_oblique(c[1]) else ''})" for c in crystals)
    print(f"Invariance audit: {len(crystals)} crystals: {described}; preset {args.preset}, float64, "
          f"largest relative change of the prediction\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
