"""Validation: every kind of bad input lands in rejects.csv with its reason; good entries pass."""

from __future__ import annotations

import csv
import gzip
import json
import math

import pyarrow.parquet as pq
import pytest

from prdnet.data.prepare import prepare_dataset
from prdnet.data.tables import read_crystals
from prdnet.data.validate import ValidationRules

CUBE = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]


def record(material_id, lattice=CUBE, species=("Na", "Cl"), coords=((0, 0, 0), (0.5, 0.5, 0.5)), e_form=-1.0, gap=1.0):
    return {
        "material_id": material_id,
        "lattice": lattice,
        "species": list(species),
        "frac_coords": [list(c) for c in coords],
        "formation_energy_per_atom": e_form,
        "band_gap": gap,
    }


GOOD = [record("mp-good-1"), record("mp-good-metal", gap=0.0)]
BAD_LINES = {
    "malformed record": "{this is not json",
    "missing lattice": json.dumps({k: v for k, v in record("mp-no-lattice").items() if k != "lattice"}),
}
BAD_RECORDS = {
    "unknown element": record("mp-unknown", species=("Xx", "Cl")),
    "disordered structure": record("mp-disordered", species=({"Fe": 0.5, "Ni": 0.5}, "Cl")),
    "atoms too close": record("mp-close", coords=((0, 0, 0), (0.05, 0, 0))),
    "non-finite coordinates": record("mp-nan-coords", coords=((0, 0, 0), (math.nan, 0.5, 0.5))),
    "non-finite lattice": record("mp-inf-lattice", lattice=[[4, 0, 0], [0, 4, 0], [0, 0, math.inf]]),
    "degenerate lattice": record("mp-flat", lattice=[[4, 0, 0], [0, 4, 0], [0, 0, 0]]),
    "isolated atom": record("mp-isolated", lattice=[[30, 0, 0], [0, 30, 0], [0, 0, 30]], species=("Na",), coords=((0, 0, 0),)),
    "empty structure": record("mp-empty", species=(), coords=()),
}


@pytest.fixture
def prepared(tmp_path):
    """A recorded file in the embedded-MP format mixing good and bad entries, prepared."""
    path = tmp_path / "mp.jsonl.gz"
    lines = [json.dumps(r) for r in GOOD] + list(BAD_LINES.values()) + [json.dumps(r) for r in BAD_RECORDS.values()]
    lines += [json.dumps(record("mp-no-gap", gap=None)), json.dumps(record("mp-nan-eform", e_form=math.nan))]
    lines += [json.dumps(record("mp-good-1"))]  # duplicate id
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    options = {"source": "mp_2018_cgcnn36k", "path": str(path), "tasks": ["formation_energy", "band_gap", "is_metal"]}
    summary = prepare_dataset("tiny", options, ValidationRules(), tmp_path / "out")
    with open(tmp_path / "out" / "rejects.csv") as handle:
        rejects = list(csv.DictReader(handle))
    return summary, rejects, tmp_path / "out"


def reasons_of(rejects, material_id):
    return [(r["task"], r["reason"]) for r in rejects if r["id"] == material_id]


@pytest.mark.parametrize("kind, entry", sorted(BAD_RECORDS.items()))
def test_bad_structure_is_rejected_whole_with_its_reason(prepared, kind, entry):
    _, rejects, _ = prepared
    reasons = reasons_of(rejects, entry["material_id"])
    assert len(reasons) == 1
    task, reason = reasons[0]
    assert task == "*" and reason.startswith(kind), reason


def test_unparsable_lines_are_rejected_not_dropped(prepared):
    _, rejects, _ = prepared
    assert any(r["reason"].startswith("malformed record: invalid JSON") for r in rejects)
    assert reasons_of(rejects, "mp-no-lattice") == [("*", "malformed record: missing lattice")]


def test_missing_or_non_finite_target_rejects_only_that_task(prepared):
    _, rejects, out = prepared
    assert reasons_of(rejects, "mp-no-gap") == [("band_gap", "missing target"), ("is_metal", "missing target")]
    assert reasons_of(rejects, "mp-nan-eform") == [("formation_energy", "non-finite target: nan")]
    crystals = read_crystals(pq.read_table(out / "structures.parquet"))
    assert "mp-no-gap" in crystals.ids and "mp-nan-eform" in crystals.ids


def test_duplicate_id_is_rejected(prepared):
    _, rejects, _ = prepared
    assert reasons_of(rejects, "mp-good-1") == [("*", "duplicate id")]


def test_counts_add_up_and_nothing_vanishes(prepared):
    summary, rejects, out = prepared
    crystals = read_crystals(pq.read_table(out / "structures.parquet"))
    whole_rejects = sum(r["task"] == "*" for r in rejects)
    assert summary["read"] == summary["accepted"] + summary["rejected"] == len(crystals.ids) + whole_rejects
    assert crystals.ids == ["mp-good-1", "mp-good-metal", "mp-no-gap", "mp-nan-eform"]
    assert summary["task_counts"] == {"formation_energy": 3, "band_gap": 3, "is_metal": 3}


def test_metal_label_is_band_gap_zero(prepared):
    _, _, out = prepared
    crystals = read_crystals(pq.read_table(out / "structures.parquet"))
    labels = dict(zip(crystals.ids, crystals.targets["is_metal"]))
    assert labels["mp-good-metal"] == 1.0 and labels["mp-good-1"] == 0.0
