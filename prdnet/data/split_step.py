"""The split step: id lists, their counts, and the leakage audit of every split, written together.

Reads the crystal table, the source's official folds and the crystal group table
(:mod:`prdnet.data.crystal_groups`); writes ``<out_dir>/<task>/<fold>/{train,val,test}.txt``,
``leakage.json`` (counts per task, fold and part), ``leakage_pairs.csv`` (the shared ids),
``leakage_dropped.csv`` (what ``leakage: drop`` took out, with the reason; header only otherwise)
and ``summary.json`` last (the step's declared output, so a half-run step is re-run), with the
SHA-256 of every list (:mod:`prdnet.data.checksums`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from prdnet.data.checksums import with_checksums
from prdnet.data.leakage import PAIR_COLUMNS, audit_splits, drop_duplicates
from prdnet.data.splits import make_splits, write_splits
from prdnet.data.tables import read_crystals
from prdnet.io import decode_metadata, write_json, write_text

DROPPED_COLUMNS = ("task", "fold", "part", "id", "reason")


def _csv(header: tuple[str, ...], rows: list[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def split_dataset(structures: str | Path, official_folds: dict[str, list[str]], groups_path: str | Path,
                  split_options: dict[str, Any], leakage: str, out_dir: str | Path) -> dict[str, Any]:  # fmt: skip
    """Make, audit and write the splits of one dataset; return the summary (also in ``summary.json``)."""
    table = pq.read_table(structures)
    crystals = read_crystals(table)
    candidates = decode_metadata(table.schema).get("prdnet.summary", {}).get("split_candidates")
    groups_table = pq.read_table(groups_path)
    groups = {row["id"]: row for row in groups_table.to_pylist()}
    missing = [i for i in crystals.ids if i not in groups]
    if missing:
        raise ValueError(f"{groups_path}: no group row for {len(missing)} crystals (e.g. {missing[0]}); "
                         f"delete it and re-run the crystal_groups step")  # fmt: skip
    splits, summary = make_splits(crystals.ids, crystals.targets, split_options, official_folds, candidates, groups, leakage)
    dropped: list[tuple] = []
    if leakage == "drop":
        splits, dropped = drop_duplicates(splits, groups_table)
        for task, folds in splits.items():
            for fold, parts in folds.items():
                summary[task][fold].update({name: len(ids) for name, ids in parts.items()})
                summary[task][fold]["dropped_as_duplicates"] = sum(1 for row in dropped if row[:2] == (task, fold))
    counts, pairs = audit_splits(splits, groups_table)
    out = Path(out_dir)
    lists = write_splits(splits, out)
    write_json(out / "leakage.json", {"action": leakage, "splits": counts})
    write_text(out / "leakage_pairs.csv", _csv(PAIR_COLUMNS, pairs))
    write_text(out / "leakage_dropped.csv", _csv(DROPPED_COLUMNS, dropped))
    write_json(out / "summary.json", with_checksums(summary, out, lists))  # the lists' SHA-256, checked by their readers
    return {"summary": summary, "leakage": counts}
