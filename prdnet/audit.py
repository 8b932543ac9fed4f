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
the function :mod:`prdnet.data.shards` calls. With a canonical-cell recipe
(:mod:`prdnet.data.cell`), a rotated, basis-changed, left-handed or permuted copy becomes the
same cell and coordinates, and an origin-shifted one the same cell with shifted atoms, so every
model, including those that read the cell vectors (lattice self-edges, iComFormer's lattice
angles, the paper's diffraction plug-in), gives the same prediction to float rounding.

Every (model, diffraction mode, transform) must hold to :data:`TOLERANCE`, except where the
recipe, the plug-in or the model is not built to (:func:`design_reasons`, derived from the
recipe's fields, the diffraction mode and a measured property of the model, never from model
names): lattice self-edges are the cell's own vectors (a supercell has others); a recipe on the
stored cell follows its basis; with ``tie_tolerance 0`` float rounding picks among equidistant
neighbours; the paper's plug-in reads absolute positions (origin shift), F → F* for a mirror image,
and its hkl index the planes of the cell described (supercell); a model that reads the cell's basis
vectors beyond the edges (:func:`reads_cell_basis`, e.g. iComFormer's lattice frame: SE(3)-, not
E(3)-invariant) sees a supercell's other vectors and tells a mirror image apart. Those entries are
reported, marked "by design" with the reason (:func:`format_table` footnotes), not hidden; any
other change beyond the tolerance is a failure.

The crystals (:func:`sample_audit_structures`) are drawn across sizes (1–4, 5–12, 13–30 and
31–60 atoms) and cell shapes (right-angled cells and oblique ones), not only small cells, and
include pseudo-symmetric cells (:data:`PSEUDO_SYMMETRIC_IDS`: lattice vectors equally long to 1e-7 Å,
on which the Niggli reduction's choice of basis depends on the input).

For each model (randomly initialised, seeded, eval mode so BatchNorm uses its running
statistics) and diffraction mode it reports max over crystals of |y' − y| / |y|, next to the
spread (max − min) / mean |y| of its predictions over the crystals, which shows that a small
change is not a constant output. Models: every backbone of the registry at the chosen preset,
and every other preset besides the size presets (:data:`SIZE_PRESETS`) a model has (PRDNet's
``reference``, the released code, and its variants). Run: ``python -m prdnet.audit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from prdnet.data.sources.files import open_binary
from prdnet.data.sources.mp_embedded import parse_line, read_mp_embedded
from prdnet.models.registry import BACKBONES, DIFFRACTION_MODES as PLUGIN_MODES, build_model, load_presets

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
DEFAULT_DATASET = "mp_2018_cgcnn36k"
TOLERANCE = 1e-9
"""Largest relative change (float64) counted as invariant (float rounding gives about 1e-14)."""
BASIS_CHANGE = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
LEFT_HANDED = np.diag([1, 1, -1])
MIRROR = np.diag([-1.0, 1.0, 1.0])
PROMISED = ("rotation", "permutation", "basis change", "left-handed cell")
"""Transforms every model on a canonical-cell recipe with a tie tolerance passes whatever its
diffraction mode (no :func:`design_reasons` can name them)."""
REPORTED = ("reflection", "origin shift", "supercell 2×1×1")
"""Transforms that some recipes or plug-ins change by design (they must hold everywhere else)."""
SIZE_BUCKETS = ((1, 4), (5, 12), (13, 30), (31, 60))
"""Atom-count ranges the audit draws crystals from."""
PSEUDO_SYMMETRIC_IDS = ("mp-1167", "mp-676154", "mp-10412")
"""Embedded pseudo-symmetric crystals, audited besides the drawn ones: CF4 (10 atoms) and Mn(SbS2)2
(14), where two lattice vectors are equally long to 1e-7 Å; Yb(DyS2)2 (14), a = b = c to 1e-7 Å.
On them a rotated or left-handed copy made the Niggli reduction return another basis (the axes in
another order, or the other of two equally long vectors), which the canonical cell must undo."""
SIZE_PRESETS = ("small", "paper")
"""The presets that only set a model's size; every other preset a model has (``reference``,
``reference_invariant``, ...) is audited besides the chosen one."""
DIFFRACTION_MODES: tuple[str | None, ...] = (None, *PLUGIN_MODES)


def extra_presets(available: Mapping[str, Any], preset: str) -> list[str]:
    """A model's presets audited besides ``preset``: all but :data:`SIZE_PRESETS`, in config order."""
    return [name for name in available if name != preset and name not in SIZE_PRESETS]


def audited_models(preset: str = "small", presets: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Row label → model spec: every registry backbone at ``preset``, and each model's
    :func:`extra_presets` (label ``name (preset)``)."""
    presets = load_presets() if presets is None else presets
    models = {}
    for name in BACKBONES:
        available = presets["models"].get(name, {})
        if preset in available:
            models[name] = {"name": name, "preset": preset}
        for extra in extra_presets(available, preset):
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


def read_embedded_ids(path: str | Path, ids: Sequence[str], missing_ok: bool = False) -> list[tuple[str, Structure, dict]]:
    """(id, structure, targets) of the embedded entries with these material ids, in the order given.
    Only the lines whose text holds one of the ids are parsed (the file is read once, to its end
    or to the last id); an id that is not there is an error, or with ``missing_ok`` left out."""
    wanted = {material_id: f'"{material_id}"'.encode() for material_id in ids}
    found: dict[str, tuple[str, Structure, dict]] = {}
    with open_binary(path) as handle:
        for number, line in enumerate(handle, start=1):
            for material_id, quoted in wanted.items():
                if material_id not in found and quoted in line:
                    entry = parse_line(line, number)
                    if entry.id == material_id and entry.structure is not None:
                        found[material_id] = (entry.id, entry.structure, entry.targets)
            if len(found) == len(wanted):
                break
    missing = [material_id for material_id in ids if material_id not in found]
    if missing and not missing_ok:
        raise ValueError(f"not in {path}: {', '.join(missing)}")
    return [found[material_id] for material_id in ids if material_id in found]


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


def audit_crystals(
    path: str | Path, per_kind: int = 1, seed: int = 0, buckets: Sequence[tuple[int, int]] = SIZE_BUCKETS,
    pseudo_symmetric: Sequence[str] = PSEUDO_SYMMETRIC_IDS, missing_ok: bool = False,
) -> list[tuple[str, Structure, dict]]:
    """The audited crystals: :func:`sample_audit_structures`, then the ``pseudo_symmetric`` ids
    (:func:`read_embedded_ids`; those absent from a smaller file left out with ``missing_ok``)
    that fit the largest bucket and were not drawn already."""
    drawn = sample_audit_structures(path, per_kind, seed=seed, buckets=buckets)
    largest = max(high for _, high in buckets)
    ids = [material_id for material_id in pseudo_symmetric if material_id not in {c[0] for c in drawn}]
    extra = read_embedded_ids(path, ids, missing_ok) if ids else []
    return drawn + [crystal for crystal in extra if len(crystal[1]) <= largest]


def describe_crystals(crystals: Sequence[tuple[str, Structure, dict]]) -> str:
    """``mp-1 (4 atoms), mp-2 (14 atoms, oblique, pseudo-symmetric), ...``"""
    def traits(material_id: str, structure: Structure) -> str:
        marks = [f"{len(structure)} atoms"] + (["oblique"] if is_oblique(structure) else [])
        return ", ".join(marks + (["pseudo-symmetric"] if material_id in PSEUDO_SYMMETRIC_IDS else []))

    return ", ".join(f"{material_id} ({traits(material_id, structure)})" for material_id, structure, _ in crystals)


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


CELL_CHANGES = ("basis change", "left-handed cell", "supercell 2×1×1")
"""Transforms that give the crystal another cell (another basis of its lattice, or another lattice)."""
DESCRIPTION_CHANGES = ("rotation", "reflection", "origin shift", *CELL_CHANGES)
"""Transforms that change the numbers a crystal is written with (all but the atom order)."""

REASONS = {
    "self-edges": "lattice self-edges join each atom to its images along the cell's own vectors "
                  "(±a, ±b, ±c, ...): a supercell has other vectors",
    "stored cell": "the graph is built in the cell as stored (cell: stored): its lattice self-edges "
                   "and neighbour ties follow the basis the crystal is written in",
    "exact ties": "tie_tolerance 0: which of equidistant neighbours are kept is decided by float "
                  "rounding, which any rewriting of the crystal changes",
    "reads cell": "the model reads the cell's basis vectors, not only the edges (measured: its prediction "
                  "changes when the same edges are written in another basis of the lattice): a supercell has "
                  "other vectors, and in the right-handed cell of a mirror image the atoms are inverted, so "
                  "a crystal without a centre of inversion and its mirror image can differ",
    "paper origin": "paper diffraction: Re and Im F(hkl) of absolute positions change with the "
                    "origin (F → exp(2πi hkl·t) F)",
    "paper mirror": "paper diffraction: the r → −r of a mirror image conjugates F (F → F*)",
    "paper cell": "paper diffraction: hkl index the planes of the cell described, and another cell "
                  "(a supercell, another basis of a stored cell) has other planes",
}
"""Why a (recipe, diffraction mode, model) is not built to keep its prediction under some transforms."""


def design_reasons(
    recipe: GraphParams, diffraction: str | None, reads_cell: bool = False
) -> dict[str, tuple[str, ...]]:
    """Transform → keys of :data:`REASONS` for the transforms under which this recipe, diffraction
    mode and model are not built to keep the prediction (those not named must hold to :data:`TOLERANCE`).

    Rules, from the recipe's fields, the mode and whether the model reads the cell's basis vectors
    (``reads_cell``, :func:`reads_cell_basis`):
    lattice_self_edges > 0 → supercell; cell stored → basis change, left-handed cell, supercell;
    tie_tolerance 0 → every transform but the permutation (:data:`DESCRIPTION_CHANGES`);
    diffraction paper → origin shift, reflection, supercell, and with a stored cell basis change
    and left-handed cell (the hkl then follow the stored basis); reads_cell → reflection,
    supercell, and with a stored cell basis change and left-handed cell. Rotation and permutation
    are never excused on a canonical-cell recipe with a tie tolerance, nor basis change and a
    left-handed cell.
    """
    reasons: dict[str, list[str]] = {}

    def add(key: str, transforms: Sequence[str]) -> None:
        for transform in transforms:
            reasons.setdefault(transform, []).append(key)

    stored = recipe.cell == "stored"
    if recipe.lattice_self_edges > 0:
        add("self-edges", ["supercell 2×1×1"])
    if stored:
        add("stored cell", CELL_CHANGES)
    if recipe.tie_tolerance == 0:
        add("exact ties", DESCRIPTION_CHANGES)
    if reads_cell:
        add("reads cell", ["reflection", *(CELL_CHANGES if stored else ["supercell 2×1×1"])])
    if diffraction == "paper":
        add("paper origin", ["origin shift"])
        add("paper mirror", ["reflection"])
        add("paper cell", CELL_CHANGES if stored else ["supercell 2×1×1"])
    return {transform: tuple(keys) for transform, keys in reasons.items()}


PROBE_BASIS = np.array([[1, 0, 0], [1, 1, 0], [-1, 1, 1]])
"""Unimodular W (det +1) of :func:`rebased`: another basis of every lattice."""


def rebased(batch: Batch, unimodular: np.ndarray = PROBE_BASIS) -> Batch:
    """The same crystals and the same graph written in another basis of each lattice: L' = W L,
    r' = r W⁻¹, edge images n' = n W⁻¹ (integers), so every edge vector (r_j + n − r_i) L and distance
    is unchanged, to float rounding; only the cell's basis vectors (and the fractional coordinates
    in them) differ."""
    matrix = torch.as_tensor(unimodular, dtype=batch.lattice.dtype)
    inverse = torch.linalg.inv(matrix)
    other = batch.clone()
    other.lattice = matrix @ batch.lattice
    other.frac_coords = batch.frac_coords @ inverse
    other.edge_offset = torch.round(batch.edge_offset.to(inverse.dtype) @ inverse).to(batch.edge_offset.dtype)
    return other


def reads_cell_basis(
    model: torch.nn.Module, batch: Batch, reference: torch.Tensor, tolerance: float = TOLERANCE
) -> bool:
    """Whether ``model`` (eval mode) reads the cell's basis vectors beyond the edges: its prediction on
    :func:`rebased` ``batch`` (same edges, another basis) differs from ``reference`` (its prediction on
    ``batch``) by more than ``tolerance``. A model that sees the crystal only through its edges
    (distances, edge vectors, bond angles) cannot tell; iComFormer's lattice frame, the paper's
    diffraction (hkl of the cell) can."""
    with torch.no_grad():
        return relative_change(reference, model(rebased(batch))) > tolerance


@dataclass
class AuditRow:
    """Largest relative prediction change of one model under each transform."""

    model: str
    diffraction: str | None
    recipe: GraphParams
    changes: dict[str, float]
    spread: float
    """(max − min) / mean |y| of the original predictions: how much the model tells crystals apart."""
    by_design: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Transform → keys of :data:`REASONS` (:func:`design_reasons` of the row's recipe, mode and model)."""
    reads_cell: bool = False
    """Whether the model reads the cell's basis vectors beyond the edges (:func:`reads_cell_basis`)."""

    @property
    def worst(self) -> float:
        return max(self.changes.values())

    def changed(self, tolerance: float = TOLERANCE) -> list[str]:
        """The transforms whose change exceeds ``tolerance``."""
        return [name for name, change in self.changes.items() if change > tolerance]

    def failing(self, names: Sequence[str] | None = None, tolerance: float = TOLERANCE) -> list[str]:
        """The transforms (among ``names``, default all) whose change exceeds ``tolerance`` although
        nothing in the recipe or plug-in allows it: the audit's failures."""
        names = list(self.changes) if names is None else names
        return [name for name in names if self.changes[name] > tolerance and name not in self.by_design]

    def failing_by_design(self, tolerance: float = TOLERANCE) -> list[str]:
        """The transforms whose change exceeds ``tolerance`` as the recipe or plug-in allows."""
        return [name for name in self.changed(tolerance) if name in self.by_design]


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
            reads_cell = reads_cell_basis(model, batches[recipe]["original"], reference)
            rows.append(AuditRow(label, mode, recipe, changes, spread, design_reasons(recipe, mode, reads_cell),
                                 reads_cell))
    return rows


def recipe_summary(recipe: GraphParams) -> str:
    """Short text of a recipe, e.g. ``knn 12, 8 Å, 12 self, canonical`` (``, exact ties`` where
    tie_tolerance is 0)."""
    rule = f"knn {recipe.k}" if recipe.neighbours == "knn" else (
        f"radius ≤{recipe.max_neighbours}" if recipe.max_neighbours else "radius")
    ties = ", exact ties" if recipe.tie_tolerance == 0 else ""
    return f"{rule}, {recipe.cutoff:g} Å, {recipe.lattice_self_edges} self, {recipe.cell}{ties}"


def footnote_labels(rows: Sequence[AuditRow], tolerance: float = TOLERANCE) -> dict[str, str]:
    """Reason key → footnote label (a, b, ...), for the reasons behind some change beyond ``tolerance``,
    in the order of :data:`REASONS`."""
    used = {key for row in rows for name in row.failing_by_design(tolerance) for key in row.by_design[name]}
    return {key: chr(ord("a") + index) for index, key in enumerate(k for k in REASONS if k in used)}


def format_table(rows: Sequence[AuditRow], tolerance: float = TOLERANCE) -> str:
    """Markdown table of the audit: one row per (model, diffraction), one column per transform, then
    footnotes. A change beyond ``tolerance`` that the recipe or plug-in allows (:func:`design_reasons`)
    is shown with its footnote labels, e.g. ``8.1e-02 [a]``, the footnote saying ``by design`` and
    why; the last two columns list the transforms changed by design and those changed otherwise
    (failures: ``NO: ...``)."""
    transforms = list(rows[0].changes)
    labels = footnote_labels(rows, tolerance)
    header = ["model", "diffraction", "graph recipe", "prediction spread", *transforms,
              "changed by design", f"all else ≤ {tolerance:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.model, row.diffraction or "none", recipe_summary(row.recipe), f"{row.spread:.2f}"]
        by_design = row.failing_by_design(tolerance)
        for name in transforms:
            mark = ""
            if name in by_design:
                mark = " [" + ",".join(labels[key] for key in row.by_design[name]) + "]"
            cells.append(f"{row.changes[name]:.1e}{mark}")
        cells.append(", ".join(by_design) if by_design else "none")
        failing = row.failing(tolerance=tolerance)
        cells.append("yes" if not failing else "NO: " + ", ".join(failing))
        lines.append("| " + " | ".join(cells) + " |")
    if labels:
        lines.append("")
        lines += [f"- [{label}] by design: {REASONS[key]}." for key, label in labels.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the audit table for crystals drawn across sizes and cell shapes, and the pseudo-symmetric ones."""
    parser = argparse.ArgumentParser(prog="python -m prdnet.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=1, help="crystals per size bucket × cell shape")
    parser.add_argument("--max-atoms", type=int, default=SIZE_BUCKETS[-1][1],
                        help="largest cell drawn (buckets above it are dropped; the supercell doubles it)")
    parser.add_argument("--preset", default="small", help="model preset from config/models.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="config holding datasets.<dataset>.path")
    parser.add_argument("--data", default=None, help="embedded MP file (overrides --config)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the graphs are small)")
    parser.add_argument("--pseudo-symmetric", nargs="*", default=list(PSEUDO_SYMMETRIC_IDS), metavar="ID",
                        help="embedded ids audited besides the drawn crystals (default: %(default)s; none: no ids)")
    parser.add_argument("--skip-absent-ids", action="store_true",
                        help="leave out pseudo-symmetric ids the data file does not hold (a subset of the embedded file)")
    labels = list(audited_models(parser.parse_known_args(argv)[0].preset))
    parser.add_argument("--models", nargs="+", default=None, choices=labels, metavar="MODEL",
                        help=f"models to audit (default all: {', '.join(labels)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = Path(args.data) if args.data else embedded_data_path(args.config)
    buckets = [(low, min(high, args.max_atoms)) for low, high in SIZE_BUCKETS if low <= args.max_atoms]
    crystals = audit_crystals(path, args.per_kind, args.seed, buckets, args.pseudo_symmetric, args.skip_absent_ids)
    structures = [structure for _, structure, _ in crystals]
    rows = []
    for label in args.models or labels:
        started = time.perf_counter()
        rows += run_audit(structures, preset=args.preset, seed=args.seed, models=[label])
        print(f"audited {label} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"Invariance audit: {len(crystals)} crystals: {describe_crystals(crystals)}; preset {args.preset}, "
          f"float64, largest relative change of the prediction\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
