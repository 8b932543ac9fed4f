"""How much of each split's test and validation parts a model could score by recognising training crystals.

For every task, fold and part (``val``, ``test``), three counts of its crystals against the
training part of the same fold (from the group table of :mod:`prdnet.data.crystal_groups`):

- ``duplicate``: the same structure as a training crystal (one ``StructureMatcher`` cluster
  within a reduced formula): the same crystal in another cell, setting, origin or orientation;
- ``polymorph``: the reduced formula of a training crystal but none of its structures
  (matbench's own check, ``matbench.data_ops.load``'s docs, compares formulas only);
- ``prototype``: the prototype label of a training crystal (the same structure type, possibly
  with other elements), duplicates included.

The id pairs (each crystal with the training crystals it shares the property with) go to a CSV.
What the split step does about duplicates is config (``leakage`` of a dataset): ``report`` (only
count), ``drop`` (take val and test crystals that duplicate a training crystal out of the split,
listed in ``leakage_dropped.csv``) or ``group`` (make the split by duplicate clusters, so a
cluster never straddles parts).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyarrow as pa

LEAKAGE_ACTIONS = ("report", "drop", "group")
LEAKAGE_KINDS = ("duplicate", "polymorph", "prototype")
AUDITED_PARTS = ("val", "test")
PAIR_COLUMNS = ("task", "fold", "part", "id", "kind", "train_id")
MAX_PAIRS_PER_CRYSTAL = 5
"""Training partners listed per crystal and kind in the pair file (the count is always whole)."""


def _index(groups: pa.Table) -> dict[str, dict[str, str]]:
    rows = groups.select(["id", "reduced_formula", "prototype", "duplicate_cluster"]).to_pylist()
    return {row["id"]: row for row in rows}


def audit_part(part_ids: list[str], train_ids: list[str], groups: dict[str, dict[str, str]]) -> tuple[dict[str, int], list[tuple[str, str, str]]]:  # fmt: skip
    """Counts of ``part_ids`` that share a duplicate cluster, only a formula, or a prototype with
    some of ``train_ids``, and the pairs ``(id, kind, train_id)`` (at most
    :data:`MAX_PAIRS_PER_CRYSTAL` partners per crystal and kind)."""
    by_key: dict[str, dict[str, list[str]]] = {"duplicate_cluster": defaultdict(list), "reduced_formula": defaultdict(list),
                                               "prototype": defaultdict(list)}  # fmt: skip
    for train_id in train_ids:
        row = groups[train_id]
        for key, index in by_key.items():
            index[row[key]].append(train_id)
    counts = dict.fromkeys(LEAKAGE_KINDS, 0)
    pairs = []
    for crystal in part_ids:
        row = groups[crystal]
        duplicates = by_key["duplicate_cluster"].get(row["duplicate_cluster"], [])
        same_formula = by_key["reduced_formula"].get(row["reduced_formula"], [])
        partners = {
            "duplicate": duplicates,
            "polymorph": [] if duplicates else same_formula,
            "prototype": by_key["prototype"].get(row["prototype"], []) if row["prototype"] != "unknown" else [],
        }
        for kind, found in partners.items():
            if found:
                counts[kind] += 1
                pairs += [(crystal, kind, partner) for partner in sorted(found)[:MAX_PAIRS_PER_CRYSTAL]]
    return counts, pairs


def audit_splits(splits: dict[str, dict[str, dict[str, list[str]]]], groups: pa.Table) -> tuple[dict[str, Any], list[tuple]]:
    """``{task: {fold: {part: {size, duplicate, polymorph, prototype}}}}`` for the val and test parts
    of every split, and the pair rows (:data:`PAIR_COLUMNS`)."""
    index = _index(groups)
    report: dict[str, Any] = {}
    rows: list[tuple] = []
    for task, folds in splits.items():
        for fold, parts in folds.items():
            for part in AUDITED_PARTS:
                counts, pairs = audit_part(parts[part], parts["train"], index)
                report.setdefault(task, {}).setdefault(fold, {})[part] = {"size": len(parts[part]), **counts}
                rows += [(task, fold, part, crystal, kind, partner) for crystal, kind, partner in pairs]
    return report, rows


def drop_duplicates(splits: dict[str, dict[str, dict[str, list[str]]]], groups: pa.Table) -> tuple[dict, list[tuple[str, str, str, str, str]]]:  # fmt: skip
    """The splits without the val and test crystals that duplicate a training crystal of their fold,
    and the dropped rows ``(task, fold, part, id, reason)``."""
    index = _index(groups)
    kept: dict = {}
    dropped = []
    for task, folds in splits.items():
        for fold, parts in folds.items():
            train_of_cluster: dict[str, str] = {}
            for train_id in sorted(parts["train"]):
                train_of_cluster.setdefault(index[train_id]["duplicate_cluster"], train_id)
            new_parts = {"train": list(parts["train"])}
            for part in AUDITED_PARTS:
                new_parts[part] = []
                for crystal in parts[part]:
                    partner = train_of_cluster.get(index[crystal]["duplicate_cluster"])
                    if partner is None:
                        new_parts[part].append(crystal)
                    else:
                        dropped.append((task, fold, part, crystal, f"duplicates training crystal {partner} (leakage: drop)"))
            kept.setdefault(task, {})[fold] = new_parts
    return kept, dropped
