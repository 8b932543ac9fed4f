"""Scan: does :func:`prdnet.data.cell.canonical_cell` give one cell per crystal on real crystals?

For each of the first ``--limit`` embedded MP crystals (file order), the canonical cell of the
stored description is compared with the canonical cell of five other descriptions of the same
crystal (each with its own seeded random draw):

- rotation: L → L Rᵀ for a random proper rotation R;
- left-handed: the basis (a, b, −c): L → D L, r → r D, D = diag(1, 1, −1);
- origin shift: r → r + t (mod 1) for a random t;
- basis change: L → U L, r → r U⁻¹ for a random unimodular U (det +1, a product of shears);
- permutation: the atoms listed in a random order.

A description fails when its canonical lattice differs from the stored description's by more than
``--tolerance`` Å (largest entry), or its atoms differ as a set (fractional coordinates mod 1,
within ``--atom-tolerance``; for the origin shift, up to one common translation, since the origin
is not canonicalized). Writes counts per transform, the worst deviation, the failing ids and the
time taken to ``benchmarks/results/canonical_cell_scan.json`` (:mod:`benchmarks.record`), and with
``--before`` the figures of an earlier run (the code before a change) beside them.

    python benchmarks/scan_canonical_cell.py                 # first 2,000 crystals
    python benchmarks/scan_canonical_cell.py --limit 300 --results /tmp/scan.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prdnet.audit import embedded_data_path, random_rotation  # noqa: E402
from prdnet.data.cell import canonical_cell  # noqa: E402
from prdnet.data.graphs import GraphParams  # noqa: E402
from prdnet.data.sources.mp_embedded import read_mp_embedded  # noqa: E402
from record import Recording  # noqa: E402

LEFT_HANDED = np.diag([1, 1, -1])
Crystal = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(lattice rows Å, fractional coordinates, atomic numbers)."""


def random_unimodular(rng: np.random.Generator, shears: int = 3) -> np.ndarray:
    """An integer matrix with det +1: a product of ``shears`` random elementary shears (row i += ±1 · row j)."""
    matrix = np.eye(3, dtype=np.int64)
    for _ in range(shears):
        i, j = rng.choice(3, size=2, replace=False)
        shear = np.eye(3, dtype=np.int64)
        shear[i, j] = rng.choice([-1, 1])
        matrix = shear @ matrix
    return matrix


