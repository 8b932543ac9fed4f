"""What each crystal shares with others: formula, chemical system, symmetry, prototype, duplicates.

One row per crystal of a dataset (``crystal_groups.parquet``), computed once by the
``crystal_groups`` step and read by the split step, which uses it to audit every split for
leakage (:mod:`prdnet.data.leakage`) and to make out-of-distribution splits
(:mod:`prdnet.data.splits`). Columns:

- ``reduced_formula``: pymatgen's reduced formula (``Fe2O3``); crystals that share it are
  polymorphs of one compound (MatBench's own polymorph check compares these only).
- ``chemical_system``: the sorted element symbols joined by ``-`` (``Fe-O``), the cluster of
  leave-one-cluster-out CV by chemical system (LOCO-CV, Meredig et al., Mol. Syst. Des. Eng. 3,
  819 (2018)).
- ``elements``: the sorted element symbols.
- ``spacegroup``, ``crystal_system``: spglib's space group number at ``symprec`` and its crystal
  system (International Tables, Vol. A, Table 2.1.2.1 ranges).
- ``prototype``: an AFLOW-style prototype label (Mehl et al., Comput. Mater. Sci. 136, S1
  (2017)): the anonymous reduced formula, the space group and, per element, its Wyckoff letters,
  species-free. Two crystals with one label are the same structure type with other elements
  (rock salt NaCl and MgO). Deliberate deviation from AFLOW and from aviary's
  ``get_protostructure_label`` (CompRhys/aviary, aviary/wren/utils.py): Wyckoff letters are
  spglib's in its standard setting, not canonicalised over the space group's alternative
  settings, so one structure type can carry two labels (prototype sharing is then undercounted,
  never overcounted); the Pearson symbol is left out (it follows from the space group and counts).
- ``duplicate_cluster``: crystals that pymatgen's ``StructureMatcher`` (tolerances from config)
  matches, compared only within one reduced formula: the same crystal whatever its cell, setting,
  origin or orientation. Clusters are pymatgen's ``group_structures`` (each member matches the
  cluster's first member). The cluster's name is its first id in sorted order.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from prdnet.data.tables import CrystalColumns

SPGLIB_SYMPREC = 0.1
"""Å; spglib's tolerance for the space group (pymatgen's SpacegroupAnalyzer default)."""

GROUP_COLUMNS = ("id", "reduced_formula", "chemical_system", "elements", "spacegroup", "crystal_system", "prototype",
                 "duplicate_cluster")  # fmt: skip

CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
_CRYSTAL_SYSTEM_LAST_NUMBER = (2, 15, 74, 142, 167, 194, 230)


@dataclass(frozen=True)
class MatcherTolerances:
    """``StructureMatcher`` and spglib tolerances (pymatgen's defaults: ltol 0.2, stol 0.3, angle_tol 5°)."""

    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    symprec: float = SPGLIB_SYMPREC

    @classmethod
    def from_config(cls, options: dict[str, Any] | None) -> "MatcherTolerances":
        return cls(**(options or {}))


def crystal_system(spacegroup: int) -> str:
    """The crystal system of space group ``spacegroup`` (1-230): triclinic 1-2, monoclinic 3-15,
    orthorhombic 16-74, tetragonal 75-142, trigonal 143-167, hexagonal 168-194, cubic 195-230
    (International Tables for Crystallography, Vol. A)."""
    if not 1 <= spacegroup <= 230:
        raise ValueError(f"space group number must be 1..230, got {spacegroup}")
    return CRYSTAL_SYSTEMS[int(np.searchsorted(_CRYSTAL_SYSTEM_LAST_NUMBER, spacegroup))]


def anonymous_formula(counts: list[int]) -> str:
    """The anonymous reduced formula of element counts, largest count last: ``[2, 3]`` → ``A2B3``,
    ``[1, 1]`` → ``AB``, ``[1, 1, 3]`` → ``ABC3``."""
    divisor = int(np.gcd.reduce(np.asarray(counts, dtype=np.int64)))
    reduced = sorted(c // divisor for c in counts)
    return "".join(f"{chr(ord('A') + i)}{c if c > 1 else ''}" for i, c in enumerate(reduced))


def prototype_label(numbers: np.ndarray, wyckoffs: list[str], equivalent_atoms: np.ndarray, spacegroup: int) -> str:
    """AFLOW-style label ``<anonymous formula>_<space group>_<Wyckoff letters per element>``.

    Each element contributes its sites' orbits (``equivalent_atoms``) as sorted Wyckoff letters;
    the elements are ordered by (count, letters), so the label does not depend on which elements
    occupy the sites. A supercell has the same orbits as its primitive cell, so the same label.
    """
    orbits: dict[int, list[str]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    for site, (number, orbit) in enumerate(zip(numbers, equivalent_atoms)):
        counts[int(number)] += 1
        if orbit == site:
            orbits[int(number)].append(wyckoffs[site])
    divisor = int(np.gcd.reduce(np.asarray(list(counts.values()), dtype=np.int64)))
    per_element = sorted((counts[z] // divisor, "".join(sorted(orbits[z]))) for z in counts)
    letters = "_".join(f"{letters}" for _, letters in per_element)
    return f"{anonymous_formula([c for c, _ in per_element])}_{spacegroup}_{letters}"


Cell = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One crystal as (lattice [3, 3] Å, fractional coordinates [N, 3], atomic numbers [N])."""


def _symmetry(cell: Cell, symprec: float) -> tuple[int, str]:
    """Space group number and prototype label of one crystal (spglib); (0, "unknown") if spglib finds none."""
    import spglib

    lattice, frac_coords, numbers = cell
    dataset = spglib.get_symmetry_dataset((lattice, frac_coords, numbers), symprec=symprec)
    if dataset is None:
        return 0, "unknown"
    return int(dataset.number), prototype_label(numbers, list(dataset.wyckoffs), np.asarray(dataset.equivalent_atoms),
                                                int(dataset.number))  # fmt: skip


def _symmetry_of_cells(args: tuple[list[Cell], float]) -> list[tuple[int, str]]:
    cells, symprec = args
    return [_symmetry(cell, symprec) for cell in cells]


def _duplicate_clusters_of_formula(args: tuple[list[int], list[Cell], MatcherTolerances]) -> list[list[int]]:
    """Rows of one reduced formula grouped by ``StructureMatcher`` (species compared, cells reduced to primitive)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    rows, cells, tolerances = args
    matcher = StructureMatcher(ltol=tolerances.ltol, stol=tolerances.stol, angle_tol=tolerances.angle_tol)
    structures = []
    for row, (lattice, frac_coords, numbers) in zip(rows, cells):
        structure = Structure(Lattice(lattice), numbers, frac_coords)
        structure.properties["row"] = row
        structures.append(structure)
    return [[s.properties["row"] for s in group] for group in matcher.group_structures(structures)]


def _chunks(items: list, n: int) -> list[list]:
    return [items[i::n] for i in range(n)] if items else []


def crystal_groups(crystals: CrystalColumns, tolerances: MatcherTolerances = MatcherTolerances(), workers: int = 1) -> pa.Table:
    """The group table of ``crystals`` (columns :data:`GROUP_COLUMNS`), one row per crystal in order.

    Work is spread over ``workers`` processes: spglib per crystal, ``StructureMatcher`` per
    reduced formula that more than one crystal has (a single crystal is its own cluster)."""
    from pymatgen.core import Composition, Element

    symbols = {int(z): Element.from_Z(int(z)).symbol for z in np.unique(crystals.atomic_numbers)}
    n = len(crystals.ids)
    slices = crystals.atom_slices()
    formulas, systems, elements = [], [], []
    for row in range(n):
        start, stop = slices[row], slices[row + 1]
        zs, counts = np.unique(crystals.atomic_numbers[start:stop], return_counts=True)
        composition = Composition({symbols[int(z)]: int(c) for z, c in zip(zs, counts)})
        names = sorted(symbols[int(z)] for z in zs)
        formulas.append(composition.reduced_formula)
        systems.append("-".join(names))
        elements.append(names)

    by_formula: dict[str, list[int]] = defaultdict(list)
    for row, formula in enumerate(formulas):
        by_formula[formula].append(row)
    shared = sorted((rows for rows in by_formula.values() if len(rows) > 1), key=len, reverse=True)
    cluster_of = np.arange(n)
    slices = crystals.atom_slices()
    cells = [(crystals.lattices[r], crystals.frac_coords[slices[r] : slices[r + 1]], crystals.atomic_numbers[slices[r] : slices[r + 1]])
             for r in range(n)]  # fmt: skip
    chunks = _chunks(list(range(n)), max(1, workers) * 4)
    jobs_symmetry = [([cells[r] for r in chunk], tolerances.symprec) for chunk in chunks]
    jobs_matching = [(rows, [cells[r] for r in rows], tolerances) for rows in shared]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            symmetry_parts = list(pool.map(_symmetry_of_cells, jobs_symmetry))
            groups = [group for part in pool.map(_duplicate_clusters_of_formula, jobs_matching, chunksize=8) for group in part]
    else:
        symmetry_parts = [_symmetry_of_cells(job) for job in jobs_symmetry]
        groups = [group for job in jobs_matching for group in _duplicate_clusters_of_formula(job)]
    spacegroups, prototypes = np.zeros(n, dtype=np.int64), [""] * n
    for chunk, part in zip(chunks, symmetry_parts):
        for row, (number, label) in zip(chunk, part):
            spacegroups[row], prototypes[row] = number, label
    for group in groups:
        first = min(group, key=lambda r: crystals.ids[r])
        cluster_of[group] = first
    return pa.table({
        "id": list(crystals.ids),
        "reduced_formula": formulas,
        "chemical_system": systems,
        "elements": elements,
        "spacegroup": spacegroups,
        "crystal_system": [crystal_system(int(s)) if s else "unknown" for s in spacegroups],
        "prototype": prototypes,
        "duplicate_cluster": [crystals.ids[int(c)] for c in cluster_of],
    })  # fmt: skip
