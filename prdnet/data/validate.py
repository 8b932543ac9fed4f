"""Validation of crystal entries before they enter the pipeline.

Every check returns a reason string; an entry that fails any check is written to
``rejects.csv`` with that reason and never silently dropped. Checks on the structure reject
the whole entry; a missing, non-finite or implausible target (outside the task's bounds, or a
class label that is not a non-negative integer) rejects the entry for that task only. A user's
target given no bounds is held to a default range derived from all its values
(:func:`default_bounds`, applied by :func:`prdnet.data.prepare.collect_entries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

from prdnet.data.sources import Entry

ALL_TASKS = "*"


@dataclass(frozen=True)
class ValidationRules:
    """Thresholds of the structure checks (config block ``validation``)."""

    min_distance: float = 0.5
    """Å; two atoms (or an atom and an image of itself) closer than this are unphysical."""
    max_nearest_neighbor: float = 8.0
    """Å; an atom with no other atom within this distance is isolated (disconnected)."""
    max_atomic_number: int = 100
    """Largest atomic number the models embed."""
    max_atoms: int = 500
    """Largest cell the pipeline accepts."""
    target_bounds: dict[str, list[float | None]] = field(default_factory=dict)
    """Task → plausible [low, high] of its target (None = open); replaces the source's default bounds."""


@dataclass(frozen=True)
class Reject:
    """One rejected (entry, task) pair; ``task`` is ``*`` when the whole entry is rejected."""

    id: str
    task: str
    reason: str


def nearest_neighbor_distances(structure: Structure, radius: float) -> np.ndarray:
    """Distance (Å) from each site to its nearest other site or periodic image; ``inf`` if none within ``radius``."""
    cart = np.ascontiguousarray(structure.cart_coords, dtype=float)
    lattice = np.ascontiguousarray(structure.lattice.matrix, dtype=float)
    centre, neighbour, image, distance = find_points_in_spheres(
        cart, cart, radius, np.array([1, 1, 1], dtype=np.int64), lattice, tol=1e-8
    )
    is_self = (centre == neighbour) & np.all(image == 0, axis=1)
    nearest = np.full(len(structure), np.inf)
    np.minimum.at(nearest, centre[~is_self], distance[~is_self])
    return nearest


def structure_problem(structure: Structure, rules: ValidationRules) -> str | None:
    """The first reason the structure is unusable, or ``None`` if it passes every check."""
    if len(structure) == 0:
        return "empty structure: no sites"
    if len(structure) > rules.max_atoms:
        return f"too many atoms: {len(structure)} > {rules.max_atoms}"
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(lattice)):
        return "non-finite lattice"
    volume = abs(float(np.linalg.det(lattice)))
    if not volume > 1e-3:
        return f"degenerate lattice: volume {volume:.3g} Å³"
    if not np.all(np.isfinite(structure.frac_coords)):
        return "non-finite coordinates"
    if not structure.is_ordered:
        return "disordered structure: partial occupancy"
    for site in structure:
        element = site.specie
        if not isinstance(element, Element) or not 1 <= element.Z <= rules.max_atomic_number:
            return f"unknown element: {element}"
    nearest = nearest_neighbor_distances(structure, rules.max_nearest_neighbor)
    closest = float(nearest.min())
    if closest < rules.min_distance:
        return f"atoms too close: {closest:.3f} Å < {rules.min_distance} Å"
    isolated = np.flatnonzero(np.isinf(nearest))
    if isolated.size:
        return f"isolated atom: site {int(isolated[0])} has no neighbour within {rules.max_nearest_neighbor} Å"
    return None


FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest target a model computes with (float32): beyond it a target becomes inf in training."""


def target_problem(value: float | None, bounds: tuple[float | None, float | None] | list, kind: str = "regression",
                   bounds_from: str = "validation.target_bounds") -> str | None:
    """Why a target value is unusable (missing, a boolean given for a regression target, non-finite,
    beyond float32, outside ``[low, high]``, or a class label that is not a non-negative integer),
    or ``None``. ``bounds_from`` names where the bounds come
    from (a config key, or the source's default range), for the reason."""
    if value is None:
        return "missing target"
    if isinstance(value, (bool, np.bool_)):
        if kind == "classification":
            return None
        return f"not a number: {value} (a boolean; a regression target needs a number)"
    if not math.isfinite(value):
        return f"non-finite target: {value}"
    if abs(value) > FLOAT32_MAX:
        return f"target beyond float32: {value:g} (|value| > {FLOAT32_MAX:.4g}, the largest a model computes with)"
    low, high = bounds
    if (low is not None and value < low) or (high is not None and value > high):
        return f"implausible target: {value:g} outside [{low}, {high}] ({bounds_from})"
    if kind == "classification" and (value < 0 or value != int(value)):
        return f"invalid class label: {value:g} (a non-negative integer is needed)"
    return None


DEFAULT_BOUNDS_WIDTHS = 100
"""How far the default range of a target without bounds reaches: this many times the width of the
central range of its values (5th to 95th percentile) below and above that range."""


def central_range(values: np.ndarray) -> tuple[float, float]:
    """The 5th and 95th percentiles of ``values``, each rounded inwards to one of the values, so
    that with three or more values neither is the smallest or the largest."""
    return float(np.quantile(values, 0.05, method="higher")), float(np.quantile(values, 0.95, method="lower"))


def default_bounds(values: np.ndarray) -> tuple[float, float] | None:
    """The plausible range of a target given no bounds, from its (finite) values: the central
    range [p5, p95] widened by :data:`DEFAULT_BOUNDS_WIDTHS` (100) times its width on each side,
    ``[p5 - 100·(p95 - p5), p95 + 100·(p95 - p5)]``.

    Only values wrong by orders of magnitude fall outside (1e30; a sentinel such as -999 or 9999
    among values of a few units; a value in meV among values in eV). Every target column of the
    embedded MP and MatBench data lies within 19 widths of its central range (total magnetization
    18, exfoliation energy 4.6, band gap 2.3; a band gap per atom within 55), and so does the
    largest of 40,000 values of a log-normal target with σ = 1.25 (90 % of its values spanning 1.8
    orders of magnitude; at most 58 widths in 20 draws). A target with a heavier tail needs its
    own ``bounds`` (``[null, null]``: open). The percentiles ignore the extreme values, so a few
    wrong values (under 5 %) do not widen the range. When more than 90 % of the values are equal
    (e.g. zeros), the central range is taken over the other values, extended to the common one.
    Returns ``None`` (no default range) with fewer than 3 values, or fewer than 3 off the common
    value."""
    values = np.asarray(values, dtype=float)
    if values.size < 3:
        return None
    low, high = central_range(values)
    if high <= low:
        common = float(np.median(values))
        others = values[values != common]
        if others.size < 3:
            return None
        others_low, others_high = central_range(others)
        low, high = min(common, others_low), max(common, others_high)
    width = DEFAULT_BOUNDS_WIDTHS * (high - low)
    return low - width, high + width


def outside_default_bounds(value: float, bounds: tuple[float, float], bounds_key: str) -> str | None:
    """Why ``value`` is set aside by the default range of a target without bounds, or ``None``;
    the reason names the range and ``bounds_key``, the config key that replaces it."""
    low, high = bounds
    if low <= value <= high:
        return None
    return (f"implausible target: {value:g} outside [{low:.6g}, {high:.6g}], the default range for a target without "
            f"bounds (its values' 5th to 95th percentile, widened {DEFAULT_BOUNDS_WIDTHS}× its width each side); "
            f"set {bounds_key} to replace it")  # fmt: skip


def validate_entry(
    entry: Entry, tasks: list[str], rules: ValidationRules, task_info: dict[str, Any] | None = None
) -> list[Reject]:
    """All rejects for one entry: one for the whole entry, or one per task with a bad target.

    ``task_info`` (task → the source's :class:`~prdnet.data.sources.Task`) gives each task's kind
    and default bounds; ``rules.target_bounds`` replaces those bounds per task."""
    if entry.structure is None:
        return [Reject(entry.id, ALL_TASKS, entry.parse_error or "malformed structure")]
    try:
        problem = structure_problem(entry.structure, rules)
    except Exception as error:  # a structure pymatgen accepted but cannot compute with
        problem = f"malformed structure: {type(error).__name__}: {error}"
    if problem is not None:
        return [Reject(entry.id, ALL_TASKS, problem)]
    rejects = []
    for task in tasks:
        info = (task_info or {}).get(task)
        if task in rules.target_bounds:
            bounds, bounds_from = rules.target_bounds[task], f"validation.target_bounds.{task}"
        else:
            bounds = info.bounds if info is not None else (None, None)
            bounds_from = (info.bounds_key if info is not None and info.bounds_key else
                           f"the source's plausible range; validation.target_bounds.{task} replaces it")  # fmt: skip
        problem = target_problem(entry.targets.get(task), tuple(bounds), info.kind if info is not None else "regression",
                                 bounds_from)  # fmt: skip
        if problem is not None:
            rejects.append(Reject(entry.id, task, problem))
    if len(rejects) == len(tasks) and tasks:
        details = "; ".join(f"{r.task}: {r.reason}" for r in rejects)
        return [Reject(entry.id, ALL_TASKS, f"no usable target for any task ({details})")]
    return rejects
