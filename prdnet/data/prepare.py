"""Read a source, validate every entry, and write the dataset's canonical crystal table.

Outputs in ``out_dir``: ``structures.parquet`` (accepted crystals, see :mod:`prdnet.data.tables`),
``rejects.csv`` (id, task, reason; task ``*`` means the whole entry), ``summary.json`` (counts, and
the SHA-256 of ``structures.parquet`` that its readers check: :mod:`prdnet.data.checksums`) and
``official_folds.json`` (fold → official test ids; empty for sources without folds).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from prdnet.data.checksums import with_checksums
from prdnet.data.ids import id_problem, normalise_id
from prdnet.data.sources import Entry, Task, load_source
from prdnet.data.sources.files import read_text
from prdnet.data.tables import CrystalColumns, crystals_table
from prdnet.data.validate import (
    ALL_TASKS,
    Reject,
    ValidationRules,
    default_bounds,
    outside_default_bounds,
    validate_entry,
)
from prdnet.io import write_json, write_parquet, write_text


def rejects_csv(rejects: list[Reject]) -> str:
    """CSV text of the rejects, header ``id,task,reason``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "task", "reason"])
    writer.writerows((r.id, r.task, r.reason) for r in rejects)
    return buffer.getvalue()


def reason_class(reason: str) -> str:
    """The kind of a reject reason: its text up to the first ':' or '(' ('atoms too close: 0.3 Å'
    → 'atoms too close'; 'no usable target for any task (band_gap: missing target)' → 'no usable
    target for any task'), never cut inside brackets."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()


def collect_entries(
    entries: Any,
    tasks: list[str],
    rules: ValidationRules,
    candidates: dict[str, Any] | None = None,
    task_info: dict[str, Task] | None = None,
    default_ranges: dict[str, Any] | None = None,
) -> tuple[list[Entry], list[Reject], int]:
    """Validate entries; return the accepted ones, all rejects and the number read.

    Ids are normalised (:func:`prdnet.data.ids.normalise_id`); an id seen before, exactly or only
    after normalisation, is rejected as a duplicate. A target rejected for its task (missing,
    non-finite, implausible) is removed from the accepted entry. ``task_info`` (task → the
    source's :class:`Task`) gives each task's kind and default plausibility bounds.

    A regression task given no bounds (:attr:`Task.bounds_from_values`, and no
    ``validation.target_bounds`` for it) gets a default range from its accepted values
    (:func:`prdnet.data.validate.default_bounds`) once all are read; a target outside is rejected
    for its task like any implausible one (and an entry left with no usable target is rejected
    whole). If ``default_ranges`` is a dict it is filled with each such task's range
    (``[low, high]``, or ``None`` where the values were too few to give one).

    If ``candidates`` is a dict it is filled, per task, with the number of entries read whose
    target is finite (``count``) and ``rejected``: ``[index among those, id]`` of the ones
    rejected (whole, or for that task), so that index-based split recipes (``matformer``) can be
    reproduced."""
    accepted: list[Entry] = []
    rejects: list[Reject] = []
    seen: dict[str, str] = {}
    position: dict[tuple[str, str], int] = {}  # (task, id) → index among the entries with a target, if accepted
    read = 0
    if candidates is not None:
        candidates.update({t: {"count": 0, "rejected": []} for t in tasks})
    for entry in entries:
        read += 1
        with_target = [t for t in tasks if _finite(entry.targets.get(t))]
        raw_id, entry.id = entry.id, normalise_id(entry.id)
        rejected_tasks: set[str] = set()
        problem = id_problem(raw_id)
        if problem is not None:
            rejects.append(Reject(raw_id, ALL_TASKS, problem))
            whole_reject = True
        elif entry.id in seen:
            first = seen[entry.id]
            reason = "duplicate id" if first == raw_id else f"duplicate id: {raw_id!r} equals {first!r} after normalisation"
            rejects.append(Reject(raw_id, ALL_TASKS, reason))
            whole_reject = True
        else:
            seen[entry.id] = raw_id
            entry_rejects = validate_entry(entry, tasks, rules, task_info)
            rejects.extend(entry_rejects)
            whole_reject = any(r.task == ALL_TASKS for r in entry_rejects)
            rejected_tasks = {r.task for r in entry_rejects}
            if not whole_reject:
                entry.targets = {t: (None if t in rejected_tasks else v) for t, v in entry.targets.items()}
                accepted.append(entry)
        if candidates is not None:
            for task in with_target:
                if whole_reject or task in rejected_tasks:
                    candidates[task]["rejected"].append([candidates[task]["count"], entry.id])
                else:
                    position[(task, entry.id)] = candidates[task]["count"]
                candidates[task]["count"] += 1
    ranges = {task: default_bounds(_task_values(accepted, task)) for task in tasks
              if _bounds_from_values(task, rules, task_info)}  # fmt: skip
    if default_ranges is not None:
        default_ranges.update({task: None if bounds is None else list(bounds) for task, bounds in ranges.items()})
    accepted, outliers = set_aside_outliers(accepted, tasks, ranges, task_info or {}, rejects)
    if candidates is not None:
        for reject in outliers:
            if (reject.task, reject.id) in position:
                candidates[reject.task]["rejected"].append([position[(reject.task, reject.id)], reject.id])
    return accepted, rejects, read


def _bounds_from_values(task: str, rules: ValidationRules, task_info: dict[str, Task] | None) -> bool:
    info = (task_info or {}).get(task)
    if info is None or task in rules.target_bounds:
        return False
    return info.bounds_from_values and info.kind == "regression"


def _task_values(entries: list[Entry], task: str) -> np.ndarray:
    return np.array([float(e.targets[task]) for e in entries if _finite(e.targets.get(task))], dtype=float)


def set_aside_outliers(
    accepted: list[Entry], tasks: list[str], ranges: dict[str, tuple[float, float] | None], task_info: dict[str, Task],
    rejects: list[Reject],
) -> tuple[list[Entry], list[Reject]]:  # fmt: skip
    """Reject, for its task, every target outside its task's default range (``ranges``: task →
    range, or ``None`` for none), and remove it from its entry. The rejects are added to
    ``rejects``; an entry left without any usable target is rejected whole instead, its per-task
    rejects folded into one reason as :func:`~prdnet.data.validate.validate_entry` does. Returns
    the entries still accepted and one per-task reject for every target set aside here (also for
    the entries rejected whole)."""
    kept, outliers, whole = [], [], {}
    for entry in accepted:
        found = []
        for task, bounds in ranges.items():
            value = entry.targets.get(task)
            if bounds is None or not _finite(value):
                continue
            key = task_info[task].bounds_key or f"targets.{task}.bounds"
            reason = outside_default_bounds(float(value), bounds, key)
            if reason is not None:
                found.append(Reject(entry.id, task, reason))
                entry.targets[task] = None
        outliers.extend(found)
        if found and not any(_finite(entry.targets.get(task)) for task in tasks):
            whole[entry.id] = found
        else:
            rejects.extend(found)
            kept.append(entry)
    if whole:
        earlier: dict[str, list[Reject]] = {entry_id: [] for entry_id in whole}  # their per-task rejects so far
        remaining = []
        for reject in rejects:
            if reject.id in whole and reject.task != ALL_TASKS:
                earlier[reject.id].append(reject)
            else:
                remaining.append(reject)
        rejects[:] = remaining
        for entry_id, found in whole.items():
            details = "; ".join(f"{r.task}: {r.reason}" for r in earlier[entry_id] + found)
            rejects.append(Reject(entry_id, ALL_TASKS, f"no usable target for any task ({details})"))
    return kept, outliers


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def entries_to_columns(entries: list[Entry], tasks: list[str]) -> CrystalColumns:
    """Flat columns of validated entries (targets NaN where missing)."""
    structures = [e.structure for e in entries]
    return CrystalColumns(
        ids=[e.id for e in entries],
        atom_counts=np.array([len(s) for s in structures], dtype=np.int64),
        atomic_numbers=np.concatenate([s.atomic_numbers for s in structures]).astype(np.int64) if entries else np.zeros(0, np.int64),
        frac_coords=np.concatenate([s.frac_coords for s in structures]) if entries else np.zeros((0, 3)),
        lattices=np.stack([s.lattice.matrix for s in structures]) if entries else np.zeros((0, 3, 3)),
        targets={
            task: np.array([np.nan if e.targets.get(task) is None else float(e.targets[task]) for e in entries])
            for task in tasks
        },
    )


class EmptyDatasetError(ValueError):
    """A dataset (or one of its tasks) has no usable entry."""


def check_not_empty(name: str, accepted: list[Entry], rejects: list[Reject], read: int, tasks: list[str]) -> None:
    """Stop with the reasons when nothing, or nothing for some task, was accepted."""
    if not accepted:
        reasons = Counter(reason_class(r.reason) for r in rejects if r.task == ALL_TASKS)
        example = next((f"{r.id}: {r.reason}" for r in rejects), "no entries")
        raise EmptyDatasetError(
            f"dataset {name}: 0 of {read} entries accepted (rejected by reason: {dict(reasons)}; e.g. {example}). "
            "Check the configured file, its id/structure/target columns and the validation block."
        )
    for task in tasks:
        if not any(_finite(entry.targets.get(task)) for entry in accepted):
            reasons = Counter(reason_class(r.reason) for r in rejects if r.task == task)
            raise EmptyDatasetError(
                f"dataset {name}: no usable target for task {task!r} in {len(accepted)} accepted entries "
                f"(rejected for this task by reason: {dict(reasons)}); check the task's column and bounds"
            )


def id_list_folds(split: dict[str, Any]) -> dict[str, list[str]]:
    """Test folds from the user's id-list files (``split: {kind: id_lists, test: [file, ...]}``):
    ``fold<i>`` holds the ids of the i-th file, one a line, normalised as every id."""
    folds = {}
    for index, path in enumerate(split["test"]):
        text = read_text(path, f"datasets.<name>.split.test.{index}")
        folds[f"fold{index}"] = [i for i in (normalise_id(line) for line in text.splitlines()) if i]
    return folds


def seeded_subset(count: int, size: int | None, seed: int) -> np.ndarray:
    """Row indices of a seeded random subset of ``size`` rows (all rows if ``size`` is None), in order."""
    if size is None or size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def prepare_dataset(name: str, options: dict[str, Any], rules: ValidationRules, out_dir: str | Path) -> dict[str, Any]:
    """Validate the dataset ``name`` and write its crystal table, rejects and summary to ``out_dir``."""
    out_dir = Path(out_dir)
    source = load_source(options["source"], options)
    tasks = list(options["tasks"])
    unknown = [t for t in tasks if t not in source.tasks]
    if unknown:
        raise ValueError(f"dataset {name}: unknown task(s) {unknown}; source offers {sorted(source.tasks)}")
    candidates: dict[str, Any] = {}
    default_ranges: dict[str, Any] = {}
    accepted, rejects, read = collect_entries(source.entries, tasks, rules, candidates, source.tasks, default_ranges)
    check_not_empty(name, accepted, rejects, read, tasks)
    columns = entries_to_columns(accepted, tasks)
    rows = seeded_subset(len(accepted), options.get("subset"), int(options.get("subset_seed", 0)))
    columns = columns.take(rows)
    task_info = {t: {"kind": source.tasks[t].kind, "unit": source.tasks[t].unit} for t in tasks}
    summary = {
        "dataset": name,
        "source": options["source"],
        "source_version": source.version,
        "read": read,
        "accepted": len(accepted),
        "rejected": sum(r.task == ALL_TASKS for r in rejects),
        "rejected_by_reason": dict(Counter(reason_class(r.reason) for r in rejects if r.task == ALL_TASKS)),
        "task_rejects": {t: sum(r.task == t for r in rejects) for t in tasks},
        "subset": {"size": options.get("subset"), "seed": int(options.get("subset_seed", 0)), "kept": len(rows)},
        "tasks": task_info,
        "task_counts": {t: int(np.isfinite(columns.targets[t]).sum()) for t in tasks},
        "validation": vars(rules),
        # the range derived for each target given no bounds (validate.default_bounds; null: too few values)
        "default_target_bounds": default_ranges,
        "split_candidates": candidates,
    }
    write_parquet(out_dir / "structures.parquet", crystals_table(columns), {"prdnet.summary": summary})
    write_text(out_dir / "rejects.csv", rejects_csv(rejects))
    split = options.get("split") or {}
    folds = id_list_folds(split) if split.get("kind") == "id_lists" else source.folds or {}
    write_json(out_dir / "official_folds.json", {f: [normalise_id(i) for i in ids] for f, ids in folds.items()})
    summary = with_checksums(summary, out_dir, [out_dir / "structures.parquet"])  # checked by its readers
    write_json(out_dir / "summary.json", summary)
    return summary