def rotated(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    lattice, frac, numbers = crystal
    rotation = random_rotation(rng)
    return lattice @ rotation.T, frac, numbers


def left_handed(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    lattice, frac, numbers = crystal
    return LEFT_HANDED @ lattice, np.mod(frac @ LEFT_HANDED, 1.0), numbers


def origin_shifted(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    lattice, frac, numbers = crystal
    return lattice, np.mod(frac + rng.random(3), 1.0), numbers


def basis_changed(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    lattice, frac, numbers = crystal
    unimodular = random_unimodular(rng)
    return unimodular @ lattice, np.mod(frac @ np.linalg.inv(unimodular), 1.0), numbers


def permuted(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    lattice, frac, numbers = crystal
    order = rng.permutation(len(numbers))
    return lattice, frac[order], numbers[order]


TRANSFORMS: dict[str, Callable[[Crystal, np.random.Generator], Crystal]] = {
    "rotation": rotated,
    "left-handed": left_handed,
    "origin shift": origin_shifted,
    "basis change": basis_changed,
    "permutation": permuted,
}


def same_atoms(
    numbers_a: np.ndarray, frac_a: np.ndarray, numbers_b: np.ndarray, frac_b: np.ndarray,
    tolerance: float, common_shift: bool = False,
) -> bool:
    """Whether two atom lists are one set: each atom of ``a`` has an atom of ``b`` of the same element
    at the same fractional position mod 1 (within ``tolerance``), and the counts agree. With
    ``common_shift``, up to one translation of all of ``b`` (tried: each ``b`` atom of the first
    ``a`` atom's element onto the first ``a`` atom)."""
    if len(numbers_a) != len(numbers_b) or sorted(numbers_a) != sorted(numbers_b):
        return False
    shifts = frac_b[numbers_b == numbers_a[0]] - frac_a[0] if common_shift else np.zeros((1, 3))
    for shift in shifts:
        delta = frac_a[:, None, :] - (frac_b[None, :, :] - shift)
        delta -= np.rint(delta)
        close = np.all(np.abs(delta) <= tolerance, axis=-1) & (numbers_a[:, None] == numbers_b[None, :])
        if np.all(close.any(axis=1)) and np.all(close.any(axis=0)):
            return True
    return False


def crystals(path: Path, limit: int) -> Iterable[tuple[str, Crystal]]:
    """(id, crystal) of the first ``limit`` parseable embedded entries."""
    for entry in read_mp_embedded(path, limit=limit):
        if entry.structure is not None:
            structure = entry.structure
            yield entry.id, (structure.lattice.matrix, structure.frac_coords, np.array(structure.atomic_numbers))


def scan(path: Path, limit: int, tolerance: float, atom_tolerance: float, seed: int, tie_tolerance: float) -> dict:
    """Figures and per-crystal failures of the scan (module docstring)."""
    failures: dict[str, list[dict]] = {name: [] for name in TRANSFORMS}
    worst = {name: {"lattice_A": 0.0, "id": None} for name in TRANSFORMS}
    calls, seconds, scanned = 0, 0.0, 0
    for index, (material_id, crystal) in enumerate(crystals(path, limit)):
        scanned += 1
        started = time.perf_counter()
        reference = canonical_cell(crystal[0], crystal[1], crystal[2], tie_tolerance)
        seconds += time.perf_counter() - started
        calls += 1
        for offset, (name, transform) in enumerate(TRANSFORMS.items()):
            rng = np.random.default_rng([seed, index, offset])
            lattice, frac, numbers = transform(crystal, rng)
            started = time.perf_counter()
            other = canonical_cell(lattice, frac, numbers, tie_tolerance)
            seconds += time.perf_counter() - started
            calls += 1
            deviation = float(np.abs(other[0] - reference[0]).max())
            atoms = same_atoms(crystal[2], reference[1], numbers, other[1], atom_tolerance, name == "origin shift")
            if deviation > worst[name]["lattice_A"]:
                worst[name] = {"lattice_A": deviation, "id": material_id}
            if deviation > tolerance or not atoms:
                failures[name].append({"id": material_id, "lattice_A": deviation, "same_atoms": atoms})
    return {
        "crystals": scanned,
        "failing": {name: len(rows) for name, rows in failures.items()},
        "failing_crystals": len({row["id"] for rows in failures.values() for row in rows}),
        "worst_deviation": worst,
        "failing_ids": {name: [row["id"] for row in rows] for name, rows in failures.items()},
        "canonical_cell_calls": calls,
        "canonical_cell_seconds": seconds,
        "ms_per_canonical_cell": 1e3 * seconds / max(calls, 1),
    }, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="embedded MP file (default: config/config.yaml's path)")
    parser.add_argument("--limit", type=int, default=2000, help="first entries of the file to scan")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest canonical-lattice change, Å")
    parser.add_argument("--atom-tolerance", type=float, default=1e-6, help="fractional-coordinate tolerance")
    parser.add_argument("--tie-tolerance", type=float, default=GraphParams().tie_tolerance,
                        help="canonical_cell's length_tolerance, Å (the recipes' tie_tolerance)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=None,
                        help="JSON to write (default benchmarks/results/canonical_cell_scan.json)")
    parser.add_argument("--before", default=None,
                        help="an earlier result file (e.g. of the code before a change): its figures, command, "
                             "commit and times are kept under `before` for comparison")
    args = parser.parse_args(argv)
    path = Path(args.data) if args.data else embedded_data_path()
    recording = Recording("canonical_cell_scan", threads=1, results=args.results)
    recording.start()
    started = time.perf_counter()
    figures, failures = scan(path, args.limit, args.tolerance, args.atom_tolerance, args.seed, args.tie_tolerance)
    figures["seconds"] = time.perf_counter() - started
    settings = {key: getattr(args, key) for key in ("limit", "tolerance", "atom_tolerance", "tie_tolerance", "seed")}
    extra = {}
    if args.before:
        earlier = json.loads(Path(args.before).read_text())
        extra["before"] = {key: earlier.get(key) for key in ("figures", "settings", "command", "commit",
                                                             "uncommitted_changes", "started", "finished", "note")}
    written = recording.write(figures, rounds=[failures], settings=settings, **extra)
    print(f"{figures['crystals']} crystals in {figures['seconds']:.0f} s "
          f"({figures['ms_per_canonical_cell']:.2f} ms per canonical_cell); failing per transform: "
          f"{figures['failing']}; worst: {figures['worst_deviation']}; written to {written}")


if __name__ == "__main__":
    main()
